"""The Anthropic parser's fast reading of the usual two-line events gives what the SSE rules
give: each body is parsed by ``AnthropicParser.process_into`` (split at blank lines, the
`event:` + `data:` pair read directly) and, as the oracle, by ``SSEDecoder.process`` frames
and ``decode_frame`` one by one."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.sse import SSEDecoder
from pipeline.errors import DecodeError
from pipeline.providers.anthropic import AnthropicParser, decode_frame

DELTA = b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}'
STOP = b'{"type":"message_stop"}'
ERROR = b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'

TEXTS = [
    b"event: content_block_delta\ndata: " + DELTA,
    b"event: content_block_delta\ndata:  " + DELTA,  # a second space belongs to the data
    b"event:content_block_delta\ndata: " + DELTA,  # no space after the colon: same name
    b"event: content_block_delta\ndata:" + DELTA,
    b"event: content_block_delta",  # a name and no data
    b"event: content_block_delta\ndata: ",  # empty data: skipped
    b"event: content_block_delta\ndata:  ",  # blank data: not JSON
    b"event: content_block_delta\ndata: " + DELTA + b"\nid: 7",
    b"id: 7\nevent: content_block_delta\ndata: " + DELTA,
    b": a comment\nevent: content_block_delta\ndata: " + DELTA,
    b"event: content_block_delta\ndata: " + DELTA[:40] + b"\ndata: " + DELTA[40:],
    b"data: " + DELTA,  # no name: skipped
    b"event: message_stop\ndata: " + STOP,
    b"event: message_stop\ndata: " + DELTA,  # decoded by its data's type, as the SDK does
    b"event: ping\ndata: not json at all",
    b"event: error",
    b"event: error\ndata: " + ERROR,
    b"event: error\ndata: not json",
    b'event: brand_new\ndata: {"type":"brand_new","x":1}',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"new_delta"}}',
    b"event: content_block_delta\ndata: {not json",
    b"event: content_block_delta\ndata: " + DELTA + b" " + DELTA,
    b"event: message_stop\ndata: " + STOP + b"\ndata: " + STOP,
]


def _fast(body: bytes) -> list[Any]:
    out: list[Any] = []
    AnthropicParser().process_into([body], out)
    return out


def _by_frames(body: bytes) -> list[Any]:
    frames = SSEDecoder(dispatch_named_empty=True).process(body)
    return [event for event in map(decode_frame, frames) if event is not None]


def _outcome(parse: Any, body: bytes) -> Any:
    try:
        return parse(body)
    except DecodeError as exc:
        return ("DecodeError", exc.event, exc.data)


@pytest.mark.parametrize("text", TEXTS)
def test_each_event_alone_reads_as_the_sse_rules_say(text: bytes) -> None:
    body = text + b"\n\n"
    assert _outcome(_fast, body) == _outcome(_by_frames, body)


def test_a_bulk_chunk_of_every_kind_reads_as_the_sse_rules_say() -> None:
    readable = [t for t in TEXTS if not isinstance(_outcome(_by_frames, t + b"\n\n"), tuple)]
    body = b"\n\n".join(readable) + b"\n\n"
    expected = _by_frames(body)
    assert len(expected) > 10
    assert _fast(body) == expected


_LINES = st.sampled_from(
    [
        b"event: content_block_delta",
        b"event: message_stop",
        b"event: error",
        b"event: ping",
        b"event:content_block_delta",
        b"data: " + DELTA,
        b"data: " + STOP,
        b"data: ",
        b"data:",
        b"data: {",
        b"id: 1",
        b": c",
        b"retry: 5",
    ]
)


@given(st.lists(st.lists(_LINES, min_size=1, max_size=4), min_size=1, max_size=6))
def test_any_events_of_these_lines_read_as_the_sse_rules_say(events: list[list[bytes]]) -> None:
    body = b"".join(b"\n".join(lines) + b"\n\n" for lines in events)
    assert _outcome(_fast, body) == _outcome(_by_frames, body)
