"""``pipeline.SSEDecoder``: the WHATWG event-stream rules, whatever the chunking (sans-IO, sync)."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import SSEDecoder, SSEFrame, errors
from pipeline.testing import chunk_bytes

SIZES = [1, 2, 3, 7, 0]  # 0: the whole body as one chunk
BOM = b"\xef\xbb\xbf"


def decode(data: bytes, size: int) -> list[SSEFrame]:
    """Feed *data* in chunks of *size* bytes (0: whole), then flush."""
    decoder = SSEDecoder()
    frames: list[SSEFrame] = []
    for chunk in chunk_bytes(data, size or len(data)) if data else []:
        frames += decoder.process(chunk)
    return frames + decoder.flush()


def frame(data: bytes, event: str | None = None, id: str | None = None, retry: int | None = None) -> SSEFrame:
    return SSEFrame(event, data, id, retry)


@pytest.fixture(params=SIZES, ids=lambda size: f"size{size or 'All'}")
def size(request: pytest.FixtureRequest) -> int:
    """The chunk size of a test."""
    return int(request.param)


# --- line ends ------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_ends(eol: bytes, size: int) -> None:
    body = b"event: a\ndata: 1\n\nevent: b\ndata: 2\ndata: 3\n\n".replace(b"\n", eol)
    assert decode(body, size) == [frame(b"1", "a"), frame(b"2\n3", "b")]


def test_mixed_line_ends(size: int) -> None:
    body = b"event: a\r\ndata: 1\rdata: 2\n\r\nevent: b\rdata: 3\r\r"
    assert decode(body, size) == [frame(b"1\n2", "a"), frame(b"3", "b")]


def test_cr_at_chunk_end_and_lf_at_next_start_are_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.process(b"data: 1\r") == []
    assert decoder.process(b"\ndata: 2\r") == []
    assert decoder.process(b"\n") == []
    assert decoder.process(b"\r") == [frame(b"1\n2")]  # a CR alone ends the blank line
    assert decoder.process(b"\n") == []  # ... and this LF belongs to it: not a second line


def test_cr_at_chunk_end_then_cr_is_a_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.process(b"data: 1\r") == []
    assert decoder.process(b"\rdata: 2\r\r") == [frame(b"1"), frame(b"2")]


def test_empty_chunks_change_nothing() -> None:
    decoder = SSEDecoder()
    out = [decoder.process(chunk) for chunk in (b"", b"data: 1\r", b"", b"\n", b"", b"\n")]
    assert out == [[], [], [], [], [], [frame(b"1")]]


# --- byte order mark ------------------------------------------------------------------


def test_leading_bom_is_dropped(size: int) -> None:
    assert decode(BOM + b"event: a\ndata: 1\n\n", size) == [frame(b"1", "a")]


def test_bom_split_over_first_chunks() -> None:
    decoder = SSEDecoder()
    assert decoder.process(BOM[:1]) == []
    assert decoder.process(BOM[1:2]) == []
    assert decoder.process(BOM[2:] + b"data: 1\n\n") == [frame(b"1")]


@pytest.mark.parametrize(
    ("body", "expected"),
    [(BOM + BOM + b"data: 1\n\ndata: 2\n\n", [b"2"]), (b"data: 1\n\n" + BOM + b"data: x\n\ndata: 2\n\n", [b"1", b"2"])],
    ids=["second-bom", "bom-later"],
)
def test_bom_only_dropped_at_the_start(body: bytes, expected: list[bytes], size: int) -> None:
    """A BOM anywhere but the very start is part of a line (here: of an unknown field name)."""
    assert [f.data for f in decode(body, size)] == expected


def test_partial_bom_prefix_is_kept_when_not_a_bom() -> None:
    decoder = SSEDecoder()
    assert decoder.process(b"\xef\xbb") == []
    assert decoder.process(b"x: y\ndata: 1\n\n") == [frame(b"1")]


# --- fields ---------------------------------------------------------------------------


def test_comments_are_ignored(size: int) -> None:
    body = b": hello\ndata: 1\n:data: 2\n\n: keep-alive\n\n"
    assert decode(body, size) == [frame(b"1")]


def test_multi_line_data_is_joined_with_lf(size: int) -> None:
    body = b'data: {"a":\ndata:  1,\ndata\ndata: "b": 2}\n\n'
    assert decode(body, size) == [frame(b'{"a":\n 1,\n\n"b": 2}')]


def test_colon_space_rules(size: int) -> None:
    """One space after the colon is dropped, never more; no space is fine."""
    body = b"event:x\ndata:1\n\nevent:  y\ndata:  2\n\ndata:\n\n"
    assert decode(body, size) == [frame(b"1", "x"), frame(b" 2", " y"), frame(b"")]


def test_field_without_colon_has_empty_value(size: int) -> None:
    body = b"data\n\nevent\ndata: 1\n\n"
    assert decode(body, size) == [frame(b""), frame(b"1")]


def test_id_persists_and_nul_is_ignored(size: int) -> None:
    body = b"id: 7\ndata: a\n\ndata: b\n\nid: 8\x009\ndata: c\n\nid\ndata: d\n\n"
    assert decode(body, size) == [frame(b"a", id="7"), frame(b"b", id="7"), frame(b"c", id="7"), frame(b"d", id="")]


@pytest.mark.parametrize("bad", [b"", b"-5", b"+5", b" 5", b"5s", b"1.5", "\u0663".encode()])
def test_retry_takes_ascii_digits_only(bad: bytes, size: int) -> None:
    body = b"retry: 1500\ndata: a\n\nretry: " + bad + b"\ndata: b\n\nretry:0\ndata: c\n\n"
    assert decode(body, size) == [frame(b"a", retry=1500), frame(b"b", retry=1500), frame(b"c", retry=0)]


def test_unknown_fields_are_ignored(size: int) -> None:
    body = b"foo: bar\nDATA: x\nEvent: y\ndata: 1\nretries: 3\n\n"
    assert decode(body, size) == [frame(b"1")]


def test_event_without_data_is_not_dispatched(size: int) -> None:
    """The blank line also resets the event name, so it does not leak into the next event."""
    body = b"event: ping\n\nevent: a\nid: 1\n\ndata: 1\n\n"
    assert decode(body, size) == [frame(b"1", id="1")]


@pytest.mark.parametrize("tail", [b"data: 2", b"data: 2\n", b"event: b\ndata: 2\n", b"data: 2\r"])
def test_trailing_partial_event_is_dropped(tail: bytes, size: int) -> None:
    assert decode(b"data: 1\n\n" + tail, size) == [frame(b"1")]


def test_flush_resets_for_a_new_stream() -> None:
    """After flush, a partial event is gone and a leading BOM is dropped again."""
    decoder = SSEDecoder()
    assert decoder.process(b"event: a\ndata: 1\n\nevent: b\ndata: 2\n") == [frame(b"1", "a")]
    assert decoder.flush() == []
    assert decoder.process(BOM + b"\ndata: 4\n\n") == [frame(b"4")]


# --- bytes, not text ------------------------------------------------------------------


def test_utf8_split_across_chunks(size: int) -> None:
    data = '{"t":"café 日本語 🚀 👩‍💻"}'.encode()
    assert decode("event: naïve\ndata: ".encode() + data + b"\n\n", size) == [frame(data, "naïve")]


def test_unicode_line_separators_inside_data_do_not_split(size: int) -> None:
    """Only CR and LF end lines: U+2028, U+2029, NEL, VT, FF and FS..RS are data."""
    data = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei".encode()
    assert decode(b"data: " + data + b"\n\n", size) == [frame(data)]


# --- property -------------------------------------------------------------------------


def reference(body: bytes) -> list[SSEFrame]:
    """A direct transcription of the WHATWG event-stream interpretation (whole body only)."""
    text = body.decode()
    text = text.removeprefix("\ufeff")
    *lines, _unterminated = re.split("\r\n|\r|\n", text)
    frames, event, data, last_id, retry = [], "", "", None, None
    for line in lines:
        if not line:
            if data:
                frames.append(SSEFrame(event or None, data[:-1].encode(), last_id, retry))
            event = data = ""
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data += value + "\n"
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return frames


_FIELDS = st.sampled_from(["data", "event", "id", "retry", "foo", "", ":"])
_VALUES = st.text(st.sampled_from("ab 1é\u2028\x00:\ufeff"), max_size=4) | st.sampled_from(["12", "{}", " x"])
_LINES = st.tuples(_FIELDS, st.sampled_from(["", ":", ": "]), _VALUES, st.sampled_from(["\n", "\r\n", "\r"]))
_BODIES = st.tuples(st.booleans(), st.lists(_LINES, max_size=14), st.sampled_from(["", "\n", "data: t"])).map(
    lambda p: ("\ufeff" if p[0] else "") + "".join(f + s + v + eol for f, s, v, eol in p[1]) + p[2]
)


@settings(max_examples=200, deadline=None, database=None)
@given(text=_BODIES, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_any_chunking_gives_the_frames_of_the_whole_body(text: str, cuts: list[int]) -> None:
    """Cutting the body anywhere (inside CRLF, the BOM, a UTF-8 sequence) never changes the frames."""
    body = text.encode()
    bounds = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    decoder = SSEDecoder()
    frames = [f for a, b in pairwise(bounds) for f in decoder.process(body[a:b])]
    assert frames + decoder.flush() == decode(body, 0) == reference(body)


_LF_BODIES = st.tuples(st.booleans(), st.lists(_LINES, max_size=14), st.sampled_from(["", "\n", "data: t"])).map(
    lambda p: ("\ufeff" if p[0] else "") + "".join(f + s + v + "\n" for f, s, v, _ in p[1]) + p[2]
)


@settings(max_examples=300, deadline=None, database=None)
@given(text=_BODIES | _LF_BODIES, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
       fast=st.lists(st.booleans(), min_size=13, max_size=13))
def test_split_events_and_process_mixed_give_the_same_frames(text: str, cuts: list[int], fast: list[bool]) -> None:
    """The fast framing (split_events + frames_of), chunk by chunk mixed with process(),
    gives exactly the frames of the reference decoder."""
    body = text.encode()
    bounds = sorted({0, len(body), *(c for c in cuts if c < len(body))})
    decoder = SSEDecoder()
    frames: list[SSEFrame] = []
    for i, (a, b) in enumerate(pairwise(bounds)):
        texts = decoder.split_events(body[a:b]) if fast[i % len(fast)] else None
        if texts is None:
            frames += decoder.process(body[a:b])
        else:
            frames += [frame for event in texts for frame in decoder.frames_of(event)]
    assert frames + decoder.flush() == reference(body)


def test_split_events_declines_what_it_cannot_frame() -> None:
    decoder = SSEDecoder()
    assert decoder.split_events(b"\xef\xbb") is None  # the start of a BOM: process() decides
    assert decoder.process(b"\xef\xbb\xbfdata: 1\n") == []  # the decoder now holds a data line
    assert decoder.split_events(b"\n") is None
    assert decoder.process(b"\n") == [SSEFrame(None, b"1")]
    assert decoder.split_events(b"data: 2\r\n\r\n") is None  # CR: process()
    assert decoder.split_events(b"data: 3\n\ndata: 4\n") == [b"data: 3"] and not decoder.idle
    assert decoder.split_events(b"\n") == [b"data: 4"] and decoder.idle


def test_split_events_keeps_max_event_bytes() -> None:
    decoder = SSEDecoder(max_event_bytes=10)
    with pytest.raises(errors.LimitExceededError, match=r"^an SSE line exceeds max_event_bytes \(10\)$"):
        decoder.split_events(b"data: 0123456789")
    decoder = SSEDecoder(max_event_bytes=10)
    with pytest.raises(errors.LimitExceededError, match=r"^an SSE event exceeds max_event_bytes \(10\)$"):
        decoder.split_events(b"data: 0\ndata: 1\n")


# --- limits and options -------------------------------------------------------------------


def test_an_endless_line_is_a_limit_error_with_bounded_memory() -> None:
    """An upstream that never ends a line fails once the limit is passed, not at OOM."""
    decoder = SSEDecoder(max_event_bytes=100)
    assert decoder.process(b"data: " + b"x" * 90) == []
    with pytest.raises(errors.LimitExceededError, match=r"^an SSE line exceeds max_event_bytes \(100\)$"):
        decoder.process(b"x" * 20)


def test_an_endless_event_is_a_limit_error() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    with pytest.raises(errors.LimitExceededError, match=r"^an SSE event exceeds max_event_bytes \(100\)$"):
        for _ in range(20):
            decoder.process(b"data: 0123456789\n")


def test_max_event_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^max_event_bytes must be >= 1, got 0$"):
        SSEDecoder(max_event_bytes=0)


def test_named_events_without_data_on_request() -> None:
    """The standard drops an event without data; the SDK's decoder (and ours, asked) keeps it."""
    body = b"event: error\n\nevent: x\ndata: 1\n\n"
    assert decode(body, 0) == [frame(b"1", "x")]
    decoder = SSEDecoder(dispatch_named_empty=True)
    assert decoder.process(body) == [frame(b"", "error"), frame(b"1", "x")]
