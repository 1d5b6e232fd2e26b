"""Typed errors: type, exact message, attributes, and what was delivered before each failure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import sdk_run, sdk_run_threaded

import pipeline
import pipeline.testing as t
from pipeline import errors

MESSAGE: dict[str, Any] = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
           "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}
TEXT = {"type": "text", "text": ""}
TOOL = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
START: t.Event = ("message_start", {"type": "message_start", "message": MESSAGE})
DELTA: t.Event = ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 5},
                                    "delta": {"stop_reason": "end_turn", "stop_sequence": None}})
STOP: t.Event = ("message_stop", {"type": "message_stop"})


def block(index: int, content: dict[str, Any]) -> t.Event:
    return ("content_block_start", {"type": "content_block_start", "index": index, "content_block": content})


def delta(index: int, value: dict[str, Any] | str) -> t.Event:
    value = {"type": "text_delta", "text": value} if isinstance(value, str) else value
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": value})


def json_piece(index: int, text: str) -> t.Event:
    return delta(index, {"type": "input_json_delta", "partial_json": text})


def end(index: int) -> t.Event:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def body(*events: t.Event) -> bytes:
    return t.encode_events(events)


def exact(message: str) -> str:
    """A ``match`` pattern for exactly *message*."""
    return f"^{re.escape(message)}$"


class Recorder:
    """A sync subscriber; with :func:`consume` it logs, in order, what was delivered and yielded."""

    def __init__(self, *, dicts: bool = True) -> None:
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.dicts = dicts  # False: record types only (an input_json snapshot may fail: bug B)

    def record(self, kind: str, event: pipeline.DerivedEvent) -> None:
        self.log.append((kind, event.to_dict() if self.dicts else {"type": event.type}))

    def on_event(self, event: pipeline.DerivedEvent) -> None:
        self.record("delivered", event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for k, event in self.log if k == kind]


async def consume(
    chunks: Sequence[bytes], rec: Recorder | None = None, *, subscribers: Sequence[object] = (), **options: Any
) -> pipeline.Message:
    """Iterate the stream (to_dict at yield time), then return the final message."""
    rec = rec or Recorder()
    async with pipeline.open_stream(t.aiter_chunks(chunks), subscribers=[rec, *subscribers], **options) as stream:
        async for event in stream:
            rec.record("yielded", event)
        return await stream.get_final_message()


HELLO = [START, block(0, TEXT), delta(0, "Hel"), delta(0, "lo")]  # six derived events
HELLO_TYPES = ["message_start", "content_block_start", "content_block_delta", "text"]  # ... the first four

# --- DecodeError ------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "reason"), [
    (b"{not json}", "JSON is malformed: object keys must be strings (byte 1)"),
    (b'{"type":"content_block_delta","index":"0","delta":{"type":"text_delta","text":"x"}}',
     "Expected `int`, got `str` - at `$.index`"),
    (b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta"}}',
     "Object missing required field `text` - at `$.delta`"),
    (b'{"type":"message_delta","delta":{}}', "Object missing required field `usage`"),
    (b'{"foo":1}', "expected an object with a string `type`"),
    (b"[1]", "expected an object with a string `type`"),
], ids=["bad-json", "index-type", "delta-field", "no-usage", "no-type", "not-object"])
async def test_decode_error(data: bytes, reason: str) -> None:
    chunks = [body(*HELLO[:2]) + b"event: content_block_delta\ndata: " + data + b"\n\n"]
    message = f"cannot decode content_block_delta event: {reason}; data: {data.decode()!r}"
    with pytest.raises(pipeline.DecodeError, match=exact(message)) as info:
        await consume(chunks)
    assert (info.value.event, info.value.data, info.value.reason) == ("content_block_delta", data.decode(), reason)


async def test_excerpts_are_cut_at_200_characters() -> None:
    data = b'{"type":"message_start","message":"' + b"x" * 300 + b'"}'
    with pytest.raises(pipeline.DecodeError) as decode:
        await consume([body(START) + b"event: message_start\ndata: " + data + b"\n\n"])
    assert decode.value.data == data[:200].decode() + "…" and str(decode.value).endswith(f"{decode.value.data!r}")
    raw = '{"k": "' + "v" * 300
    with pytest.raises(pipeline.ToolInputError) as tool:
        await consume([body(START, block(0, TOOL), json_piece(0, raw), end(0))])
    assert tool.value.excerpt == raw[:200] + "…" and str(tool.value).endswith(f"{tool.value.excerpt!r}")


# --- ProtocolError ----------------------------------------------------------------------


@pytest.mark.parametrize("event", [block(0, TEXT), delta(0, "x"), end(0), DELTA, STOP], ids=lambda e: e[0])
async def test_event_before_message_start(event: t.Event) -> None:
    rec = Recorder()
    with pytest.raises(pipeline.ProtocolError, match=exact(f"{event[0]} before message_start")) as info:
        await consume(t.chunk_events(body(event, *HELLO)), rec)
    assert info.value.event == event[0] and info.value.partial_message is None
    assert rec.log == []


@pytest.mark.parametrize(("events", "message"), [
    ([delta(3, "x")], "content_block_delta for unknown block index 3"),
    ([delta(-1, "x")], "content_block_delta for unknown block index -1"),
    ([end(0), delta(0, "x")], "content_block_delta for block 0 after its content_block_stop"),
    ([block(2, TEXT)], "content_block_start index 2, expected 1"),
    ([end(5)], "content_block_stop for unknown block index 5"),
    ([end(0), end(0)], "content_block_stop for block 0 that already stopped"),
    ([START], "message_start after message_start"),
    ([end(0), DELTA, STOP, DELTA], "message_delta after message_stop"),
    ([end(0), DELTA, STOP, block(1, TEXT)], "content_block_start after message_stop"),
    ([end(0), DELTA, STOP, STOP], "message_stop after message_stop"),
    ([end(0), DELTA, STOP, START], "message_start after message_start"),
], ids=["unknown-index", "negative-index", "after-block-stop", "wrong-start-index", "stop-unknown", "stop-twice",
        "second-start", "delta-after-end", "block-after-end", "stop-after-end", "start-after-end"])
async def test_protocol_error(events: list[t.Event], message: str) -> None:
    """Every event before the bad one is yielded and delivered; the partial message is kept."""
    rec = Recorder()
    with pytest.raises(pipeline.ProtocolError, match=exact(message)) as info:
        await consume(t.chunk_events(body(*HELLO, *events)), rec)
    assert info.value.event == message.split()[0]
    assert rec.of("yielded") == rec.of("delivered")
    assert len(rec.of("yielded")) == 6 + len(events) - 1
    partial = info.value.partial_message
    assert partial is not None and partial.text == "Hello" and partial.id == "msg_1"


async def test_delta_after_message_stop_for_an_unstopped_block() -> None:
    with pytest.raises(pipeline.ProtocolError) as info:
        await consume(t.chunk_events(body(*HELLO, DELTA, STOP, delta(0, "late"))))
    assert info.value.event == "content_block_delta"


# --- ToolInputError ---------------------------------------------------------------------


@pytest.mark.parametrize(("pieces", "reason", "partial_input"), [
    (['{"city": ', "Paris}"], "expected value at line 1 column 10", {}),
    (['{"a": 1}', "}"], "trailing characters at line 1 column 9", {"a": 1}),
    (['{"a": [1, 2', "]"], "EOF while parsing an object at line 1 column 12", {"a": [1, 2]}),
], ids=["bad-value", "trailing", "unclosed"])
async def test_tool_input_error_at_block_stop(pieces: list[str], reason: str, partial_input: Any) -> None:
    """Raised at content_block_stop, after every delta was yielded; the partial input is kept."""
    events = [*HELLO, end(0), block(1, TOOL), *(json_piece(1, p) for p in pieces), end(1), DELTA, STOP]
    rec, got = Recorder(dicts=False), "".join(pieces)
    message = f"invalid input JSON for tool 'get_weather' in block 1: {reason}; got {got!r}"
    with pytest.raises(pipeline.ToolInputError, match=exact(message)) as info:
        await consume(t.chunk_events(body(*events)), rec)
    error = info.value
    assert (error.index, error.tool_name, error.excerpt) == (1, "get_weather", got)
    assert rec.of("yielded") == rec.of("delivered")
    assert rec.of("yielded")[-2:] == [{"type": "content_block_delta"}, {"type": "input_json"}]
    assert error.partial_message is not None
    assert [b.to_dict() for b in error.partial_message.content] == [
        {"type": "text", "text": "Hello"}, {**TOOL, "input": partial_input}]


async def test_tool_input_error_of_an_unstopped_block_keeps_the_partial_message() -> None:
    with pytest.raises(pipeline.ToolInputError) as info:
        await consume([body(START, block(0, TOOL), json_piece(0, '{"a":'), DELTA, STOP)])
    assert info.value.partial_message is not None


@pytest.mark.parametrize("pieces", [['{"a": ', "}"], [" ", '{"a": 1}']], ids=["malformed", "leading-space"])
async def test_input_json_snapshot_never_raises_a_bare_error(pieces: list[str]) -> None:
    chunks = t.chunk_events(body(START, block(0, TOOL), *(json_piece(0, p) for p in pieces), end(0), DELTA, STOP))
    async with pipeline.open_stream(t.aiter_chunks(chunks)) as stream:
        try:
            async for event in stream:
                event.to_dict()
        except pipeline.ToolInputError:
            assert pieces[0] != " "  # only invalid input fails, and only at its content_block_stop
            return
    assert (await stream.get_final_message()).content[0].to_dict()["input"] == {"a": 1}


# --- APIError from an `event: error` ------------------------------------------------------

ERROR_TYPES: dict[str, type[errors.APIError]] = {
    "overloaded_error": pipeline.OverloadedError, "rate_limit_error": errors.RateLimitError,
    "api_error": errors.APIInternalError, "invalid_request_error": errors.InvalidRequestError,
    "authentication_error": errors.AuthenticationError, "permission_error": errors.PermissionDeniedError,
    "not_found_error": errors.NotFoundError, "request_too_large": errors.RequestTooLargeError,
    "brand_new_error": errors.APIError,
}


def _error(error_type: str) -> t.Event:
    return ("error", {"type": "error", "error": {"type": error_type, "message": "Something broke"}})


@pytest.mark.parametrize("error_type", list(ERROR_TYPES))
async def test_error_event_raises_its_typed_error(error_type: str) -> None:
    """Every event before the error is yielded and delivered (as the SDK yields them) first."""
    name, payload = _error(error_type)
    chunks = t.chunk_events(t.StreamBuilder(seed=1).text_block(["Hel", "lo"]).raw_event(name, payload).build())
    rec = Recorder()
    with pytest.raises(pipeline.APIStreamError, match=exact(f"{error_type}: Something broke")) as info:
        await consume(chunks, rec)
    error = info.value
    assert type(error) is ERROR_TYPES[error_type]
    assert (error.error_type, error.message, error.status_code, error.body) == (
        error_type, "Something broke", None, payload)
    assert error.partial_message is not None and error.partial_message.text == "Hello"
    sdk = await sdk_run_threaded(chunks)
    assert sdk.error is not None and sdk.events
    assert rec.of("yielded") == rec.of("delivered") == sdk.events


@pytest.mark.parametrize("tail", [body(_error("overloaded_error")), body(delta(7, "x")), b"event: ping\ndata: {\n\n"],
                         ids=["error-event", "protocol", "decode"])
async def test_events_of_a_failing_chunk_are_yielded(tail: bytes) -> None:
    rec = Recorder()
    with pytest.raises(pipeline.PipelineError):
        await consume([body(*HELLO) + tail], rec)
    assert len(rec.of("delivered")) == 6
    assert rec.of("yielded") == rec.of("delivered")


@pytest.mark.parametrize(("data", "error_type", "message"), [
    (b"oops", "api_error", "oops"), (b"", "api_error", "error event without data"),
    (b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', "overloaded_error", "Overloaded"),
])
async def test_error_event_with_odd_data(data: bytes, error_type: str, message: str) -> None:
    """An error event fails the stream whatever its data, even before message_start."""
    with pytest.raises(ERROR_TYPES[error_type], match=exact(f"{error_type}: {message}")) as info:
        await consume([b"event: error\ndata: " + data + b"\n\n" + body(*HELLO)])
    assert info.value.partial_message is None


# --- IncompleteStreamError ------------------------------------------------------------------

_TOOL_EVENTS = [*HELLO, end(0), block(1, TOOL), json_piece(1, '{"city": "Par'), json_piece(1, 'is", "n": [1, 2'),
                ("ping", t.PING), DELTA]


@pytest.mark.parametrize("chunker", ["bytes", "events"])
@pytest.mark.parametrize("keep", [1, 3, 6, 8, 9, 10])
async def test_stream_without_message_stop(keep: int, chunker: str) -> None:
    """The partial message equals the SDK's final message; allow_incomplete gives the SDK's answer.
    In one-event chunks, the deltas take the fused chain's live path, which records the last
    event's type differently."""
    data = body(*_TOOL_EVENTS[:keep]) + b'event: content_block_delta\ndata: {"type":"con'  # partial: dropped
    chunks = t.chunk_bytes(data, 16) if chunker == "bytes" else t.chunk_events(data)
    sdk = await sdk_run(chunks)
    assert sdk.error is None
    # pings are skipped by the parser (as the SDK skips them), so they are never "last"
    last, rec = [name for name, _ in _TOOL_EVENTS[:keep] if name != "ping"][-1], Recorder()
    message = f"stream ended without message_stop, after {last}"
    with pytest.raises(pipeline.IncompleteStreamError, match=exact(message)) as info:
        await consume(chunks, rec)
    assert info.value.last_event == last
    assert info.value.partial_message is not None and info.value.partial_message.to_dict() == sdk.final
    assert rec.of("yielded") == rec.of("delivered") == sdk.events
    assert (await consume(chunks, allow_incomplete=True)).to_dict() == sdk.final


