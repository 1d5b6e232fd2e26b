"""End to end through real loopback sockets: MessagesClient -> FakeServer -> pipeline.

Every result is compared with the in-memory pipeline and with the official SDK on the same
bytes; every fault the server can inject gives the documented, typed outcome.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import pipeline
from pipeline.client import RetryPolicy
from pipeline.fake_server import FakeServer, Script
from pipeline.testing import aiter_chunks, all_cases, chunk_events, citations_body, mixed_body, text_body, tool_body
from tests.helpers import record_backoffs
from tests.oracle import sdk_run_threaded

FAST = RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.05)
MESSAGES = [{"role": "user", "content": "Hello"}]
BODIES = {
    "text": text_body(40, seed=1),
    "tool": tool_body(600, seed=2),
    "citations": citations_body(4, seed=3),
    "mixed": mixed_body(10, 200, seed=4),
    **{f"recorded-{name}": all_cases(seed=5)[name].body() for name in ("thinking", "server_tool", "unknown_block")},
}


async def through_server(script: Script | list[Script], **stream: Any) -> tuple[list[dict[str, Any]], Any, Any]:
    scripts = script if isinstance(script, list) else [script]
    async with FakeServer(scripts) as server:
        async with pipeline.MessagesClient(api_key="sk-test", base_url=server.url, retry=FAST) as client:
            async with client.stream(model="claude-test", max_tokens=64, messages=MESSAGES, **stream) as s:
                events = [event.to_dict() async for event in s]
                message = await s.get_final_message()
        return events, message, server.statistics()


async def in_memory(body: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    async with pipeline.open_stream(aiter_chunks(chunk_events(body))) as stream:
        events = [event.to_dict() async for event in stream]
        message = await stream.get_final_message()
    return events, message.to_dict()


@pytest.mark.parametrize("name", sorted(BODIES))
async def test_client_and_server_give_the_sdk_answer(name: str) -> None:
    body = BODIES[name]
    events, message, stats = await through_server(Script(body=body))
    assert (events, message.to_dict()) == await in_memory(body)
    sdk = await sdk_run_threaded(chunk_events(body))
    assert (events, message.to_dict()) == (sdk.events, sdk.final)
    assert (stats.requests, stats.streams_completed) == (1, 1)


async def test_generated_bodies_follow_the_prompt() -> None:
    async with FakeServer() as server:
        async with pipeline.MessagesClient(api_key="k", base_url=server.url) as client:
            prompt = [{"role": "user", "content": "Use a tool please"}]
            async with client.stream(model="claude-gen", max_tokens=9, messages=prompt) as stream:
                message = await stream.get_final_message()
    assert message.model == "claude-gen"
    assert message.stop_reason == "tool_use"
    assert any(isinstance(block, pipeline.ToolUseBlock) for block in message.content)


async def test_overloaded_then_success_is_retried_once() -> None:
    body = BODIES["text"]
    events, message, stats = await through_server([Script(status=529), Script(body=body)])
    assert stats.requests == 2 and stats.streams_completed == 1
    assert message.to_dict() == (await in_memory(body))[1]


async def test_rate_limit_waits_for_retry_after() -> None:
    waited: list[float] = []
    async with FakeServer([Script(status=429, retry_after=0.02), Script(body=BODIES["text"])]) as server:
        async with pipeline.MessagesClient(api_key="k", base_url=server.url, retry=FAST) as client:
            record_backoffs(client, waited)
            async with client.stream(model="m", max_tokens=5, messages=MESSAGES) as stream:
                await stream.until_done()
        assert server.statistics().requests == 2
    assert waited == [0.02]


async def test_error_event_mid_stream_is_typed_and_not_retried() -> None:
    texts: list[str] = []
    with pytest.raises(pipeline.OverloadedError, match=r"^overloaded_error: Overloaded$") as info:
        await through_server(
            [Script(body=BODIES["text"], error_event_after=8), Script(body=BODIES["text"])],
            subscribers=[_Texts(texts)],
        )
    partial = info.value.partial_message
    assert partial is not None and partial.text == "".join(texts) != ""
    assert info.value.status_code is None


@pytest.mark.parametrize("mid_event", [False, True], ids=["between-events", "mid-event"])
async def test_cut_connection_is_a_source_error_and_not_retried(mid_event: bool) -> None:
    texts: list[str] = []
    script = Script(body=BODIES["text"], cut_after_events=10, cut_mid_event=mid_event)
    async with FakeServer([script, Script(body=BODIES["text"])]) as server:
        with pytest.raises(pipeline.SourceError, match=r"^reading the stream failed: RemoteProtocolError: ") as info:
            async with pipeline.MessagesClient(api_key="k", base_url=server.url, retry=FAST) as client:
                async with client.stream(model="m", max_tokens=5, messages=MESSAGES) as stream:
                    stream.subscribe(_Texts(texts))
                    await stream.until_done()
        assert server.statistics().requests == 1
    partial = info.value.partial_message
    assert partial is not None and partial.text == "".join(texts) != ""


async def test_bad_request_is_a_typed_400() -> None:
    async with FakeServer() as server:
        async with pipeline.MessagesClient(api_key="k", base_url=server.url, retry=FAST) as client:
            with pytest.raises(pipeline.errors.InvalidRequestError) as info:
                async with client.stream(model="m", max_tokens=0, messages=MESSAGES):
                    pass
        assert server.statistics().requests == 1
    assert info.value.status_code == 400 and "max_tokens" in info.value.message
    assert info.value.request_id


async def test_cancelling_a_stream_closes_the_socket() -> None:
    """Leaving the stream early closes the connection: the server sees the disconnect."""
    async with FakeServer([Script(body=BODIES["text"], events_per_second=200)]) as server:
        async with pipeline.MessagesClient(api_key="k", base_url=server.url) as client:
            with anyio.fail_after(5):
                async with client.stream(model="m", max_tokens=5, messages=MESSAGES) as stream:
                    async for event in stream:
                        if isinstance(event, pipeline.TextEvent):
                            break
                await server.wait_client_disconnect()
        assert server.statistics().streams_completed == 0


class _Texts:
    def __init__(self, into: list[str]) -> None:
        self.into = into

    def on_text(self, event: pipeline.TextEvent) -> None:
        self.into.append(event.text)


async def test_idle_timeout_closes_a_stalled_connection() -> None:
    """A stream whose server goes quiet fails with IdleTimeoutError and its socket is closed."""
    async with FakeServer([Script(body=BODIES["text"], events_per_second=2)]) as server:
        async with pipeline.MessagesClient(api_key="k", base_url=server.url) as client:
            with anyio.fail_after(5), pytest.raises(pipeline.IdleTimeoutError):
                async with client.stream(model="m", max_tokens=5, messages=MESSAGES, idle_timeout=0.1) as stream:
                    await stream.until_done()
            with anyio.fail_after(5):
                await server.wait_client_disconnect()
