"""The Anthropic Messages API wire format: SSE bytes -> typed raw events (sans-IO).

The common case costs one msgspec decode into the tagged :data:`~pipeline.events.WireEvent`
union per event. Only when that fails do we look closer: an unknown event or delta type
becomes :class:`~pipeline.events.UnknownEvent` / :class:`~pipeline.events.UnknownDelta`
(the API adds types often, and a new one must never break a stream); anything else is a
:class:`~pipeline.errors.DecodeError` naming the event and quoting the payload.

As in the official SDK, frames without an ``event:`` name and frames with empty data are
skipped, and an ``event: error`` always becomes an :class:`~pipeline.events.ErrorEvent`.
"""

from __future__ import annotations

from typing import Any, Final, final

import msgspec

from ..errors import DecodeError
from ..events import (
    KNOWN_DELTA_TYPES,
    KNOWN_EVENT_TYPES,
    ContentBlockDeltaEvent,
    ErrorEvent,
    RawEvent,
    UnknownDelta,
    UnknownEvent,
    WireEvent,
)
from ..sse import SSEDecoder, SSEFrame

__all__ = ["AnthropicParser", "decode_frame"]

_decode_wire: Final = msgspec.json.Decoder(WireEvent).decode
_decode_any: Final = msgspec.json.Decoder().decode


def decode_frame(frame: SSEFrame) -> RawEvent | None:
    """Decode one SSE frame into a raw event, or ``None`` for a frame the API would skip.

    Raises:
        DecodeError: The data is not JSON, or not the shape its ``type`` promises.
    """
    if frame.event is None or not frame.data:
        if frame.event == "error":
            return _error_event(frame)
        return None
    try:
        event: RawEvent = _decode_wire(frame.data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return _decode_slow(frame, exc)
    if frame.event == "error" and type(event) is not ErrorEvent:
        return _error_event(frame)
    return event


def _decode_slow(frame: SSEFrame, exc: Exception) -> RawEvent:
    try:
        payload = _decode_any(frame.data)
    except msgspec.DecodeError as bad_json:
        if frame.event == "error":
            return _error_event(frame)
        raise DecodeError(frame.event, frame.data, str(bad_json)) from bad_json
    if frame.event == "error":
        return _error_event(frame, payload)
    kind = payload.get("type") if isinstance(payload, dict) else None
    if not isinstance(kind, str):
        raise DecodeError(frame.event, frame.data, "expected an object with a string `type`") from exc
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
    raise DecodeError(frame.event, frame.data, str(exc)) from exc


def _error_event(frame: SSEFrame, payload: Any = None) -> ErrorEvent:
    # An `event: error` whose data is not the API's error shape still fails the stream.
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return ErrorEvent(error=payload["error"])
    text = frame.data.decode("utf-8", "replace")
    return ErrorEvent(error={"type": "api_error", "message": text or "error event without data"})


@final
class AnthropicParser:
    """The ``parse`` stage's logic: byte chunks in, raw events out."""

    __slots__ = ("_sse",)

    name = "parse"

    def __init__(self) -> None:
        self._sse = SSEDecoder()

    def process(self, chunk: bytes) -> list[RawEvent]:
        """Frame and decode *chunk*; return the raw events it completes."""
        out: list[RawEvent] = []
        self.process_into([chunk], out)
        return out

    def process_into(self, chunks: list[bytes], out: list[Any]) -> None:
        """Frame and decode every chunk of *chunks*, appending raw events to *out*.

        Events decoded before a failure are already in *out* when the error is raised.
        """
        sse = self._sse
        append = out.append
        for chunk in chunks:
            if sse.idle:
                # Fast path for a live stream's chunk: exactly `event: X\ndata: {...}\n\n`.
                # Same result as the decoder, which is idle: nothing is carried over.
                lines = chunk.split(b"\n")
                if (
                    len(lines) == 4
                    and not lines[2]
                    and not lines[3]
                    and lines[0].startswith(b"event: ")
                    and lines[1].startswith(b"data: ")
                    and chunk.find(b"\r") < 0
                ):
                    data = lines[1][6:]
                    if data:
                        try:
                            event = _decode_wire(data)
                        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                            event = _decode_slow(SSEFrame(lines[0][7:].decode(errors="replace"), data), exc)
                        if lines[0] == b"event: error" and type(event) is not ErrorEvent:
                            event = _error_event(SSEFrame("error", data))
                        append(event)
                    elif lines[0] == b"event: error":
                        append(_error_event(SSEFrame("error", data)))
                    continue
            for frame in sse.process(chunk):
                if frame.event is not None and frame.data:
                    try:
                        event = _decode_wire(frame.data)
                    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                        event = _decode_slow(frame, exc)
                    if frame.event == "error" and type(event) is not ErrorEvent:
                        event = _error_event(frame)
                    append(event)
                else:
                    late = decode_frame(frame)
                    if late is not None:
                        append(late)

    def flush(self) -> list[RawEvent]:
        """End of input: a partial event is dropped, as the SSE standard says."""
        self._sse.flush()
        return []
