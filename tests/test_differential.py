"""Differential tests: our events and final message against the official SDK on the same chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import Any

import anthropic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import SdkResult, sdk_run, sdk_run_threaded

import pipeline
import pipeline.testing as t

Chunker = Callable[[bytes], list[bytes]]
PER_BYTE_MAX = 4000  # per-byte chunking only for bodies up to this size, to stay fast

CHUNKERS: dict[str, Chunker] = {
    "whole": t.chunk_whole,
    "events": t.chunk_events,
    "bytes1": t.chunk_bytes,
    "random8": lambda data: t.chunk_random(data, seed=1, max_size=8),
    "random64": lambda data: t.chunk_random(data, seed=2, max_size=64),
}


async def run_ours(chunks: list[bytes], **options: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Our event dicts (taken at yield time) and final message dict."""
    async with pipeline.open_stream(t.aiter_chunks(chunks), **options) as stream:
        events = [event.to_dict() async for event in stream]
    message = await stream.get_final_message()
    return events, message.to_dict()


_SDK_RESULTS: dict[tuple[bytes, ...], SdkResult] = {}  # the SDK's answer does not depend on our backend


async def sdk_ok(chunks: list[bytes]) -> SdkResult:
    """The SDK's successful result for these exact chunks (computed once per chunking)."""
    key = tuple(chunks)
    if key not in _SDK_RESULTS:
        _SDK_RESULTS[key] = await sdk_run(chunks)
    result = _SDK_RESULTS[key]
    assert result.error is None, repr(result.error)
    assert result.final is not None
    return result


# --- bodies ---------------------------------------------------------------------------

TOOL_ESCAPES = (
    r'{"q":"a\"b\\c\/d\n\t\r\b\f","u":"\u00e9\u65E5\ud83d\ude80\u0000\u001f",'
    r'"raw":"café 日本語 🚀 👩‍💻 ﬁ","n":[0,-0,1.5e3,-2.25E-2,12345678901234567890,true,false,null],"\u006b":{},"":[[]]}'
)
MULTIBYTE = {"city": "Zürich", "greeting": "Привет мир", "cjk": "日本語のテキスト", "emoji": "🙂🚀👩‍💻",
             "rtl": "مرحبا"}
CITE = {"type": "char_location", "cited_text": "c", "document_index": 0, "document_title": None,
        "start_char_index": 0, "end_char_index": 1}
CONTAINER = {"id": "container_01", "expires_at": "2025-06-01T12:30:00Z"}


def sb(**options: Any) -> t.StreamBuilder:
    return t.StreamBuilder(seed=7, **options)


def _typed_last(payload: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in payload.items() if k != "type"}, "type": payload["type"]}


