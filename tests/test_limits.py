"""``Limits``: a hostile or broken upstream fails its stream with a typed error and bounded
memory, whatever the chunking and whichever path (fused or staged) runs the chain; under the
limits, results are unchanged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import jiter
import pytest

import pipeline
from pipeline.core.pieces import GROUP
from pipeline.fake_server import FakeServer, Script
from pipeline.testing import (
    StreamBuilder,
    aiter_chunks,
    all_cases,
    chunk_bytes,
    chunk_events,
    text_builder,
    tool_builder,
)

# the default chain runs fused; "staged" puts each built-in stage in its own island, with
# channels between them, so the unfused accumulator and the pump task are exercised too
CHAINS: dict[str, Sequence[Any]] = {
    "fused": (),
    "staged": (pipeline.parse(), pipeline.boundary(), pipeline.accumulate(), pipeline.boundary(), pipeline.derive()),
}
CHUNKINGS = {"live": chunk_events, "bulk": lambda body: chunk_bytes(body, 4096), "bytes7": lambda b: chunk_bytes(b, 7)}


async def run(
    chunks: Sequence[bytes], limits: pipeline.Limits, chain: str = "fused"
) -> tuple[list[Any], pipeline.Message | None, BaseException | None]:
    events: list[Any] = []
    try:
        async with pipeline.open_stream(aiter_chunks(chunks), limits=limits, stages=CHAINS[chain]) as stream:
            async for event in stream:
                events.append(event)
            return events, await stream.get_final_message(), None
    except pipeline.PipelineError as exc:
        return events, None, exc


# --- the Limits object ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["max_event_bytes", "max_stream_bytes", "max_blocks", "max_tool_input_chars"])
@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_limits_reject_what_is_not_a_positive_int(field: str, bad: object) -> None:
    with pytest.raises(ValueError, match=rf"^Limits\.{field} must be an int >= 1, got {bad!r}$"):
        pipeline.Limits(**{field: bad})  # type: ignore[arg-type]


def test_limits_need_a_limits_object() -> None:
    with pytest.raises(TypeError, match="^limits must be a pipeline.Limits, got dict$"):
        pipeline.open_stream(aiter_chunks([]), limits={"max_blocks": 1})  # type: ignore[arg-type]


def test_defaults_are_documented_values() -> None:
    limits = pipeline.DEFAULT_LIMITS
    assert limits == pipeline.Limits()
    assert (limits.max_event_bytes, limits.max_stream_bytes) == (64 << 20, 256 << 20)
    assert (limits.max_blocks, limits.max_tool_input_chars) == (10_000, 64 << 20)


# --- nothing changes under the limits ----------------------------------------------------


@pytest.mark.parametrize("chain", sorted(CHAINS))
@pytest.mark.parametrize("name", sorted(all_cases(seed=11)))
async def test_tight_limits_that_hold_change_nothing(name: str, chain: str) -> None:
    case = all_cases(seed=11)[name]
    body = case.body()
    expected = case.expected_message()
    tight = pipeline.Limits(
        max_event_bytes=max(len(part) for part in chunk_events(body)),
        max_stream_bytes=len(body),
        max_blocks=max(1, len(expected["content"])),
        max_tool_input_chars=max(
            [len(json.dumps(b["input"])) * 2 for b in expected["content"] if "input" in b] or [1]
        ),
    )
    _, message, error = await run(chunk_events(body), tight, chain)
    assert error is None
    assert message is not None and message.to_dict() == expected


# --- max_event_bytes ----------------------------------------------------------------------


async def endless(prefix: bytes, piece: bytes, sent: list[int]) -> AsyncIterator[bytes]:
    """A hostile upstream: *prefix*, then *piece* forever (no newline); counts what it sent."""
    sent.append(len(prefix))
    yield prefix
    while True:
        sent[0] += len(piece)
        yield piece


@pytest.mark.parametrize("chain", sorted(CHAINS))
async def test_an_endless_line_fails_with_bounded_memory(chain: str) -> None:
    sent: list[int] = []
    limits = pipeline.Limits(max_event_bytes=50_000)
    start = chunk_events(text_builder(3, seed=1).build())[0]  # message_start
    source = endless(start + b"data: ", b"x" * 1000, sent)
    with pytest.raises(pipeline.LimitExceededError) as caught:
        async with pipeline.open_stream(source, limits=limits, stages=CHAINS[chain]) as stream:
            await stream.until_done()
    error = caught.value
    assert (error.limit, error.value) == ("max_event_bytes", 50_000)
    assert str(error) == "an SSE line exceeds max_event_bytes (50,000)"
    # stopped within one chunk (plus the channel's few batches) of the limit, not at OOM
    assert 50_000 < sent[0] <= 50_000 + 10 * 1000 + len(start)
    assert error.partial_message is not None and error.partial_message.content == []


async def test_an_endless_event_of_many_lines_fails() -> None:
    sent: list[int] = []
    start = chunk_events(text_builder(3, seed=1).build())[0]
    source = endless(start, b"data: 0123456789\n", sent)
    with pytest.raises(pipeline.LimitExceededError, match=r"^an SSE event exceeds max_event_bytes \(1,000\)$"):
        async with pipeline.open_stream(source, limits=pipeline.Limits(max_event_bytes=1000)) as stream:
            await stream.until_done()


# --- max_stream_bytes ---------------------------------------------------------------------


@pytest.mark.parametrize("chunking", sorted(CHUNKINGS))
@pytest.mark.parametrize("chain", sorted(CHAINS))
async def test_max_stream_bytes_keeps_what_arrived(chain: str, chunking: str) -> None:
    builder = text_builder(200, seed=3)
    body = builder.build()
    limit = len(body) // 2
    events, message, error = await run(CHUNKINGS[chunking](body), pipeline.Limits(max_stream_bytes=limit), chain)
    assert message is None and isinstance(error, pipeline.LimitExceededError)
    assert (error.limit, error.value, str(error)) == (
        "max_stream_bytes", limit, f"the stream's body exceeds max_stream_bytes ({limit:,})"
    )
    full = builder.expected_content()[0]["text"]
    text = "".join(e.text for e in events if isinstance(e, pipeline.TextEvent))
    assert 0 < len(text) < len(full) and full.startswith(text)
    # the partial message holds at least what was delivered, and only a prefix of the truth
    assert error.partial_message is not None
    partial = error.partial_message.content[0]
    assert isinstance(partial, pipeline.TextBlock)
    assert partial.text.startswith(text) and full.startswith(partial.text)


async def test_max_stream_bytes_closes_the_source() -> None:
    closed = anyio.Event()
    body = text_builder(100, seed=4).build()

    async def source() -> AsyncIterator[bytes]:
        try:
            for chunk in chunk_events(body):
                yield chunk
        finally:
            closed.set()

    with pytest.raises(pipeline.LimitExceededError):
        async with pipeline.open_stream(source(), limits=pipeline.Limits(max_stream_bytes=1000)) as stream:
            await stream.until_done()
    assert closed.is_set()


# --- max_blocks ---------------------------------------------------------------------------


def many_blocks(n: int) -> StreamBuilder:
    builder = StreamBuilder(seed=5)
    for i in range(n):
        builder.text_block([f"block {i}"])
    return builder


@pytest.mark.parametrize("chain", sorted(CHAINS))
async def test_max_blocks(chain: str) -> None:
    body = many_blocks(5).build()
    _, message, error = await run(chunk_events(body), pipeline.Limits(max_blocks=3), chain)
    assert isinstance(error, pipeline.LimitExceededError)
    assert str(error) == "the number of content blocks exceeds max_blocks (3)"
    assert error.partial_message is not None
    assert [b.to_dict()["text"] for b in error.partial_message.content] == ["block 0", "block 1", "block 2"]
    _, message, error = await run(chunk_events(body), pipeline.Limits(max_blocks=5), chain)
    assert error is None and message is not None and len(message.content) == 5


async def test_max_blocks_counts_a_prefilled_message_start() -> None:
    builder = StreamBuilder(seed=6, message_extra={"content": [{"type": "text", "text": "x"}] * 4})
    _, _, error = await run(chunk_events(builder.build()), pipeline.Limits(max_blocks=3))
    assert isinstance(error, pipeline.LimitExceededError) and error.limit == "max_blocks"


# --- max_tool_input_chars -----------------------------------------------------------------


@pytest.mark.parametrize("chunking", sorted(CHUNKINGS))
@pytest.mark.parametrize("chain", sorted(CHAINS))
async def test_max_tool_input_chars_while_streaming(chain: str, chunking: str) -> None:
    """A large input fails while it streams: within 16 pieces of the limit, before its end."""
    builder = tool_builder(20_000, seed=7)
    body = builder.build(stop_reason="tool_use")
    events, _, error = await run(CHUNKINGS[chunking](body), pipeline.Limits(max_tool_input_chars=2000), chain)
    assert isinstance(error, pipeline.LimitExceededError)
    assert str(error) == "the input of tool 'get_weather' in block 0 exceeds max_tool_input_chars (2,000)"
    delivered = sum(len(e.partial_json) for e in events if isinstance(e, pipeline.InputJsonEvent))
    assert delivered <= 2000 + GROUP * 16  # pieces are 4-16 characters, checked per GROUP pieces
    assert not any(isinstance(e, pipeline.ContentBlockStopEvent) for e in events)
    assert error.partial_message is not None and error.partial_message.content[0].type == "tool_use"


@pytest.mark.parametrize("chain", sorted(CHAINS))
async def test_max_tool_input_chars_is_exact_at_the_block_stop(chain: str) -> None:
    raw = json.dumps({"city": "x" * 95})  # 107 characters in a few pieces: no group completes
    body = StreamBuilder(seed=8).tool_use_block(raw_json=raw, piece_size=(30, 40)).build(stop_reason="tool_use")
    _, _, error = await run(chunk_events(body), pipeline.Limits(max_tool_input_chars=len(raw) - 1), chain)
    assert isinstance(error, pipeline.LimitExceededError) and error.limit == "max_tool_input_chars"
    _, message, error = await run(chunk_events(body), pipeline.Limits(max_tool_input_chars=len(raw)), chain)
    assert error is None and message is not None
    assert message.content[0].to_dict()["input"] == json.loads(raw)


# --- where limits are given ---------------------------------------------------------------


async def test_explicit_built_in_stages_take_the_streams_limits_unless_they_have_their_own() -> None:
    body = many_blocks(4).build()
    stages = [pipeline.parse(), pipeline.accumulate(), pipeline.derive()]
    _, _, error = await run_with(body, stages, pipeline.Limits(max_blocks=2))
    assert isinstance(error, pipeline.LimitExceededError) and error.value == 2
    own = [pipeline.parse(), pipeline.accumulate(limits=pipeline.Limits(max_blocks=3)), pipeline.derive()]
    _, _, error = await run_with(body, own, pipeline.Limits(max_blocks=2))
    assert isinstance(error, pipeline.LimitExceededError) and error.value == 3


async def run_with(
    body: bytes, stages: Sequence[Any], limits: pipeline.Limits
) -> tuple[list[Any], pipeline.Message | None, BaseException | None]:
    try:
        async with pipeline.open_stream(aiter_chunks(chunk_events(body)), stages=stages, limits=limits) as stream:
            return [], await stream.get_final_message(), None
    except pipeline.PipelineError as exc:
        return [], None, exc


async def test_pipeline_limits_apply_to_every_stream() -> None:
    config = pipeline.Pipeline(limits=pipeline.Limits(max_blocks=1))
    for _ in range(2):
        with pytest.raises(pipeline.LimitExceededError):
            async with config.open_stream(aiter_chunks(chunk_events(many_blocks(2).build()))) as stream:
                await stream.until_done()


async def test_client_and_worker_pass_limits_and_idle_timeout_on() -> None:
    """``client.stream(limits=...)``, and a worker's ``Pipeline`` limits and idle timeout for
    :class:`~pipeline.JobRequest` jobs, which its client sends."""
    body = many_blocks(3).build()
    scripts = [Script(body=body), Script(body=body), Script(body=body, drip_bytes=50, drip_delay=30)]
    async with FakeServer(scripts) as server, pipeline.MessagesClient(api_key="k", base_url=server.url) as client:
        request: dict[str, Any] = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        with pytest.raises(pipeline.LimitExceededError):
            async with client.stream(**request, limits=pipeline.Limits(max_blocks=2)) as stream:
                await stream.until_done()
        config = pipeline.Pipeline(limits=pipeline.Limits(max_blocks=2), idle_timeout=0.2)
        async with pipeline.Worker(config, client=client, concurrency=1) as worker:
            results = await worker.run([pipeline.JobRequest(id=str(i), **request) for i in range(2)])
    assert isinstance(results[0].error, pipeline.LimitExceededError)
    assert isinstance(results[1].error, pipeline.IdleTimeoutError)


# --- process-wide caches ------------------------------------------------------------------


async def test_tool_input_values_stay_out_of_jiters_string_cache() -> None:
    """jiter's string cache is shared by the whole process: one-off tool input values must not
    fill it (only keys, which repeat, are cached)."""
    values = [f"value number {i}" for i in range(300)]
    raw = json.dumps({"key": values, "other": {"nested": "x"}})
    body = StreamBuilder(seed=12).tool_use_block(raw_json=raw).build(stop_reason="tool_use")
    jiter.cache_clear()
    _, message, error = await run(chunk_events(body), pipeline.DEFAULT_LIMITS)
    assert error is None and message is not None
    assert message.content[0].to_dict()["input"]["key"] == values
    assert jiter.cache_usage() <= 3  # "key", "other", "nested"