@pytest.mark.parametrize("allow_incomplete", [False, True])
async def test_empty_stream_is_incomplete(allow_incomplete: bool) -> None:
    message = "stream ended without message_stop, before any event"
    with pytest.raises(pipeline.IncompleteStreamError, match=exact(message)) as info:
        await consume([], allow_incomplete=allow_incomplete)
    assert info.value.partial_message is None and info.value.last_event is None


# --- unknown types pass through ---------------------------------------------------------------

_UNKNOWN = body(("mystery", {"type": "mystery", "a": 1}), ("ping", t.PING), START,
                block(0, {"type": "hologram", "depth": 3}), delta(0, {"type": "hologram_delta", "layer": [1]}), end(0),
                block(1, TEXT), delta(1, {"type": "sparkle_delta", "x": None}), delta(1, "ok"), end(1),
                block(2, TOOL), delta(2, {"type": "future_delta"}), json_piece(2, "{}"), end(2),
                ("mystery", {"type": "mystery", "b": 2}), DELTA, STOP, ("afterword", {"type": "afterword"}))


@pytest.mark.parametrize("chunker", [t.chunk_whole, t.chunk_events, t.chunk_bytes], ids=["whole", "events", "bytes"])
async def test_unknown_types_pass_through_like_the_sdk(chunker: Any) -> None:
    """Unknown event, block and delta types never raise, even before message_start or after message_stop."""
    chunks = chunker(_UNKNOWN)
    sdk = await sdk_run(chunks)
    rec = Recorder()
    message = await consume(chunks, rec)
    assert rec.of("yielded") == rec.of("delivered") == sdk.events
    assert message.to_dict() == sdk.final
    assert isinstance(message.content[0], pipeline.UnknownBlock)
    types = [e["type"] for e in sdk.events]
    assert (types[0], types[-1], types.count("mystery"), types.count("content_block_delta")) == (
        "mystery", "afterword", 2, 5)


