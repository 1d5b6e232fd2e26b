"""Typed events: the raw events decoded from the wire, and the derived events we publish.

Raw events are msgspec Structs in a tagged union on ``type``, decoded straight from the
``data:`` bytes. Derived events mirror the official SDK's ``MessageStreamEvent`` one for
one: every raw event except ``ping``, plus ``text``, ``input_json``, ``citation``,
``thinking``, ``signature``, and the enriched ``content_block_stop`` (with the finished
block) and ``message_stop`` (with the final message). ``event.to_dict()`` equals the SDK's
``event.to_dict()`` for the same bytes.

Snapshots are lazy: a :class:`TextEvent` carries its delta and a cheap reference into the
block's pieces; ``event.snapshot`` joins them only when read (and caches the latest join).
An :class:`InputJsonEvent` parses the partial tool input (jiter ``partial_mode``) only when
``event.snapshot`` is read. Reading every snapshot costs what the SDK pays; not reading them
costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Union, get_args

import msgspec

from .message import ContentBlock, Message, with_datetimes
from .pieces import Citations, Pieces

__all__ = [
    "DERIVED_TYPES",
    "CitationEvent",
    "CitationsDelta",
    "ContentBlockDeltaEvent",
    "ContentBlockStartEvent",
    "ContentBlockStopEvent",
    "Delta",
    "DerivedEvent",
    "ErrorEvent",
    "Event",
    "InputJSONDelta",
    "InputJsonEvent",
    "MessageDeltaEvent",
    "MessageStartEvent",
    "MessageStopEvent",
    "PingEvent",
    "RawContentBlockStopEvent",
    "RawEvent",
    "RawMessageStopEvent",
    "SignatureDelta",
    "SnapshotEvent",
    "SignatureEvent",
    "TextDelta",
    "TextEvent",
    "ThinkingDelta",
    "ThinkingEvent",
    "UnknownDelta",
    "UnknownEvent",
]


# ---------------------------------------------------------------------------- deltas


class _DeltaBase(msgspec.Struct, frozen=True, gc=False, kw_only=True, tag_field="type"):
    @property
    def type(self) -> str:
        """The delta type, e.g. ``"text_delta"``."""
        return str(self.__struct_config__.tag)

    def to_dict(self) -> dict[str, Any]:
        """Return the delta as the API sent it (the SDK's ``to_dict()``)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


class TextDelta(_DeltaBase, frozen=True, tag="text_delta"):
    """A piece of a text block."""

    text: str


class InputJSONDelta(_DeltaBase, frozen=True, tag="input_json_delta"):
    """A piece of a tool_use block's input JSON, cut anywhere."""

    partial_json: str


class CitationsDelta(_DeltaBase, frozen=True, tag="citations_delta"):
    """A citation added to a text block."""

    citation: dict[str, Any]


class ThinkingDelta(_DeltaBase, frozen=True, tag="thinking_delta"):
    """A piece of a thinking block."""

    thinking: str


class SignatureDelta(_DeltaBase, frozen=True, tag="signature_delta"):
    """The signature of a thinking block."""

    signature: str


class UnknownDelta(msgspec.Struct, frozen=True, gc=False):
    """A delta of a type this version does not know; kept whole and passed through."""

    type: str
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the delta as the API sent it."""
        return dict(self.payload)


_KnownDelta = Union[TextDelta, InputJSONDelta, CitationsDelta, ThinkingDelta, SignatureDelta]
if TYPE_CHECKING:
    Delta = Union[_KnownDelta, UnknownDelta]
else:
    # msgspec decodes only the tagged deltas; an UnknownDelta is built by the provider
    # when the tag is not one of them.
    Delta = _KnownDelta

KNOWN_DELTA_TYPES: Final = frozenset(
    ("text_delta", "input_json_delta", "citations_delta", "thinking_delta", "signature_delta")
)

# ---------------------------------------------------------------------------- raw events


class Event(msgspec.Struct, frozen=True, gc=False, kw_only=True, tag_field="type"):
    """Base class of every event that flows through a pipeline."""

    @property
    def type(self) -> str:
        """The event type, as the SDK names it (``"text"``, ``"content_block_delta"``, ...)."""
        return str(self.__struct_config__.tag)

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a dict equal to the official SDK's ``to_dict()``."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


class MessageStartEvent(Event, frozen=True, tag="message_start"):
    """The first event of a message: its id, model and initial usage."""

    message: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = msgspec.to_builtins(self)
        with_datetimes(out["message"])
        return out  # type: ignore[no-any-return]


class MessageDeltaEvent(Event, frozen=True, tag="message_delta"):
    """Top-level changes to the message: stop reason and cumulative usage."""

    delta: dict[str, Any]
    usage: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        out = msgspec.to_builtins(self)
        with_datetimes(out["delta"])
        return out  # type: ignore[no-any-return]


class RawMessageStopEvent(Event, frozen=True, tag="message_stop"):
    """The wire ``message_stop`` (replaced by :class:`MessageStopEvent` when derived)."""


class ContentBlockStartEvent(Event, frozen=True, tag="content_block_start"):
    """A content block starts at ``index``."""

    index: int
    content_block: dict[str, Any]

    @property
    def block_type(self) -> str:
        """The block's ``type``, e.g. ``"text"`` or ``"tool_use"``."""
        kind = self.content_block.get("type")
        return kind if isinstance(kind, str) else ""


class ContentBlockDeltaEvent(Event, frozen=True, tag="content_block_delta"):
    """A piece of the content block at ``index``."""

    index: int
    delta: Delta

    def to_dict(self) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": self.index, "delta": self.delta.to_dict()}


class RawContentBlockStopEvent(Event, frozen=True, tag="content_block_stop"):
    """The wire ``content_block_stop`` (replaced by :class:`ContentBlockStopEvent`)."""

    index: int


class PingEvent(Event, frozen=True, tag="ping"):
    """A keep-alive. Never published as a derived event."""


class ErrorEvent(Event, frozen=True, tag="error"):
    """The API reports an error mid-stream (``event: error``)."""

    error: dict[str, Any]

    @property
    def error_type(self) -> str:
        """The API's error type, e.g. ``"overloaded_error"``."""
        kind = self.error.get("type")
        return kind if isinstance(kind, str) else "api_error"

    @property
    def message(self) -> str:
        """The API's error message."""
        msg = self.error.get("message")
        return msg if isinstance(msg, str) else ""


class UnknownEvent(msgspec.Struct, frozen=True, gc=False):
    """An event of a type this version does not know; kept whole and passed through."""

    type: str
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return the event as the API sent it."""
        return dict(self.payload)


KNOWN_EVENT_TYPES: Final = frozenset(
    (
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "ping",
        "error",
    )
)

WireEvent = Union[
    MessageStartEvent,
    MessageDeltaEvent,
    RawMessageStopEvent,
    ContentBlockStartEvent,
    ContentBlockDeltaEvent,
    RawContentBlockStopEvent,
    PingEvent,
    ErrorEvent,
]
"""The union msgspec decodes from a ``data:`` payload."""

RawEvent = Union[WireEvent, UnknownEvent]
"""What the ``parse`` stage emits."""

# ---------------------------------------------------------------------------- derived events


class SnapshotEvent(Event, frozen=True, kw_only=False):
    """A derived event with a lazy ``snapshot`` (text, input JSON, citations, thinking).

    Its ``to_dict()`` is :meth:`without_snapshot` plus the snapshot, so the SDK's shape and
    the portable one (:mod:`pipeline.core.encode`, which leaves snapshots out) are written
    once, here.
    """

    @property
    def snapshot(self) -> Any:
        """The block's state up to and including this event (computed when read)."""
        raise NotImplementedError

    def without_snapshot(self) -> dict[str, Any]:
        """Return the event as a dict without its ``snapshot``."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        out = self.without_snapshot()
        out["snapshot"] = self.snapshot
        return out


class TextEvent(SnapshotEvent, frozen=True, kw_only=False, tag="text"):
    """Text was added to a text block. ``snapshot`` is the block's text so far (lazy)."""

    text: str
    _pieces: Pieces
    _end: int

    @property
    def snapshot(self) -> str:
        """The whole text of the block up to and including this delta."""
        return self._pieces.upto(self._end)

    def without_snapshot(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}

    def __repr__(self) -> str:
        return f"TextEvent(text={self.text!r})"


class InputJsonEvent(SnapshotEvent, frozen=True, kw_only=False, tag="input_json"):
    """A piece of tool input JSON arrived. ``snapshot`` is the partial input (lazy)."""

    partial_json: str
    _pieces: Pieces
    _end: int
    _start: Any = None

    @property
    def snapshot(self) -> Any:
        """The tool input parsed so far, in jiter's partial mode (as the SDK does)."""
        return self._pieces.parsed(self._end, self._start)

    def without_snapshot(self) -> dict[str, Any]:
        return {"type": "input_json", "partial_json": self.partial_json}

    def __repr__(self) -> str:
        return f"InputJsonEvent(partial_json={self.partial_json!r})"


class CitationEvent(SnapshotEvent, frozen=True, kw_only=False, tag="citation"):
    """A citation was added to a text block. ``snapshot`` lists the block's citations."""

    citation: dict[str, Any]
    _citations: Citations
    _n: int

    @property
    def snapshot(self) -> list[Any]:
        """Every citation of the block up to and including this one."""
        return self._citations.upto(self._n)

    def without_snapshot(self) -> dict[str, Any]:
        return {"type": "citation", "citation": dict(self.citation)}

    def __repr__(self) -> str:
        return f"CitationEvent(citation={self.citation!r})"


class ThinkingEvent(SnapshotEvent, frozen=True, kw_only=False, tag="thinking"):
    """Thinking text was added. ``snapshot`` is the block's thinking so far (lazy)."""

    thinking: str
    _pieces: Pieces
    _end: int

    @property
    def snapshot(self) -> str:
        """The whole thinking text of the block up to and including this delta."""
        return self._pieces.upto(self._end)

    def without_snapshot(self) -> dict[str, Any]:
        return {"type": "thinking", "thinking": self.thinking}

    def __repr__(self) -> str:
        return f"ThinkingEvent(thinking={self.thinking!r})"


class SignatureEvent(Event, frozen=True, tag="signature"):
    """A thinking block received its signature."""

    signature: str


class ContentBlockStopEvent(Event, frozen=True, tag="content_block_stop"):
    """A content block finished; ``content_block`` is the finished block."""

    index: int
    content_block: ContentBlock

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "content_block_stop",
            "index": self.index,
            "content_block": self.content_block.to_dict(),
        }


class MessageStopEvent(Event, frozen=True, tag="message_stop"):
    """The message finished; ``message`` is the final message."""

    message: Message

    def to_dict(self) -> dict[str, Any]:
        return {"type": "message_stop", "message": self.message.to_dict()}


DerivedEvent = Union[
    MessageStartEvent,
    MessageDeltaEvent,
    MessageStopEvent,
    ContentBlockStartEvent,
    ContentBlockDeltaEvent,
    ContentBlockStopEvent,
    TextEvent,
    InputJsonEvent,
    CitationEvent,
    ThinkingEvent,
    SignatureEvent,
    PingEvent,
    UnknownEvent,
]
"""What the ``derive`` stage emits, and what subscribers and ``async for`` see."""

DERIVED_TYPES: Final[frozenset[type]] = frozenset(get_args(DerivedEvent))
"""The type of every derived event: what an ``on_event`` callback takes. One object for the
whole process: the bus hands it out as a lone ``on_event`` callback's kinds, and the fused
chain recognises it by identity (``kinds is DERIVED_TYPES``: no per-event lookup)."""
