"""Server-sent-event framing: bytes in, :class:`SSEFrame` out (sans-IO).

The decoder follows the WHATWG event-stream interpretation rules: lines end in LF, CRLF or
CR; a leading UTF-8 byte order mark is dropped; lines starting with ``:`` are comments; a
field without a colon has an empty value; one space after the colon is dropped; ``data``
lines accumulate with ``\\n`` between them; ``id`` values containing NUL are ignored;
``retry`` takes only ASCII digits; a blank line dispatches the event, and an event whose data
buffer is empty is not dispatched. Input may be cut anywhere, inside a UTF-8 sequence or
between a CR and its LF.

We split on **bytes**, never on ``str``: ``str.splitlines`` would also break on U+2028 and
other separators that are legal inside JSON strings. Data stays bytes so that msgspec can
decode it without a copy; event names are decoded once and interned.
"""

from __future__ import annotations

from typing import Final, final

import msgspec

from ..errors import LimitExceededError

__all__ = ["SSEDecoder", "SSEFrame"]

_BOM: Final = b"\xef\xbb\xbf"


class SSEFrame(msgspec.Struct, frozen=True, gc=False):
    """One dispatched server-sent event.

    Attributes:
        event: The ``event`` field, or ``None`` when the event had none (WHATWG then
            calls it ``"message"``; the Anthropic API always names its events).
        data: The joined ``data`` lines, as raw UTF-8 bytes.
        id: The last event id seen on the stream so far, or ``None``.
        retry: The reconnection time in milliseconds set by the last valid ``retry``
            field so far, or ``None``.
    """

    event: str | None
    data: bytes
    id: str | None = None
    retry: int | None = None