# --- SubscriberError and StageError ---------------------------------------------------------


async def test_subscriber_error() -> None:
    """Every event before the failing callback was delivered; earlier chunks were yielded."""
    texts: list[str] = []

    class Fussy:
        def on_text(self, event: pipeline.TextEvent) -> None:
            texts.append(event.text)
            if event.text == "lo":
                raise ValueError("no 'lo' please")

    rec, message = Recorder(), "subscriber 'Fussy' failed: ValueError: no 'lo' please"
    with pytest.raises(pipeline.SubscriberError, match=exact(message)) as info:
        await consume(t.chunk_events(body(*HELLO, end(0), DELTA, STOP)), rec, subscribers=[Fussy()])
    assert info.value.name == "Fussy" and isinstance(info.value.__cause__, ValueError)
    assert texts == ["Hel", "lo"]
    delivered, yielded = rec.of("delivered"), rec.of("yielded")
    assert [e["type"] for e in delivered] == [*HELLO_TYPES, "content_block_delta", "text"]
    assert yielded == delivered[: len(yielded)] and len(yielded) >= 4  # at least all of the earlier chunks


async def test_stage_error() -> None:
    """What the chain produced before the failing item is yielded and delivered first."""
    def no_lo(event: pipeline.DerivedEvent) -> pipeline.DerivedEvent:
        if event.type == "content_block_delta" and event.to_dict()["delta"].get("text") == "lo":
            raise RuntimeError("no 'lo'")
        return event

    rec = Recorder()
    with pytest.raises(pipeline.StageError, match=exact("stage 'no_lo' failed: RuntimeError: no 'lo'")) as info:
        await consume(t.chunk_events(body(*HELLO, end(0), DELTA, STOP)), rec, stages=[pipeline.Map(no_lo)])
    assert info.value.name == "no_lo" and isinstance(info.value.__cause__, RuntimeError)
    assert [e["type"] for e in rec.of("yielded")] == HELLO_TYPES
    assert rec.of("yielded") == rec.of("delivered")