def _edge_bodies() -> dict[str, bytes]:
    """Small bodies for the corners where we must still agree with the SDK."""
    text, tool = {"type": "text", "text": ""}, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    thinking = {"type": "thinking", "thinking": "", "signature": ""}
    delta: dict[str, dict[str, Any]] = {
        "text": {"type": "text_delta", "text": "t"}, "json": {"type": "input_json_delta", "partial_json": "{}"},
        "thinking": {"type": "thinking_delta", "thinking": "h"}, "sig": {"type": "signature_delta", "signature": "s"},
        "cite": {"type": "citations_delta", "citation": CITE}, "new": {"type": "new_delta", "x": [1, {"y": None}]},
    }
    mismatched = sb().raw_block(text, [delta[k] for k in ("sig", "thinking", "json", "text")])
    mismatched.raw_block(tool, [delta[k] for k in ("text", "cite", "thinking", "json")])
    mismatched.raw_block(thinking, [delta[k] for k in ("text", "json", "cite", "thinking", "sig")])
    typed_last = sb().text_block(["x"]).events()
    preamble = t.encode_events([("ping", dict(t.PING)), ("mystery", {"type": "mystery", "n": 1})])
    return {
        "tool_escapes": sb().tool_use_block(raw_json=TOOL_ESCAPES, piece_size=(1, 3)).build(stop_reason="tool_use"),
        "tool_multibyte": sb().tool_use_block(MULTIBYTE, piece_size=(1, 2)).build(stop_reason="tool_use"),
        "tool_empty_object": sb().tool_use_block(raw_json="{}", piece_size=(1, 1)).build(stop_reason="tool_use"),
        "tool_whitespace": sb().tool_use_block(raw_json='{ "a" :\n[ 1 ,\t2 ] } ', piece_size=(1, 2)).build(),
        "server_tool_escapes": sb().tool_use_block(raw_json=TOOL_ESCAPES, server=True, name="web_search").build(),
        "text_start_nonempty": sb().raw_block({"type": "text", "text": "Hi", "citations": [CITE]},
                                              [{"type": "text_delta", "text": " there"}, delta["cite"]]).build(),
        "citations_null": sb().raw_block({"type": "text", "text": "", "citations": None}, [delta["text"]])
        .raw_block({"type": "text", "text": "", "citations": None}, [delta["cite"], delta["text"]]).build(),
        "unknown_deltas": sb().raw_block(text, [delta["new"], delta["text"]]).raw_block(tool, [delta["new"]])
        .raw_block({"type": "mystery", "a": {"b": [1]}}, [delta["text"], delta["new"]]).build(),
        "mismatched_deltas": mismatched.build(),
        "message_delta_extras": sb(message_extra={"container": CONTAINER}).text_block(["x"]).build(
            delta_extra={"container": CONTAINER, "stop_details": {"type": "refusal", "category": "cyber"}},
            message_delta_usage={"output_tokens_details": {"reasoning_tokens": 3}, "input_tokens": None}),
        "unknown_fields": sb(message_extra={"future": {"a": 1}}, usage_extra={"service_tier": "standard",
                             "cache_creation": {"ephemeral_5m_input_tokens": 0}})
        .raw_block({"type": "text", "text": "", "future": [1]}, [delta["text"]]).build(),
        "type_key_last": t.encode_events((name, _typed_last(payload)) for name, payload in typed_last),
        "unicode_text": sb().text_block(["a\u2028b", "\u2029c\x85", "\x0b\x0c\x1c", "🙂\u200d", "\ufeff"]).build(),
        "preamble": preamble + sb().text_block(["after"]).build(),
    }


def _framings(body: bytes) -> dict[str, bytes]:
    """The same events in other legal SSE framings."""
    return {
        "framing_crlf": body.replace(b"\n", b"\r\n"),
        "framing_cr": body.replace(b"\n", b"\r"),
        "framing_no_space": body.replace(b"data: ", b"data:").replace(b"event: ", b"event:"),
        "framing_fields": body.replace(b"\n\n", b"\n: keep-alive\nid: 42\nretry: 3000\nfoo: bar\n\n"),
        "framing_multiline_data": body.replace(b',"index":', b',\ndata: "index":'),
    }


BODIES: dict[str, bytes] = {name: case.body() for name, case in t.all_cases().items()}
BODIES |= {
    "text_body": t.text_body(40, seed=1),
    "tool_body": t.tool_body(600, seed=2),
    "thinking_body": t.thinking_body(20, seed=3),
    "citations_body": t.citations_body(8, seed=4),
    "mixed_body": t.mixed_body(10, 300, seed=5),
    **_edge_bodies(),
    **_framings(t.all_cases()["server_tool"].body()),
}


def _params() -> Iterator[Any]:
    for name, body in BODIES.items():
        for chunker in CHUNKERS:
            if chunker != "bytes1" or len(body) <= PER_BYTE_MAX:
                yield pytest.param(name, chunker, id=f"{name}-{chunker}")