@final
class SSEDecoder:
    """Incremental event-stream decoder.

    Feed it chunks as they arrive with :meth:`process` and call :meth:`flush` at the end of
    the stream. A partial event at the end of the stream is dropped, as the standard says.
    """

    __slots__ = (
        "_tail",
        "_skip_lf",
        "_started",
        "idle",
        "_event",
        "_data",
        "_id",
        "_retry",
        "_names",
        "_named_empty",
        "_max_size",
    )

    def __init__(self, *, dispatch_named_empty: bool = False, max_event_bytes: int = 64 * 1024 * 1024) -> None:
        """Make a decoder.

        Args:
            dispatch_named_empty: Also dispatch an event that has an ``event`` field but no
                data (with ``data=b""``), where the standard drops it. The official SDK
                does this, so that a bare ``event: error`` is not lost.
            max_event_bytes: The most bytes an unfinished line or event may hold; more is a
                :class:`~pipeline.errors.LimitExceededError` (an upstream that never ends a
                line must not take all memory). When unsure, keep the default (64 MiB).
        """
        if max_event_bytes < 1:
            raise ValueError(f"max_event_bytes must be >= 1, got {max_event_bytes}")
        self._named_empty = dispatch_named_empty
        self._max_size = max_event_bytes
        self._tail = b""  # an unterminated last line, carried to the next chunk
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
        self._started = False  # the BOM check is done
        # True when nothing is carried over (no partial line or event, BOM check done):
        # a chunk that is exactly one complete event may then be parsed on its own.
        self.idle = False
        self._event: bytes | None = None
        self._data: bytes | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._names: dict[bytes, str] = {}

    def process(self, chunk: bytes) -> list[SSEFrame]:
        """Decode *chunk* and return the events it completes, in order."""
        if not chunk:
            return []
        self.idle = False
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._tail + chunk if self._tail else chunk
        if not self._started:
            if len(buf) < 3 and _BOM.startswith(buf):
                self._tail = buf
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[3:]
        if 13 in buf:  # CR (an int: a memchr, not a substring search)
            if buf[-1:] == b"\r":
                self._skip_lf = True
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = buf.rfind(b"\n")
        if end < 0:
            self._tail = buf
            if len(buf) > self._max_size:
                self._tail = b""
                raise LimitExceededError("max_event_bytes", self._max_size, "an SSE line")
            return []
        self._tail = tail = buf[end + 1 :]
        out = self._lines(buf[:end].split(b"\n"))
        if len(tail) > self._max_size or (self._data is not None and len(self._data) > self._max_size):
            self._tail, self._data = b"", None
            raise LimitExceededError("max_event_bytes", self._max_size, "an SSE event")
        self.idle = not tail and not self._skip_lf and self._event is None and self._data is None
        return out

    def start(self, chunk: bytes) -> bool:
        """Before anything was read, do the byte order mark check for *chunk*, which the
        caller parses on its own (a one-event chunk, as :attr:`idle` allows).

        Returns:
            Whether the decoder is now :attr:`idle`: ``False`` when something was read
            already, or *chunk* starts like a BOM (:meth:`process` must drop it).
        """
        if self._started or self._tail or chunk[:1] == _BOM[:1]:
            return False
        self._started = self.idle = True
        return True

    def split_events(self, chunk: bytes) -> list[bytes] | None:
        """Fast framing of *chunk* for the usual stream (LF line endings): the text of each
        event it completes, without the blank line that ends it; give each to
        :meth:`frames_of` (or read the usual two lines directly).

        Returns:
            ``None`` when *chunk* must go through :meth:`process` instead: the stream has
            a CR, the decoder holds part of an event's lines, or the byte order mark check
            is not done. :meth:`process` and this method may be mixed freely.

        Raises:
            LimitExceededError: An unfinished event is longer than ``max_event_bytes``.
        """
        if self._event is not None or self._data is not None or self._skip_lf or 13 in chunk:  # CR
            return None
        buf = self._tail + chunk if self._tail else chunk
        if not self._started:
            if buf[:3] == _BOM[: len(buf[:3])]:  # a BOM or the start of one: process() drops it
                return None
            self._started = True
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            rest, events = buf, []
        else:
            rest, events = buf[cut + 2 :], buf[:cut].split(b"\n\n")
        # _tail may hold whole lines here: process() splits whatever it carries, in order
        self._tail = rest
        self.idle = not rest
        if len(rest) > self._max_size:
            self._tail = b""
            what = "an SSE event" if b"\n" in rest else "an SSE line"
            raise LimitExceededError("max_event_bytes", self._max_size, what)
        return events

    def frames_of(self, event: bytes) -> list[SSEFrame]:
        """Frame the text of one event returned by :meth:`split_events`."""
        lines = event.split(b"\n")
        lines.append(b"")
        return self._lines(lines)

    def flush(self) -> list[SSEFrame]:
        """End the stream.

        An event not yet dispatched by a blank line, and an unterminated last line, are
        discarded, as the standard says; the decoder is then ready for a new stream.
        """
        self._tail = b""
        self._event = self._data = None
        self._skip_lf = False
        self._started = False
        self.idle = False
        return []

    def _lines(self, lines: list[bytes]) -> list[SSEFrame]:
        out: list[SSEFrame] = []
        event, data = self._event, self._data
        for line in lines:
            if not line:
                if data is not None:
                    out.append(SSEFrame(self._name(event) if event else None, data, self._id, self._retry))
                elif event and self._named_empty:
                    out.append(SSEFrame(self._name(event), b"", self._id, self._retry))
                event = data = None
            elif line[:6] == b"data: ":  # slices: startswith parses its arguments slowly
                data = line[6:] if data is None else data + b"\n" + line[6:]
            elif line[:7] == b"event: ":
                event = line[7:]
            elif line[0] == 0x3A:  # ":" starts a comment
                continue
            else:
                name, colon, value = line.partition(b":")
                if colon and value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    data = value if data is None else data + b"\n" + value
                elif name == b"event":
                    event = value
                else:
                    self._other_field(name, value)
        self._event, self._data = event, data
        return out

    def _other_field(self, name: bytes, value: bytes) -> None:
        if name == b"id":
            if b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry":
            if value and value.isdigit():
                self._retry = int(value)
        # every other field is ignored, as the standard says

    def _name(self, raw: bytes) -> str:
        name = self._names.get(raw)
        if name is None:
            name = self._names[raw] = raw.decode("utf-8", "replace")
        return name