@pytest.mark.parametrize("failure", ["decode", "stage", "subscriber"])
async def test_every_error_after_message_start_carries_the_partial_message(failure: str) -> None:
    def boom(event: Any) -> Any:
        if getattr(event, "text", None) == "lo":
            raise RuntimeError("boom")
        return event

    bad = b"event: message_delta\ndata: {\n\n" if failure == "decode" else b""
    options: dict[str, Any] = {"stages": [pipeline.Map(boom)]} if failure == "stage" else {}
    with pytest.raises(pipeline.PipelineError) as info:
        async with pipeline.open_stream(t.aiter_chunks(t.chunk_events(body(*HELLO, end(0)) + bad)), **options) as s:
            if failure == "subscriber":
                s.on_text(boom)
            await s.get_final_message()
    assert info.value.partial_message is not None and info.value.partial_message.text.startswith("Hel")


@pytest.mark.parametrize("data", [b'{"type":"message_start","message":{"id":"\xff"}}',
                                  b'{"type":"message_start","message":{"\xff":1}}',
                                  b'{"type":"message_st\xffrt","message":{}}'], ids=["value", "key", "type"])
async def test_invalid_utf8_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(pipeline.DecodeError) as info:
        await consume([b"event: message_start\ndata: " + data + b"\n\n"])
    assert info.value.event == "message_start"


