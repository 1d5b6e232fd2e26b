"""The runner: fusion and boundaries, async stages, cancellation, cleanup, lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import pipeline
from pipeline.testing import aiter_chunks, chunk_events, chunk_random, text_body

BODY = text_body(n_deltas=60, seed=3)
CHUNKS = chunk_events(BODY)


class TrackedSource:
    """An async iterable of chunks that records how far it was read and whether it closed.

    With ``gate`` set, it waits on the gate before yielding chunk number ``stall_at``.
    """

    def __init__(self, chunks: list[bytes], *, stall_at: int | None = None) -> None:
        self.chunks = chunks
        self.pulled = 0
        self.closed = False
        self.stall_at = stall_at
        self.gate = anyio.Event()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[bytes]:
        try:
            for i, chunk in enumerate(self.chunks):
                if i == self.stall_at:
                    await self.gate.wait()
                self.pulled += 1
                yield chunk
        finally:
            self.closed = True


async def reference() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    async with pipeline.open_stream(aiter_chunks([BODY])) as stream:
        events = [event.to_dict() async for event in stream]
        message = await stream.get_final_message()
    return events, message.to_dict()


def task_names() -> set[str]:
    return {task.name for task in anyio.get_running_tasks()}


@pytest.mark.parametrize(
    "stages",
    [
        [],
        [pipeline.boundary()],
        [pipeline.parse(), pipeline.boundary(buffer=1), pipeline.accumulate(), pipeline.derive()],
        [pipeline.parse(), pipeline.boundary(), pipeline.accumulate(), pipeline.boundary(), pipeline.derive()],
        [pipeline.boundary(), pipeline.boundary(buffer=2)],
    ],
    ids=["fused", "boundary-at-end", "after-parse", "every-stage", "adjacent-boundaries"],
)
async def test_boundaries_change_nothing_but_tasks(stages: list[Any]) -> None:
    """Forcing async boundaries anywhere gives the same events and final message."""
    want_events, want_message = await reference()
    async with pipeline.open_stream(aiter_chunks(chunk_random(BODY, seed=5)), stages=stages) as stream:
        events = [event.to_dict() async for event in stream]
        message = await stream.get_final_message()
    assert events == want_events
    assert message.to_dict() == want_message


class Delay:
    """An async stage that forwards each batch after a checkpoint (like an I/O stage)."""

    name = "delay"

    async def run(self, receive: MemoryObjectReceiveStream[list[Any]], send: MemoryObjectSendStream[list[Any]]) -> None:
        async with send:
            async for batch in receive:
                await anyio.lowlevel.checkpoint()
                await send.send([e for e in batch if not isinstance(e, pipeline.ContentBlockDeltaEvent)])


async def test_async_stage_runs_between_channels() -> None:
    """An async user stage sees batches in order and its output is what the consumer gets."""
    want_events, want_message = await reference()
    async with pipeline.open_stream(aiter_chunks(CHUNKS), stages=[Delay()]) as stream:
        events = [event.to_dict() async for event in stream]
        message = await stream.get_final_message()
    assert events == [e for e in want_events if e["type"] != "content_block_delta"]
    assert message.to_dict() == want_message


async def test_custom_stage_between_parse_and_accumulate() -> None:
    """A user stage slotted between built-in stages changes what the later stages see."""

    def shout(event: Any) -> Any:
        if isinstance(event, pipeline.ContentBlockDeltaEvent) and isinstance(event.delta, pipeline.TextDelta):
            return pipeline.ContentBlockDeltaEvent(
                index=event.index, delta=pipeline.TextDelta(text=event.delta.text.upper())
            )
        return event

    stages = [pipeline.parse(), pipeline.Map(shout), pipeline.accumulate(), pipeline.derive()]
    async with pipeline.open_stream(aiter_chunks(CHUNKS), stages=stages) as stream:
        texts = [event.text async for event in stream if isinstance(event, pipeline.TextEvent)]
        final = await stream.get_final_text()
    _, want = await reference()
    assert final == want["content"][0]["text"].upper()
    assert "".join(texts) == final


@pytest.mark.parametrize("stages", [[], [pipeline.boundary()]], ids=["fused", "boundary"])
async def test_breaking_out_closes_source_and_leaves_no_task(stages: list[Any]) -> None:
    """Leaving the block early cancels every stage task and closes the source."""
    source = TrackedSource(CHUNKS)
    before = task_names()
    with anyio.fail_after(1):
        async with pipeline.open_stream(source, stages=stages) as stream:
            async for event in stream:
                if isinstance(event, pipeline.TextEvent):
                    break
    assert source.closed
    assert source.pulled < len(CHUNKS)
    assert task_names() == before


@pytest.mark.parametrize("stages", [[], [pipeline.boundary()]], ids=["fused", "boundary"])
async def test_cancelling_a_waiting_stream_closes_source(stages: list[Any]) -> None:
    """Cancellation while the source waits for the network closes it and leaks no task."""
    source = TrackedSource(CHUNKS, stall_at=10)
    before = task_names()
    seen: list[Any] = []
    with anyio.fail_after(1):
        with anyio.CancelScope() as scope:
            async with pipeline.open_stream(source, stages=stages) as stream:
                stream.on_event(seen.append)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(stream.until_done)
                    await anyio.wait_all_tasks_blocked()
                    scope.cancel()
    assert scope.cancelled_caught
    assert source.closed and source.pulled == 10
    assert len(seen) > 0
    assert task_names() == before


async def test_stage_error_cancels_stages_and_closes_source() -> None:
    """An error in a stage behind a boundary reaches the consumer after the earlier events."""
    source = TrackedSource(CHUNKS)
    count = 0

    def fail_on_tenth(event: Any) -> Any:
        nonlocal count
        count += 1
        if count == 10:
            raise RuntimeError("boom")
        return event

    seen: list[Any] = []
    before = task_names()
    with (
        anyio.fail_after(1),
        pytest.raises(pipeline.StageError, match=r"^stage 'fail_on_tenth' failed: RuntimeError: boom$") as info,
    ):
        async with pipeline.open_stream(source, stages=[pipeline.Map(fail_on_tenth), pipeline.boundary()]) as stream:
            stream.on_event(seen.append)
            await stream.get_final_message()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.name == "fail_on_tenth"
    assert len(seen) == 9
    assert source.closed
    assert task_names() == before


async def test_source_error_is_raised_after_delivered_events() -> None:
    """A failing source (e.g. a dropped connection) fails the stream with its own error."""

    async def broken() -> AsyncIterator[bytes]:
        for chunk in CHUNKS[:5]:
            yield chunk
        raise ConnectionResetError("peer went away")

    seen: list[Any] = []
    with pytest.raises(
        pipeline.SourceError, match=r"^reading the stream failed: ConnectionResetError: peer went away$"
    ) as info:
        async with pipeline.open_stream(broken(), subscribers=[_Collector(seen)]) as stream:
            await stream.until_done()
    assert [e.type for e in seen][:2] == ["message_start", "content_block_start"]
    assert isinstance(info.value.__cause__, ConnectionResetError)
    partial = info.value.partial_message
    assert partial is not None and partial.content[0].text == "".join(
        e.text for e in seen if isinstance(e, pipeline.TextEvent)
    )


class _BareIterator:
    """What an ``__aiter__`` may legally return to ``async for``... of the iterable: an
    object with ``__anext__`` (and ``aclose``) but no ``__aiter__`` of its own."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.closed = False

    async def __anext__(self) -> bytes:
        if not self.chunks:
            raise StopAsyncIteration
        return self.chunks.pop(0)

    async def aclose(self) -> None:
        self.closed = True