@pytest.mark.parametrize(("name", "chunker"), list(_params()))
async def test_events_and_final_message_match_sdk(name: str, chunker: str) -> None:
    """Same events (count, order, contents) and same final message as the SDK, for any chunking."""
    chunks = CHUNKERS[chunker](BODIES[name])
    expected = await sdk_ok(chunks)
    events, final = await run_ours(chunks)
    assert [e["type"] for e in events] == [e["type"] for e in expected.events]
    assert events == expected.events
    assert final == expected.final


def _identity(event: Any) -> Any:
    return event


P, A, D, B = pipeline.parse, pipeline.accumulate, pipeline.derive, pipeline.boundary
STAGE_CHAINS: dict[str, Callable[[], list[Any]]] = {
    "boundary_after_derive": lambda: [B(buffer=1)],
    "boundary_after_parse": lambda: [P(), B(), A(), D()],
    "boundary_before_derive": lambda: [P(), A(), B(), D()],  # accumulate and derive not fused
    "map_before_derive": lambda: [P(), A(), pipeline.Map(_identity), D()],
    "identity_map": lambda: [pipeline.Map(_identity)],
}


@pytest.mark.parametrize("chunker", ["whole", "random8"])
@pytest.mark.parametrize("chain", list(STAGE_CHAINS))
@pytest.mark.parametrize("name", ["mixed", "citations", "unknown_event", "tool_escapes"])
async def test_custom_chains_match_sdk(name: str, chain: str, chunker: str) -> None:
    """Channels between islands, unfused built-ins and pass-through user stages change nothing the user sees."""
    chunks = CHUNKERS[chunker](BODIES[name])
    expected = await sdk_ok(chunks)
    assert await run_ours(chunks, stages=STAGE_CHAINS[chain]()) == (expected.events, expected.final)


@pytest.mark.parametrize("name", ["mixed", "thinking", "server_tool"])
async def test_subscribers_and_final_message_without_iterating(name: str) -> None:
    """A sync subscriber sees the SDK's events; get_final_message() alone drives the stream."""
    chunks = t.chunk_random(BODIES[name], seed=9, max_size=32)
    expected = await sdk_ok(chunks)
    seen: list[dict[str, Any]] = []
    blocks: list[dict[str, Any]] = []

    class Recorder:
        def on_event(self, event: pipeline.DerivedEvent) -> None:
            seen.append(event.to_dict())

        def on_content_block(self, block: pipeline.ContentBlock) -> None:
            blocks.append(block.to_dict())

    async with pipeline.open_stream(t.aiter_chunks(chunks, checkpoint=True), subscribers=[Recorder()]) as stream:
        message = await stream.get_final_message()
    assert seen == expected.events
    assert message.to_dict() == expected.final
    assert blocks == message.to_dict()["content"]


@pytest.mark.parametrize("name", ["text_start_nonempty", "thinking", "citations", "mixed", "tool_escapes"])
async def test_snapshots_read_late_are_those_at_yield_time(name: str) -> None:
    """Lazy snapshots: reading an event after the stream ended gives what the SDK gave at yield time."""
    chunks = CHUNKERS["random8"](BODIES[name])
    expected = await sdk_ok(chunks)
    async with pipeline.open_stream(t.aiter_chunks(chunks)) as stream:
        events = [event async for event in stream]
    assert [event.to_dict() for event in reversed(events)] == expected.events[::-1]


# --- random chunkings (hypothesis) ------------------------------------------------------