# --- mutated bodies (hypothesis) -------------------------------------------------------------

FUZZ_BODIES = {name: t.all_cases()[name].body() for name in ("mixed", "thinking", "server_tool", "unknown_event")}
BUILT_IN_ERRORS = (pipeline.DecodeError, pipeline.ProtocolError, pipeline.ToolInputError,
                   pipeline.IncompleteStreamError, pipeline.APIError)
_EDITS = st.lists(st.tuples(st.sampled_from(["flip", "insert", "delete"]), st.integers(0, 10**6),
                            st.integers(0, 255)), min_size=1, max_size=4)
_CHARS = '{}[]":,\\ \n\r0aé🚀\u2028'


def _edit(data: bytes, edits: list[tuple[str, int, int]], as_text: bool) -> bytes:
    """Apply the edits to the bytes, or to the characters (the result is then valid UTF-8)."""
    seq: Any = list(data.decode()) if as_text else bytearray(data)
    for op, where, value in edits:
        pos = where % len(seq)
        if op == "delete":
            del seq[pos]
        elif op == "insert":
            seq.insert(pos, _CHARS[value % len(_CHARS)] if as_text else value)
        elif not as_text:
            seq[pos] ^= 1 << value % 8
        else:
            flipped = ord(seq[pos]) ^ 1 << value % 7
            seq[pos] = "?" if 0xD800 <= flipped <= 0xDFFF else chr(flipped)
    return "".join(seq).encode() if as_text else bytes(seq)


@settings(max_examples=200, deadline=None, database=None)
@given(name=st.sampled_from(sorted(FUZZ_BODIES)), edits=_EDITS, cuts=st.lists(st.integers(1, 10**6), max_size=30),
       as_text=st.booleans(), allow_incomplete=st.booleans())
async def test_mutated_bodies_raise_only_pipeline_errors(
    name: str, edits: list[tuple[str, int, int]], cuts: list[int], as_text: bool, allow_incomplete: bool
) -> None:
    """Edited bytes: success or a PipelineError, never a bare exception; edited characters (valid
    UTF-8): success or one of the built-in stages' own typed errors."""
    data = _edit(FUZZ_BODIES[name], edits, as_text)
    bounds = [0, *sorted({c * len(data) // 10**6 for c in cuts} - {0}), len(data)]
    chunks = [data[a:b] for a, b in pairwise(bounds)]
    allowed = BUILT_IN_ERRORS if as_text else (pipeline.PipelineError,)
    try:
        async with pipeline.open_stream(t.aiter_chunks(chunks), allow_incomplete=allow_incomplete) as stream:
            async for _ in stream:
                pass
            (await stream.get_final_message()).to_dict()
    except allowed:
        pass
