"""The Anthropic Messages API wire format: SSE bytes -> typed raw events (sans-IO).

The common case costs one msgspec decode into the tagged :data:`~pipeline.core.events.WireEvent`
union per event. Only when that fails do we look closer: an unknown event or delta type
becomes :class:`~pipeline.core.events.UnknownEvent` / :class:`~pipeline.core.events.UnknownDelta`
(the API adds types often, and a new one must never break a stream); anything else is a
:class:`~pipeline.errors.DecodeError` naming the event and quoting the payload.

As in the official SDK, frames named ``ping``, frames without a name and frames with empty
data are skipped, an ``event: error`` always becomes an :class:`~pipeline.core.events.ErrorEvent`,
and every other frame is decoded by its data's ``type``, whatever its name.
"""

from __future__ import annotations

from typing import Any, Final, final

import msgspec

from ..core.events import (
    KNOWN_DELTA_TYPES,
    KNOWN_EVENT_TYPES,
    ContentBlockDeltaEvent,
    ErrorEvent,
    RawEvent,
    UnknownDelta,
    UnknownEvent,
    WireEvent,
)
from ..core.sse import SSEDecoder, SSEFrame
from ..errors import DecodeError

__all__ = ["AnthropicParser", "decode_data", "decode_frame", "decode_pair", "error_event"]

decode_wire: Final = msgspec.json.Decoder(WireEvent).decode
_decode_any: Final = msgspec.json.Decoder().decode


BAD_DATA: Final = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)
_DELTA_NAME: Final = b"event: content_block_delta"


def decode_frame(frame: SSEFrame) -> RawEvent | None:
    """Decode one SSE frame into a raw event, or ``None`` for a frame the SDK would skip.

    Like the SDK: a frame named ``ping`` or without a name is skipped whatever its data, an
    ``event: error`` always becomes an :class:`~pipeline.core.events.ErrorEvent` (even without
    data), a frame with empty data is skipped, and any other frame is decoded by its data's
    ``type``, whatever its name.

    Raises:
        DecodeError: The data is not UTF-8 JSON, or not the shape its ``type`` promises.
    """
    name = frame.event
    if name is None or name == "ping":
        return None
    if name == "error":
        return error_event(frame.data)
    if not frame.data:
        return None
    return decode_data(name, frame.data)


def decode_data(name: str, data: bytes) -> RawEvent:
    """Decode the non-empty *data* of an event named *name* (not ``ping`` or ``error``)."""
    try:
        event: RawEvent = decode_wire(data)
    except BAD_DATA as exc:
        return _decode_slow(name, data, exc)
    return event


def _decode_slow(name: str, data: bytes, exc: Exception) -> RawEvent:
    try:
        payload = _decode_any(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as bad_json:
        raise DecodeError(name, data, str(bad_json)) from bad_json
    kind = payload.get("type") if isinstance(payload, dict) else None
    if not isinstance(kind, str):
        raise DecodeError(name, data, "expected an object with a string `type`") from exc
    if kind not in KNOWN_EVENT_TYPES:
        return UnknownEvent(kind, payload)
    delta = payload.get("delta")
    index = payload.get("index")
    if (
        kind == "content_block_delta"
        and type(index) is int
        and isinstance(delta, dict)
        and isinstance(delta.get("type"), str)
        and delta["type"] not in KNOWN_DELTA_TYPES
    ):
        return ContentBlockDeltaEvent(index=index, delta=UnknownDelta(delta["type"], delta))
    raise DecodeError(name, data, str(exc)) from exc


def decode_pair(name: bytes, data: bytes) -> RawEvent | None:
    """Decode an event of exactly two lines, ``event: X`` (*name*, the whole line) and
    ``data: ...`` (*data*, after the field's space), by the rules of :func:`decode_frame`.

    Raises:
        DecodeError: As :func:`decode_frame`.
    """
    if name == b"event: error":
        return error_event(data)
    if name == b"event: ping" or not data:
        return None
    try:
        event: RawEvent = decode_wire(data)
    except BAD_DATA as exc:
        return _decode_slow(name[7:].decode("utf-8", "replace"), data, exc)
    return event


def error_event(data: bytes) -> ErrorEvent:
    """Build the event of an ``event: error`` frame, whatever its data: an error event that
    is not the API's error shape still fails the stream."""
    try:
        payload = _decode_any(data) if data else None
    except (msgspec.DecodeError, UnicodeDecodeError):
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return ErrorEvent(error=payload["error"])
    text = data.decode("utf-8", "replace")
    return ErrorEvent(error={"type": "api_error", "message": text or "error event without data"})


@final
class AnthropicParser:
    """The ``parse`` stage's logic: byte chunks in, raw events out."""

    __slots__ = ("sse",)

    name = "parse"

    def __init__(self, *, max_event_bytes: int = 64 * 1024 * 1024) -> None:
        # named events without data are dispatched, so that a bare `event: error` fails
        self.sse = SSEDecoder(dispatch_named_empty=True, max_event_bytes=max_event_bytes)

    def process(self, chunk: bytes) -> list[RawEvent]:
        """Frame and decode *chunk*; return the raw events it completes."""
        out: list[RawEvent] = []
        self.process_into([chunk], out)
        return out

    def process_into(self, chunks: list[bytes], out: list[Any]) -> None:
        """Frame and decode every chunk of *chunks*, appending raw events to *out*.

        Events decoded before a failure are already in *out* when the error is raised.
        """
        sse = self.sse
        append = out.append
        for chunk in chunks:
            texts = sse.split_events(chunk)
            if texts is None:
                for frame in sse.process(chunk):
                    event = decode_frame(frame)
                    if event is not None:
                        append(event)
                continue
            for text in texts:
                # The usual event, `event: X\ndata: {...}`, read directly (a live chunk is
                # one such event); anything else (comments, ids, several data lines...)
                # goes through the decoder's rules. partition and `int in bytes`, not
                # startswith and find with positions, which parse their arguments slowly;
                # and the partition cuts the data out, where each slice is a new object.
                name, _, data = text.partition(b"\ndata: ")
                if 10 not in data:  # nothing after the data line, and...
                    if name == _DELTA_NAME:  # ...most events: no other name to check
                        try:
                            append(decode_wire(data))
                            continue
                        except BAD_DATA:
                            pass  # empty or bad data: by the name's rules, below
                    if name[:7] == b"event: " and 10 not in name:  # ...one line before it
                        event = decode_pair(name, data)
                        if event is not None:
                            append(event)
                        continue
                for frame in sse.frames_of(text):
                    event = decode_frame(frame)
                    if event is not None:
                        append(event)

    def flush(self) -> list[RawEvent]:
        """End of input: a partial event is dropped, as the SSE standard says."""
        self.sse.flush()
        return []