@settings(max_examples=25, deadline=None, database=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=10**6 - 1), max_size=60))
@pytest.mark.parametrize("name", ["mixed", "tool_escapes", "citations_null"])
async def test_any_chunking_matches_sdk(name: str, cuts: list[int]) -> None:
    """Cutting the body anywhere (inside UTF-8 sequences, escapes, CRLF) never changes the result."""
    body = BODIES[name]
    bounds = [0, *sorted({cut * len(body) // 10**6 for cut in cuts} - {0}), len(body)]
    chunks = [body[a:b] for a, b in pairwise(bounds)]
    expected = await sdk_ok(chunks)
    assert await run_ours(chunks) == (expected.events, expected.final)


# --- documented deliberate differences: we assert our behaviour -------------------------

OVERLOADED = ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


def _text_events(end: bool = True) -> list[t.Event]:
    return t.StreamBuilder(seed=3, pings=False).text_block(["Hel", "lo"]).events(end=end)


async def _ours_until_error(
    chunks: list[bytes], *, dicts_upto: int | None = None, **options: Any
) -> tuple[list[dict[str, Any]], BaseException]:
    """Our event dicts up to the error (past *dicts_upto* events: only their type), and the error."""
    events: list[dict[str, Any]] = []
    with pytest.raises(pipeline.PipelineError) as info:
        async with pipeline.open_stream(t.aiter_chunks(chunks), **options) as stream:
            async for event in stream:
                full = dicts_upto is None or len(events) < dicts_upto
                events.append(event.to_dict() if full else {"type": event.type})
    return events, info.value


async def test_difference_error_event_is_typed() -> None:
    """SDK: APIStatusError with status 200. Ours: OverloadedError, same events before it."""
    chunks = t.chunk_events(t.encode_events([*_text_events()[:-3], OVERLOADED]))
    sdk = await sdk_run_threaded(chunks)
    assert isinstance(sdk.error, anthropic.APIStatusError) and sdk.error.status_code == 200
    events, error = await _ours_until_error(chunks)
    assert type(error) is pipeline.OverloadedError
    assert events == sdk.events
    assert error.partial_message is not None and error.partial_message.text == "Hello"


@pytest.mark.parametrize("keep", [1, 3, 5, 6])
async def test_difference_missing_message_stop(keep: int) -> None:
    """SDK: the partial message, silently. Ours: IncompleteStreamError, or the SDK's answer when allowed."""
    chunks = t.chunk_events(t.encode_events(_text_events(end=False)[:keep]))
    sdk = await sdk_ok(chunks)
    events, error = await _ours_until_error(chunks)
    assert type(error) is pipeline.IncompleteStreamError
    assert events == sdk.events
    assert error.partial_message is not None and error.partial_message.to_dict() == sdk.final
    assert await run_ours(chunks, allow_incomplete=True) == (sdk.events, sdk.final)


async def test_difference_event_before_message_start() -> None:
    """SDK: passes the event through. Ours: ProtocolError naming it."""
    events = _text_events()
    chunks = t.chunk_events(t.encode_events([events[1], *events]))
    sdk = await sdk_ok(chunks)
    assert sdk.events[0]["type"] == "content_block_start"
    ours, error = await _ours_until_error(chunks)
    assert ours == []
    assert type(error) is pipeline.ProtocolError and error.event == "content_block_start"


async def test_difference_delta_for_unknown_index() -> None:
    """SDK: IndexError. Ours: ProtocolError, after the same events."""
    bad = ("content_block_delta", {"type": "content_block_delta", "index": 4,
                                   "delta": {"type": "text_delta", "text": "?"}})
    events = _text_events()
    chunks = t.chunk_events(t.encode_events([*events[:3], bad, *events[3:]]))
    sdk = await sdk_run_threaded(chunks)
    assert isinstance(sdk.error, IndexError)
    ours, error = await _ours_until_error(chunks)
    assert type(error) is pipeline.ProtocolError
    assert ours == sdk.events


async def test_difference_malformed_tool_json() -> None:
    """SDK: ValueError at the bad delta. Ours: ToolInputError at content_block_stop."""
    tool = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    pieces = ['{"a', '": ', "tru", "}"]
    body = sb(pings=False).text_block(["ok"]).raw_block(tool, [{"type": "input_json_delta", "partial_json": p}
                                                               for p in pieces]).build()
    chunks = t.chunk_events(body)
    sdk = await sdk_run_threaded(chunks)
    assert isinstance(sdk.error, ValueError)
    # past the SDK's failure, the input_json snapshots cannot be computed (see test_errors)
    ours, error = await _ours_until_error(chunks, dicts_upto=len(sdk.events))
    assert type(error) is pipeline.ToolInputError and error.index == 1
    assert ours[: len(sdk.events)] == sdk.events
    # the SDK fails at the closing "}" delta; we yield it and fail at content_block_stop
    assert [e["type"] for e in ours[len(sdk.events) :]] == ["content_block_delta", "input_json"]


# --- known mismatches with the SDK (not in the table of deliberate differences) ---------------


def _one_text_block(*middle: t.Event, start: t.Event | None = None) -> bytes:
    events = sb(pings=False).text_block(["Hi"]).events()
    return t.encode_events([start or events[0], events[1], *middle, *events[2:]])


_TEXT_DELTA: dict[str, Any] = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}
_START_SURROGATE = ("message_start", {"type": "message_start", "message": {**sb().message, "id": "msg_LONE"}})


@pytest.mark.parametrize("data", [
    pytest.param(_one_text_block(("ping", _TEXT_DELTA)), id="event-name-ping-with-delta-data"),
    pytest.param(_one_text_block(("keepalive", t.PING)), id="other-event-name-with-ping-data"),
])
async def test_event_names_route_like_the_sdk(data: bytes) -> None:
    """A frame named ping is skipped whatever its data; any other is routed by its data."""
    chunks = t.chunk_events(data)
    expected = await sdk_ok(chunks)
    assert await run_ours(chunks) == (expected.events, expected.final)


@pytest.mark.parametrize("data", [
    pytest.param(_one_text_block(("content_block_delta", {**_TEXT_DELTA, "delta": {**_TEXT_DELTA["delta"], "new": 1}})),
                 id="unknown-field-in-delta"),
    pytest.param(_one_text_block(("content_block_delta", {**_TEXT_DELTA, "new": {"a": 1}})),
                 id="unknown-field-in-event"),
])
async def test_difference_unknown_fields_of_delta_events(data: bytes) -> None:
    """Documented: a new field on a delta event is not in our event dict (the typed decode
    reads only the fields it needs); every other event and the final message are equal."""
    chunks = t.chunk_events(data)
    expected = await sdk_ok(chunks)
    events, final = await run_ours(chunks)
    assert final == expected.final
    differ = [i for i, (a, b) in enumerate(zip(events, expected.events, strict=True)) if a != b]
    assert len(differ) == 1
    ours, theirs = events[differ[0]], expected.events[differ[0]]
    assert ours["type"] == "content_block_delta"
    assert {k: v for k, v in theirs.items() if k != "new"} | {
        "delta": {k: v for k, v in theirs["delta"].items() if k != "new"}
    } == ours


async def test_difference_lone_surrogate_escape() -> None:
    """Documented: a lone UTF-16 surrogate escape is not valid Unicode; we raise DecodeError."""
    data = _one_text_block(start=_START_SURROGATE).replace(b"msg_LONE", rb"msg_\ud83d")
    assert (await sdk_ok(t.chunk_events(data))).final["id"] == "msg_\ud83d"
    with pytest.raises(pipeline.DecodeError, match=r"^cannot decode message_start event: "):
        await run_ours(t.chunk_events(data))


async def test_error_event_without_data_line_fails_the_stream() -> None:
    """A bare `event: error` (no data line) fails the stream, as in the SDK."""
    data = _one_text_block()
    cut = data.index(b"event: message_delta")
    chunks = [data[:cut] + b"event: error\n\n" + data[cut:]]
    assert isinstance((await sdk_run_threaded(chunks)).error, anthropic.APIStatusError)
    with pytest.raises(pipeline.APIError, match=r"^api_error: error event without data$"):
        await run_ours(chunks)


def test_bodies_are_distinct_and_deterministic() -> None:
    """Every body is distinct, and rebuilding them gives the same bytes (tests are repeatable)."""
    assert len(set(BODIES.values())) == len(BODIES)
    assert _edge_bodies() == {k: v for k, v in BODIES.items() if k in _edge_bodies()}
