"""The subscriber bus: callbacks, ordering, async subscribers, overflow and failure policies."""

from __future__ import annotations

import json
import random
from typing import Any

import anyio
import pytest

import pipeline
from pipeline.testing import StreamBuilder, aiter_chunks, chunk_events, citation, text_body
from tests.helpers import GatedSubscriber

BODY = text_body(n_deltas=40, seed=9)
CHUNKS = chunk_events(BODY)


def rich_body() -> bytes:
    rng = random.Random(1)
    builder = (
        StreamBuilder(seed=1)
        .thinking_block(["Let me ", "think."], "c2ln")
        .text_block(["Hello ", "there"], citations={1: [citation("char_location", rng)]})
        .tool_use_block({"city": "Zürich", "days": [1, 2]}, name="forecast")
    )
    return builder.build(stop_reason="tool_use")


class Everything:
    """Records every callback, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_text(self, event: pipeline.TextEvent) -> None:
        self.calls.append(("text", event.text))

    def on_tool_input(self, event: pipeline.InputJsonEvent) -> None:
        self.calls.append(("tool_input", event.partial_json))

    def on_thinking(self, event: pipeline.ThinkingEvent) -> None:
        self.calls.append(("thinking", event.thinking))

    def on_citation(self, event: pipeline.CitationEvent) -> None:
        self.calls.append(("citation", event.citation["type"]))

    def on_signature(self, event: pipeline.SignatureEvent) -> None:
        self.calls.append(("signature", event.signature))

    def on_content_block(self, block: pipeline.ContentBlock) -> None:
        self.calls.append(("block", block.type))

    def on_message(self, message: pipeline.Message) -> None:
        self.calls.append(("message", message.stop_reason))

    def on_end(self) -> None:
        self.calls.append(("end", None))


async def test_every_callback_fires_in_stream_order() -> None:
    recorder = Everything()
    async with pipeline.open_stream(aiter_chunks(chunk_events(rich_body())), subscribers=[recorder]) as stream:
        message = await stream.get_final_message()
    tool = message.content[2]
    assert isinstance(tool, pipeline.ToolUseBlock)
    assert tool.input == {"city": "Zürich", "days": [1, 2]}
    kinds = [kind for kind, _ in recorder.calls]
    assert kinds[:4] == ["thinking", "thinking", "signature", "block"]
    assert kinds[4:8] == ["text", "text", "citation", "block"]
    assert kinds[-3:] == ["block", "message", "end"]
    pieces = [v for k, v in recorder.calls if k == "tool_input"]
    assert len(pieces) > 1
    assert json.loads("".join(pieces)) == tool.input


async def test_decorators_and_objects_see_the_same_sequence() -> None:
    """Every consumer (iterator, decorator, subscriber object) sees every event, in order."""
    seen_obj: list[Any] = []
    seen_dec: list[Any] = []

    class Obj:
        def on_event(self, event: Any) -> None:
            seen_obj.append(event)

    async with pipeline.open_stream(aiter_chunks(CHUNKS), subscribers=[Obj()]) as stream:
        stream.on_event(seen_dec.append)
        iterated = [event async for event in stream]
    assert iterated == seen_obj == seen_dec
    assert len(iterated) > 40


def _lone(callback: str, sink: Any) -> object:
    """A subscriber with the one sync callback *callback*, appending what it gets to *sink*."""
    return type("Lone", (), {callback: staticmethod(sink)})()


_PICK: dict[str, Any] = {  # what each callback gets of a stream's events
    "on_text": lambda events: [e for e in events if isinstance(e, pipeline.TextEvent)],
    "on_tool_input": lambda events: [e for e in events if isinstance(e, pipeline.InputJsonEvent)],
    "on_thinking": lambda events: [e for e in events if isinstance(e, pipeline.ThinkingEvent)],
    "on_citation": lambda events: [e for e in events if isinstance(e, pipeline.CitationEvent)],
    "on_content_block": lambda events: [
        e.content_block for e in events if isinstance(e, pipeline.ContentBlockStopEvent)
    ],
    "on_event": list,
}


def _dicts(items: list[Any]) -> list[dict[str, Any]]:
    """Events and blocks of two runs compare by value (a derived event holds its run's store)."""
    return [item.to_dict() for item in items]


@pytest.mark.parametrize("drive", ["iterate", "final_message"])
@pytest.mark.parametrize("callback", list(_PICK))
async def test_a_lone_callback_gets_exactly_its_events(callback: str, drive: str) -> None:
    """One sync callback alone (the bus's single-callback path) gets its events, and no
    others, whether the stream is iterated or driven to its final message."""
    chunks = chunk_events(rich_body())
    async with pipeline.open_stream(aiter_chunks(chunks)) as stream:
        events = [event async for event in stream]
    got: list[Any] = []
    async with pipeline.open_stream(aiter_chunks(chunks), subscribers=[_lone(callback, got.append)]) as stream:
        if drive == "iterate":
            assert _dicts([event async for event in stream]) == _dicts(events)
        else:
            await stream.get_final_message()
    assert _dicts(got) == _dicts(_PICK[callback](events))
    assert got


async def test_a_second_subscriber_added_by_a_lone_callback_sees_the_rest() -> None:
    """A lone callback that subscribes another one mid-stream misses nothing, and the new
    one gets every event from the next chunk on."""
    chunks = chunk_events(rich_body())
    async with pipeline.open_stream(aiter_chunks(chunks)) as stream:
        events = [event async for event in stream]
    first: list[Any] = []
    later: list[Any] = []

    async with pipeline.open_stream(aiter_chunks(chunks)) as stream:

        def on_event(event: Any) -> None:
            first.append(event)
            if len(first) == 5:
                stream.on_event(later.append)

        stream.on_event(on_event)
        await stream.get_final_message()
    assert _dicts(first) == _dicts(events)
    assert 0 < len(later) < len(events) - 5
    assert _dicts(later) == _dicts(events[-len(later) :])


async def test_async_subscriber_gets_every_event_in_order() -> None:
    seen: list[Any] = []

    class Slow:
        async def on_event(self, event: Any) -> None:
            await anyio.lowlevel.checkpoint()
            seen.append(event)

    async with pipeline.open_stream(aiter_chunks(CHUNKS), subscribers=[Slow()]) as stream:
        iterated = [event async for event in stream]
        await stream.until_done()
        assert seen == iterated
    stats = stream.statistics().subscribers[0]
    assert (stats.delivered, stats.dropped, stats.detached) == (len(iterated), 0, False)


class CountingSource:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.pulled = 0

    async def __aiter__(self) -> Any:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk


async def test_block_policy_pauses_reading_from_the_source() -> None:
    """A blocked async subscriber (overflow=block) stops the network read; nothing is lost."""
    gated = GatedSubscriber()
    source = CountingSource(CHUNKS)
    with anyio.fail_after(2):
        stream = pipeline.open_stream(source)
        stream.subscribe(gated, buffer=2)  # an async subscriber: before `async with`
        async with stream:
            async with anyio.create_task_group() as tg:
                tg.start_soon(stream.until_done)
                await anyio.wait_all_tasks_blocked()
                # message_start + block start + 1 taken by the subscriber + 2 buffered, 1 waiting
                assert source.pulled <= 8
                stalled_at = source.pulled
                await anyio.wait_all_tasks_blocked()
                assert source.pulled == stalled_at
                gated.gate.set()
    assert "".join(gated.texts) == (await stream.get_final_text())


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
async def test_drop_policies_count_exactly(policy: pipeline.runtime.subscription.Overflow) -> None:
    gated = GatedSubscriber()
    stream = pipeline.open_stream(aiter_chunks(CHUNKS))
    stream.subscribe(gated, buffer=2, overflow=policy)
    async with stream:
        total = 0

        @stream.on_text
        def count(event: pipeline.TextEvent) -> None:
            nonlocal total
            total += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(stream.until_done)
            await anyio.wait_all_tasks_blocked()
            gated.gate.set()
    stats = stream.statistics().subscribers[0]
    assert stats.dropped > 0
    assert stats.delivered + stats.dropped == total == 40
    assert len(gated.texts) == stats.delivered
    final = await stream.get_final_text()
    if policy == "drop_newest":
        assert final.startswith("".join(gated.texts))
    else:
        assert final.endswith("".join(gated.texts[-2:]))


async def test_error_policy_fails_only_that_stream() -> None:
    gated = GatedSubscriber()
    with pytest.raises(
        pipeline.SubscriberOverflowError,
        match=r"^subscriber 'GatedSubscriber' failed: fell behind by more than 1 batches$",
    ):
        stream = pipeline.open_stream(aiter_chunks(CHUNKS))
        stream.subscribe(gated, buffer=1, overflow="error")
        async with stream:
            await stream.until_done()
    async with pipeline.open_stream(aiter_chunks(CHUNKS)) as other:
        assert await other.get_final_text()


@pytest.mark.parametrize("drive", ["iterate", "final_message"])
async def test_on_event_gets_derived_events_only(drive: str) -> None:
    """A user stage may put other objects in the stream: ``async for`` yields them, and an
    ``on_event`` callback gets the derived events only, on both drive paths."""

    def tag(event: Any) -> Any:
        return ("text", event.text) if isinstance(event, pipeline.TextEvent) else event

    seen: list[Any] = []
    async with pipeline.open_stream(aiter_chunks(CHUNKS), stages=[pipeline.Map(tag)]) as stream:
        stream.on_event(seen.append)
        items = [item async for item in stream] if drive == "iterate" else []
        await stream.get_final_message()
    assert seen and not any(isinstance(event, tuple) for event in seen)
    assert {type(event) for event in seen} >= {pipeline.ContentBlockDeltaEvent, pipeline.MessageStopEvent}
    if drive == "iterate":
        assert [item for item in items if not isinstance(item, tuple)] == seen
        assert sum(isinstance(item, tuple) for item in items) == 40


class TextRecorder:
    """An async subscriber that records the text deltas it gets."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def on_text(self, event: pipeline.TextEvent) -> None:
        self.texts.append(event.text)


async def test_an_async_subscriber_inside_async_with_needs_the_streams_task_group() -> None:
    """A stream with nothing to run beside its consumer is entered without a task group:
    an async subscriber added inside ``async with`` is refused, clearly, and the stream
    goes on; a sync one is taken."""
    async with pipeline.open_stream(aiter_chunks(CHUNKS)) as stream:
        expected = await stream.get_final_text()
    texts: list[str] = []
    async with pipeline.open_stream(aiter_chunks(CHUNKS)) as stream:
        with pytest.raises(RuntimeError, match=r"^async subscriber 'TextRecorder' subscribed inside `async with`"):
            stream.subscribe(TextRecorder())

        async def late(event: pipeline.TextEvent) -> None:
            raise AssertionError("never called")

        with pytest.raises(RuntimeError, match=r"^async subscriber 'on_text:late' subscribed inside"):
            stream.on_text(late)
        stream.on_text(lambda event: texts.append(event.text))
        assert await stream.get_final_text() == expected
    assert "".join(texts) == expected
    assert stream.statistics().subscribers == []


@pytest.mark.parametrize("drive", ["iterate", "final_message"])
async def test_an_async_subscriber_inside_async_with_joins_a_stream_with_tasks(drive: str) -> None:
    """A stream that runs tasks (here another async subscriber) takes an async subscriber
    inside ``async with`` too; it gets every event published after it."""
    first, late = TextRecorder(), TextRecorder()
    async with pipeline.open_stream(aiter_chunks(CHUNKS), subscribers=[first]) as stream:
        stream.subscribe(late)
        if drive == "iterate":
            async for _ in stream:
                pass
        text = await stream.get_final_text()
    assert "".join(first.texts) == "".join(late.texts) == text
    assert [s.delivered for s in stream.statistics().subscribers] == [len(first.texts)] * 2


class Faulty:
    def __init__(self) -> None:
        self.calls = 0

    def on_text(self, event: pipeline.TextEvent) -> None:
        self.calls += 1
        if self.calls == 3:
            raise ValueError("bad subscriber")


async def test_propagate_fails_the_stream() -> None:
    with pytest.raises(
        pipeline.SubscriberError, match=r"^subscriber 'Faulty' failed: ValueError: bad subscriber$"
    ) as info:
        async with pipeline.open_stream(aiter_chunks(CHUNKS), subscribers=[Faulty()]) as stream:
            await stream.until_done()
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("make_async", [False, True])
async def test_isolate_detaches_and_goes_on(make_async: bool) -> None:
    """An isolated failing subscriber is detached; the stream and the others go on."""
    faulty = Faulty()
    if make_async:
        sync_call = faulty.on_text

        async def on_text(event: pipeline.TextEvent) -> None:
            sync_call(event)

        faulty.on_text = on_text  # type: ignore[method-assign]
    after: list[str] = []
    stream = pipeline.open_stream(aiter_chunks(CHUNKS))
    stream.subscribe(faulty, errors="isolate", name="faulty")
    async with stream:
        stream.on_text(lambda event: after.append(event.text))
        text = await stream.get_final_text()
    assert faulty.calls == 3
    assert "".join(after) == text


@pytest.mark.parametrize("drive", ["iterate", "final_message"])
async def test_a_lone_isolated_callback_is_detached_and_the_stream_goes_on(drive: str) -> None:
    """The single-callback path detaches an isolated failing callback, as the general one does."""
    async with pipeline.open_stream(aiter_chunks(CHUNKS)) as stream:
        expected = await stream.get_final_text()
    faulty = Faulty()
    async with pipeline.open_stream(aiter_chunks(CHUNKS)) as stream:
        stream.subscribe(faulty, errors="isolate")
        if drive == "iterate":
            texts = [event.text async for event in stream if isinstance(event, pipeline.TextEvent)]
            assert "".join(texts) == expected
        assert await stream.get_final_text() == expected
    assert faulty.calls == 3


def _failing_index(events: list[Any], on: str) -> int:
    """Where in *events* (one live stream's) a test callback raises: on the last text
    delta, its text event, the last citation event, the last block start or stop."""
    if on in ("raw delta", "text event"):
        raw = [i for i, e in enumerate(events) if type(getattr(e, "delta", None)) is pipeline.TextDelta]
        assert len(raw) > 1 and type(events[raw[-1] + 1]) is pipeline.TextEvent
        return raw[-1] if on == "raw delta" else raw[-1] + 1
    kind = {
        "citation": pipeline.CitationEvent,
        "block start": pipeline.ContentBlockStartEvent,
        "block stop": pipeline.ContentBlockStopEvent,
    }[on]
    at = [i for i, e in enumerate(events) if type(e) is kind]
    assert at
    return at[-1]


@pytest.mark.parametrize("errors", ["isolate", "propagate"])
@pytest.mark.parametrize(
    ("callback", "on"),
    [
        ("on_event", "raw delta"),
        ("on_event", "text event"),
        ("on_text", "text event"),
        ("on_event", "block start"),
        ("on_event", "block stop"),
        ("on_content_block", "block stop"),
        ("on_event", "citation"),
        ("on_citation", "citation"),
    ],
)
async def test_a_lone_callback_raising_on_a_live_event(callback: str, on: str, errors: str) -> None:
    """The fused chain calls a lone callback itself for a live piece or citation delta
    (on_event: the raw delta, then its text or citation event; on_text, on_citation: that
    event) and for a live block start or stop. Raising on any of them applies the
    subscriber's policy as anywhere: isolated, it is detached after exactly the events it
    saw, and the stream counts and finishes as without it; propagated, the stream fails
    with the partial message as of that event."""
    chunks = chunk_events(rich_body())
    async with pipeline.open_stream(aiter_chunks(chunks)) as stream:
        events = [event async for event in stream]
        expected = await stream.get_final_message()
        total = stream.statistics().events
    fail_at = _failing_index(events, on)
    sent = _PICK[callback](events[: fail_at + 1])
    seen: list[Any] = []

    def sink(event: Any) -> None:
        seen.append(event)
        if len(seen) == len(sent):
            raise ValueError("bad subscriber")

    stream = pipeline.open_stream(aiter_chunks(chunks))
    stream.subscribe(_lone(callback, sink), errors=errors)  # type: ignore[arg-type]
    if errors == "isolate":
        async with stream:
            assert (await stream.get_final_message()).to_dict() == expected.to_dict()
            assert stream.statistics().events == total
    else:
        with pytest.raises(pipeline.SubscriberError) as info:
            async with stream:
                await stream.get_final_message()
        assert isinstance(info.value.__cause__, ValueError)
        partial = info.value.partial_message
        assert partial is not None
        # the event was folded before it was delivered
        failed = events[fail_at]
        if on == "block start":
            assert len(partial.content) == failed.index + 1  # type: ignore[attr-defined]
        elif on == "block stop":
            assert partial.content[-1].to_dict() == failed.content_block.to_dict()  # type: ignore[attr-defined]
        elif on == "citation":
            block = partial.content[len(partial.content) - 1]
            assert isinstance(block, pipeline.TextBlock) and block.citations == failed.snapshot  # type: ignore[attr-defined]
        else:  # the text delta's text event has the block's text as of that delta
            text_event = events[fail_at + 1] if on == "raw delta" else failed
            assert partial.content[-1].text == text_event.snapshot  # type: ignore[union-attr]
    assert _dicts(seen) == _dicts(sent)


async def test_async_propagate_fails_the_stream() -> None:
    class Bad:
        async def on_message(self, message: pipeline.Message) -> None:
            raise KeyError("late")

    with pytest.raises(pipeline.SubscriberError, match=r"^subscriber 'Bad' failed: KeyError: 'late'$"):
        async with pipeline.open_stream(aiter_chunks(CHUNKS), subscribers=[Bad()]) as stream:
            await stream.get_final_message()


def test_subscription_validates_its_options() -> None:
    with pytest.raises(TypeError, match=r"^object has none of the callbacks"):
        pipeline.Subscription(object())
    with pytest.raises(ValueError, match=r"^buffer must be >= 1, got 0$"):
        pipeline.Subscription(Faulty(), buffer=0)
    with pytest.raises(ValueError, match=r"^overflow must be block, drop_oldest, drop_newest or error, got 'later'$"):
        pipeline.Subscription(Faulty(), overflow="later")  # type: ignore[arg-type]