class _BareIterable:
    def __init__(self, chunks: list[bytes]) -> None:
        self.iterator = _BareIterator(chunks)

    def __aiter__(self) -> _BareIterator:
        return self.iterator


@pytest.mark.parametrize("drive", ["get_final_message", "async_for"])
async def test_source_iterator_without_aiter(drive: str) -> None:
    """An iterable whose iterator has no ``__aiter__`` is read to the end, on the hot
    loop (``get_final_message``) and through ``async for`` alike."""
    expected_events, expected = await reference()
    async with pipeline.open_stream(_BareIterable(CHUNKS)) as stream:
        if drive == "async_for":
            assert [event.to_dict() async for event in stream] == expected_events
        message = await stream.get_final_message()
    assert message.to_dict() == expected


async def test_source_iterator_without_aiter_is_closed_when_left_early() -> None:
    source = _BareIterable(CHUNKS)
    async with pipeline.open_stream(source) as stream:
        async for _ in stream:
            break
    assert source.iterator.closed
    assert len(source.iterator.chunks) == len(CHUNKS) - 1


@pytest.mark.parametrize("drive", ["until_done", "async_for"])
async def test_source_giving_a_non_bytes_chunk_is_a_source_error(drive: str) -> None:
    """A chunk that is not bytes fails the stream with SourceError, after the events
    before it, on both drive paths."""

    async def wrong() -> AsyncIterator[Any]:
        for chunk in CHUNKS[:5]:
            yield chunk
        yield None

    seen: list[Any] = []
    with pytest.raises(pipeline.SourceError, match=r"^reading the stream failed: TypeError: ") as info:
        async with pipeline.open_stream(wrong(), subscribers=[_Collector(seen)]) as stream:
            if drive == "async_for":
                async for _ in stream:
                    pass
            else:
                await stream.until_done()
    assert [e.type for e in seen][:2] == ["message_start", "content_block_start"]
    assert info.value.partial_message is not None


