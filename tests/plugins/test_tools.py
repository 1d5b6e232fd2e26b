"""The tool dispatcher: calls in their own tasks, results in block order, errors reported."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import pipeline
from pipeline.testing import StreamBuilder, aiter_chunks, chunk_random
from plugins.tools import ToolDispatcher, ToolResult, UnknownToolError, tool_result_blocks


def tool_body(*calls: tuple[str, Any], raw: dict[int, str] | None = None) -> bytes:
    builder = StreamBuilder(seed=1).text_block(["Calling tools."])
    for i, (name, args) in enumerate(calls):
        raw_json = (raw or {}).get(i)
        builder.tool_use_block(None if raw_json else args, raw_json=raw_json, name=name, tool_id=f"toolu_{i}")
    return builder.build(stop_reason="tool_use")


async def run(dispatcher: ToolDispatcher, body: bytes) -> pipeline.Message:
    source = aiter_chunks(chunk_random(body, seed=2, max_size=30), checkpoint=True)
    async with dispatcher:
        async with pipeline.open_stream(source, subscribers=[dispatcher]) as stream:
            message = await stream.get_final_message()
    return message


async def test_results_in_block_order_with_errors_reported() -> None:
    tools = ToolDispatcher()
    first_may_finish = anyio.Event()

    @tools.tool
    async def get_weather(city: str, unit: str = "celsius") -> dict[str, Any]:
        await first_may_finish.wait()  # finishes after the calls that follow it
        return {"city": city, "temp": 21, "unit": unit}

    @tools.tool(name="get_time")
    async def current_time(timezone: str) -> str:
        first_may_finish.set()
        return f"12:00 {timezone}"

    async def divide(a: int, b: int) -> float:
        return a / b

    tools.register("divide", divide)
    body = tool_body(
        ("get_weather", {"city": "Zürich"}),
        ("get_time", {"timezone": "CET"}),
        ("divide", {"a": 1, "b": 0}),
        ("book_flight", {"to": "Paris"}),
    )
    with anyio.fail_after(10):
        message = await run(tools, body)

    assert message.stop_reason == "tool_use"  # the stream was not disturbed
    results = tools.results()
    assert [(r.tool_use_id, r.name, r.is_error) for r in results] == [
        ("toolu_0", "get_weather", False),
        ("toolu_1", "get_time", False),
        ("toolu_2", "divide", True),
        ("toolu_3", "book_flight", True),
    ]
    assert results[0] == ToolResult(
        "toolu_0", "get_weather", {"city": "Zürich"}, {"city": "Zürich", "temp": 21, "unit": "celsius"}
    )
    assert isinstance(results[2].error, ZeroDivisionError) and results[2].output is None
    assert isinstance(results[3].error, UnknownToolError) and results[3].error.name == "book_flight"
    assert tools.tool_result_blocks() == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_0",
            "content": '{"city":"Zürich","temp":21,"unit":"celsius"}',
            "is_error": False,
        },
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12:00 CET", "is_error": False},
        {
            "type": "tool_result",
            "tool_use_id": "toolu_2",
            "content": "ZeroDivisionError: division by zero",
            "is_error": True,
        },
        {
            "type": "tool_result",
            "tool_use_id": "toolu_3",
            "content": "UnknownToolError: no tool named 'book_flight'",
            "is_error": True,
        },
    ]
    assert tool_result_blocks(reversed(results))[0]["tool_use_id"] == "toolu_3"


async def test_calls_run_concurrently() -> None:
    tools = ToolDispatcher()
    started = {name: anyio.Event() for name in ("a", "b", "c")}

    async def wait_for_all(name: str) -> str:
        started[name].set()
        for event in started.values():  # each call finishes only once all three started
            await event.wait()
        return name

    def make(name: str) -> Callable[[], Awaitable[str]]:
        async def call() -> str:
            return await wait_for_all(name)

        return call

    for name in started:
        tools.register(name, make(name))
    with anyio.fail_after(10):  # run one at a time, this would never finish
        await run(tools, tool_body(("a", {}), ("b", {}), ("c", {})))
    assert [r.output for r in tools.results()] == ["a", "b", "c"]


async def test_a_limit_runs_calls_one_at_a_time() -> None:
    tools = ToolDispatcher(limit=1)
    running: list[str] = []
    overlaps = 0

    @tools.tool
    async def step(n: int) -> int:
        nonlocal overlaps
        overlaps += bool(running)
        running.append("x")
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        running.pop()
        return n * 2

    await run(tools, tool_body(*[("step", {"n": n}) for n in range(5)]))
    assert overlaps == 0
    assert [r.output for r in tools.results()] == [0, 2, 4, 6, 8]


async def test_calls_start_while_the_message_still_streams() -> None:
    tools = ToolDispatcher()
    called = anyio.Event()
    text_after_call: list[bool] = []

    @tools.tool
    async def ping() -> str:
        called.set()
        return "pong"

    body = StreamBuilder(seed=3).tool_use_block(name="ping", tool_id="toolu_p").text_block(["after"]).build()
    tool_stop = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    cut = body.index(tool_stop) + len(tool_stop)

    async def source() -> AsyncIterator[bytes]:
        yield body[:cut]
        with anyio.fail_after(10):
            await called.wait()  # the rest of the message waits for the call to start
        yield body[cut:]

    async with tools:
        async with pipeline.open_stream(source(), subscribers=[tools]) as stream:
            async for event in stream:
                if isinstance(event, pipeline.TextEvent):
                    text_after_call.append(called.is_set())
        await tools.wait()
        assert tools.pending == 0
        assert [r.output for r in tools.results()] == ["pong"]
    assert text_after_call == [True]


async def test_input_conventions() -> None:
    tools = ToolDispatcher()
    seen: list[Any] = []

    @tools.tool
    async def nothing() -> None:
        seen.append("nothing")

    @tools.tool
    async def items(values: Any) -> list[dict[str, str]]:
        seen.append(values)
        return [{"type": "text", "text": f"{len(values)} values"}]

    @tools.tool
    async def strict(a: int) -> int:
        return a

    await run(tools, tool_body(("nothing", {}), ("items", None), ("strict", {"a": 1, "b": 2}), raw={1: "[1,2,3]"}))
    results = tools.results()
    assert seen == ["nothing", [1, 2, 3]]
    assert results[0].to_block() == {"type": "tool_result", "tool_use_id": "toolu_0", "is_error": False}
    assert results[1].to_block()["content"] == [{"type": "text", "text": "3 values"}]
    assert isinstance(results[2].error, TypeError)  # an unexpected argument is the tool's error


async def test_the_dispatcher_must_be_entered_and_is_reusable() -> None:
    tools = ToolDispatcher()

    @tools.tool
    async def echo(text: str) -> str:
        return text

    body = tool_body(("echo", {"text": "hi"}))
    with pytest.raises(pipeline.SubscriberError) as caught:
        async with pipeline.open_stream(aiter_chunks([body]), subscribers=[tools]) as stream:
            await stream.until_done()
    assert "async with dispatcher" in str(caught.value.__cause__)

    await run(tools, body)
    await run(tools, tool_body(("echo", {"text": "again"})))
    assert [r.output for r in tools.results()] == ["again"]  # a new `async with`, new results
    async with tools:
        with pytest.raises(RuntimeError, match="already in use"):
            await tools.__aenter__()


def test_registration_is_checked() -> None:
    tools = ToolDispatcher()

    async def ok() -> None: ...

    def sync() -> None: ...

    tools.register("ok", ok)
    assert dict(tools.tools) == {"ok": ok}
    with pytest.raises(ValueError, match="already registered"):
        tools.register("ok", ok)
    with pytest.raises(TypeError, match="async function"):
        tools.register("sync", sync)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tools.register("", ok)
    with pytest.raises(ValueError):
        ToolDispatcher(limit=0)