class _Collector:
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def on_event(self, event: Any) -> None:
        self.into.append(event)


async def test_lifecycle_callbacks() -> None:
    """on_end runs once on success; on_error then on_end run on failure."""
    calls: list[str] = []

    class Life:
        def on_error(self, error: BaseException) -> None:
            calls.append(f"error:{type(error).__name__}")

        async def on_end(self) -> None:
            calls.append("end")

    async with pipeline.open_stream(aiter_chunks(CHUNKS), subscribers=[Life()]) as stream:
        await stream.until_done()
    assert calls == ["end"]
    calls.clear()
    with pytest.raises(pipeline.IncompleteStreamError):
        async with pipeline.open_stream(aiter_chunks(CHUNKS[:-1]), subscribers=[Life()]) as stream:
            await stream.until_done()
    assert calls == ["error:IncompleteStreamError", "end"]


async def test_on_end_subscribed_after_the_last_event_still_runs() -> None:
    """A finished stream skips its shielded close, unless an on_end came after the end."""
    calls: list[str] = []
    async with pipeline.open_stream(aiter_chunks(CHUNKS)) as stream:
        await stream.get_final_message()
        stream.on_end(lambda: calls.append("end"))
        assert calls == []
    assert calls == ["end"]
    async with pipeline.open_stream(aiter_chunks(CHUNKS)) as stream:
        await stream.get_final_message()
    assert calls == ["end"]  # and a stream without one ends quietly


async def test_pipeline_config_is_reusable() -> None:
    """Each stream of a Pipeline gets fresh stage state; subscribers are shared."""
    seen: list[Any] = []
    config = pipeline.Pipeline(subscribers=[_Collector(seen)], stages=[pipeline.boundary()])
    messages = []
    for _ in range(2):
        async with config.open_stream(aiter_chunks(CHUNKS)) as stream:
            messages.append((await stream.get_final_message()).to_dict())
    _, want = await reference()
    assert messages == [want, want]
    assert len(seen) == 2 * len((await reference())[0])


async def test_text_stream_and_final_text() -> None:
    async with pipeline.open_stream(aiter_chunks(CHUNKS)) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_text()
    assert "".join(pieces) == final
    assert stream.statistics().chunks == len(CHUNKS)
    assert stream.statistics().bytes == len(BODY)


async def test_stream_must_be_entered() -> None:
    stream = pipeline.open_stream(aiter_chunks(CHUNKS))
    with pytest.raises(RuntimeError, match=r"^use the stream inside `async with`$"):
        await stream.until_done()


async def test_source_must_be_async_iterable() -> None:
    with pytest.raises(TypeError, match=r"^source must be an AsyncIterable\[bytes\] or httpx.Response, got list$"):
        async with pipeline.open_stream(CHUNKS):
            pass


@pytest.mark.parametrize("stages", [[], [pipeline.boundary()]], ids=["fused", "boundary"])
async def test_idle_timeout_fails_a_silent_stream_and_closes_it(stages: list[Any]) -> None:
    """A source that goes silent fails with IdleTimeoutError; what arrived is kept."""
    source = TrackedSource(CHUNKS, stall_at=10)
    texts: list[str] = []
    with (
        anyio.fail_after(5),
        pytest.raises(pipeline.IdleTimeoutError, match=r"^no bytes for 0.05 s \(idle_timeout\)$") as info,
    ):
        async with pipeline.open_stream(source, stages=stages, idle_timeout=0.05) as stream:
            stream.on_text(lambda event: texts.append(event.text))
            await stream.until_done()
    assert source.closed and source.pulled == 10
    partial = info.value.partial_message
    assert partial is not None and partial.text == "".join(texts) != ""


async def test_idle_timeout_is_validated() -> None:
    with pytest.raises(ValueError, match=r"^idle_timeout must be > 0 or None, got 0$"):
        pipeline.open_stream(aiter_chunks(CHUNKS), idle_timeout=0)
