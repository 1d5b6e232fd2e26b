"""The ``accumulate`` stage: raw events -> the message snapshot (sync fold, sans-IO).

The fold follows the official SDK's ``accumulate_event`` exactly on well-formed streams:
text, thinking and tool-input pieces are appended to per-block lists (never re-joined per
delta); a tool block's input JSON is parsed once, with jiter, when the block stops; a
``message_delta`` overwrites stop fields and cumulative usage as the SDK does. Every raw
event passes through, except that the wire ``content_block_stop`` and ``message_stop`` are
replaced by :class:`~pipeline.events.ContentBlockStopEvent` (with the finished block) and
:class:`~pipeline.events.MessageStopEvent` (with the final message).

Where the SDK is silent on a broken stream we raise a typed error, always with the partial
message: an event before ``message_start``, a delta for a block that does not exist or has
stopped, invalid tool input JSON, an ``event: error``, and (at the end) a stream without
``message_stop``.
"""

from __future__ import annotations

from typing import Any, Final, final

import jiter

from ..errors import IncompleteStreamError, LimitExceededError, ProtocolError, ToolInputError, api_stream_error
from .events import (
    Citations,
    CitationsDelta,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    ErrorEvent,
    InputJSONDelta,
    MessageDeltaEvent,
    MessageStartEvent,
    MessageStopEvent,
    Pieces,
    PingEvent,
    RawContentBlockStopEvent,
    RawMessageStopEvent,
    SignatureDelta,
    TextDelta,
    ThinkingDelta,
    UnknownEvent,
)
from .limits import DEFAULT_LIMITS, Limits
from .message import ContentBlock, Message, TextBlock, ThinkingBlock, block_from_dict, copy_json

__all__ = ["Accumulator"]

_OTHER, _TEXT, _TOOL, _THINKING = 0, 1, 2, 3
_KINDS: Final = {"text": _TEXT, "tool_use": _TOOL, "server_tool_use": _TOOL, "thinking": _THINKING}
_TEXT_KEYS: Final = {_TEXT: "text", _THINKING: "thinking"}
# the delta that adds to a block's pieces, by block kind
_PIECE_DELTAS: Final[dict[int, type]] = {_TEXT: TextDelta, _THINKING: ThinkingDelta, _TOOL: InputJSONDelta}
# by block type: its kind, the delta that adds to its pieces, the key of its starting text
_SHAPES: Final[dict[str, tuple[int, type | None, str | None]]] = {
    name: (kind, _PIECE_DELTAS[kind], _TEXT_KEYS.get(kind)) for name, kind in _KINDS.items()
}
_NO_SHAPE: Final = (_OTHER, None, None)
# message_delta usage fields that overwrite the snapshot's only when present (cumulative)
_USAGE_IF_SET: Final = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "server_tool_use",
    "output_tokens_details",
)


@final
class _Block:
    """One content block as a stage saw it start: the accumulator's, which it folds into
    the message, or the deriver's own (which reads ``kind``, ``pieces``, ``start`` and
    :meth:`citations`). Fused, the two stages use the accumulator's: one store for both."""

    __slots__ = ("index", "data", "kind", "pieces", "piece", "start", "cites", "signature", "done")

    def __init__(self, index: int, data: dict[str, Any]) -> None:
        self.index = index
        self.data = data
        kind = data.get("type")
        kind, self.piece, key = _SHAPES.get(kind, _NO_SHAPE) if isinstance(kind, str) else _NO_SHAPE
        self.kind = kind
        if key is not None:  # text / thinking start from the block's own
            start = data.get(key)
            self.pieces = Pieces(start if isinstance(start, str) else "")
            self.start: Any = None
        else:  # tool input JSON starts empty; its events' snapshots start from the block's input
            self.pieces = Pieces()
            self.start = data.get("input", {}) if kind == _TOOL else None
        self.cites: Citations | None = None  # from the first citation on
        self.signature: str | None = None
        self.done: ContentBlock | None = None

    def citations(self) -> Citations:
        """The store of the block's citations (made when the first one arrives)."""
        cites = self.cites
        if cites is None:
            cites = self.cites = Citations(self.data.get("citations"))
        return cites

    def build(self, *, partial: bool) -> ContentBlock:
        """Return the block with its deltas applied (*partial*: tolerate unfinished JSON)."""
        data = dict(self.data)
        kind = self.kind
        pieces = self.pieces
        if kind == _TEXT:
            if pieces.size != pieces.start_size:
                data["text"] = pieces.whole()
            cites = self.cites
            if cites is not None:  # to_dict() copies
                data["citations"] = [*cites.start, *cites.items]
            return TextBlock(data)
        if kind == _TOOL:
            raw = pieces.whole_bytes()
            if raw:
                data["input"] = self._parse(raw, partial=partial)
        elif kind == _THINKING:
            if pieces.size != pieces.start_size:
                data["thinking"] = pieces.whole()
            if self.signature is not None:
                data["signature"] = self.signature
            return ThinkingBlock(data)
        return block_from_dict(data)

    def _parse(self, raw: bytes, *, partial: bool) -> Any:
        try:
            # jiter's string cache is process-wide (16,384 entries): keys repeat across
            # tool calls, one-off values would only push them out and hold memory
            return jiter.from_json(raw, partial_mode=partial, cache_mode="keys")
        except ValueError as exc:
            if partial:
                return self.data.get("input")
            name = self.data.get("name")
            raise ToolInputError(
                self.index, name if isinstance(name, str) else "?", raw.decode(errors="replace"), str(exc)
            ) from None


@final
class Accumulator:
    """The ``accumulate`` stage's logic: folds raw events into a :class:`Message`.

    Args:
        allow_incomplete: At the end of input without ``message_stop``, finish with the
            partial message (as the SDK does) instead of raising
            :class:`~pipeline.errors.IncompleteStreamError`.
        limits: Its ``max_blocks`` and ``max_tool_input_chars`` apply here.
    """

    __slots__ = ("_allow_incomplete", "_message", "_blocks", "_final", "_last", "max_blocks", "max_tool_input")

    name = "accumulate"

    def __init__(self, *, allow_incomplete: bool = False, limits: Limits = DEFAULT_LIMITS) -> None:
        self._allow_incomplete = allow_incomplete
        self.max_blocks = limits.max_blocks
        self.max_tool_input = limits.max_tool_input_chars
        self._message: dict[str, Any] | None = None
        self._blocks: list[_Block] = []
        self._final: Message | None = None
        self._last: Any = None  # the last event folded, for error messages

    @property
    def final_message(self) -> Message | None:
        """The final message once ``message_stop`` arrived (or the stream ended, when
        incomplete streams are allowed); ``None`` before."""
        return self._final

    def snapshot(self) -> Message | None:
        """Return the message as accumulated so far (``None`` before ``message_start``)."""
        if self._final is not None:
            return self._final
        if self._message is None:
            return None
        content = [b.done or b.build(partial=True) for b in self._blocks]
        return Message(copy_json(self._message), content)

    def process(self, event: Any) -> list[Any]:
        """Fold one raw event; return what to pass downstream."""
        out: list[Any] = []
        self.process_into([event], out)
        return out

    def process_into(self, events: list[Any], out: list[Any]) -> None:
        """Fold *events* in order, appending what passes downstream to *out*.

        Raises:
            ProtocolError, ToolInputError, APIStreamError: as described in the module
                docstring; events before the bad one are already in *out*.
        """
        append = out.append
        blocks = self._blocks
        for event in events:
            kind = type(event)
            if kind is ContentBlockDeltaEvent:
                index = event.index
                if 0 <= index < len(blocks) and blocks[index].done is None:
                    block = blocks[index]
                    delta = event.delta
                    dkind = type(delta)
                    if dkind is TextDelta:
                        if block.kind == _TEXT:
                            block.pieces.add(delta.text)
                    elif dkind is InputJSONDelta:
                        if block.kind == _TOOL and block.pieces.add(delta.partial_json) > self.max_tool_input:
                            raise self.tool_input_too_large(index)
                    elif dkind is ThinkingDelta:
                        if block.kind == _THINKING:
                            block.pieces.add(delta.thinking)
                    elif dkind is CitationsDelta:
                        if block.kind == _TEXT:
                            block.citations().add(delta.citation)
                    elif dkind is SignatureDelta:
                        if block.kind == _THINKING:
                            block.signature = delta.signature
                    append(event)
                else:
                    self._bad_delta(event)
            else:
                self._other(event, append)
        if events:
            self._last = events[-1]

    def _bad_delta(self, event: ContentBlockDeltaEvent) -> None:
        if self._message is None or self._final is not None:
            raise self._misplaced("content_block_delta")
        index = event.index
        if 0 <= index < len(self._blocks):
            raise self._protocol("content_block_delta", f"for block {index} after its content_block_stop")
        raise self._protocol("content_block_delta", f"for unknown block index {index}")

    def _other(self, event: Any, append: Any) -> None:
        kind = type(event)
        if kind is PingEvent or kind is UnknownEvent:
            append(event)
        elif kind is ErrorEvent:
            raise api_stream_error(
                event.error_type, event.message, body=event.to_dict(), partial_message=self.snapshot()
            )
        elif kind is MessageStartEvent:
            if self._message is not None:
                raise self._protocol("message_start", "after message_start")
            self._start(event)
            append(event)
        elif kind is ContentBlockStartEvent:
            self.start_block(event)
            append(event)
        elif kind is RawContentBlockStopEvent:
            append(ContentBlockStopEvent(index=event.index, content_block=self.stop_block(event.index)))
        else:
            if self._message is None or self._final is not None:
                raise self._misplaced(event.type)
            if kind is MessageDeltaEvent:
                self._delta(event)
                append(event)
            elif kind is RawMessageStopEvent:
                append(MessageStopEvent(message=self._finish()))
            else:  # a derived or user event that a custom stage put here
                append(event)

    def _start(self, event: MessageStartEvent) -> None:
        message = copy_json(event.message)
        content = message.pop("content", None)
        self._message = message
        if isinstance(content, list):  # the API sends [], but a prefilled start may not
            self._blocks.extend(_Block(i, b) for i, b in enumerate(content) if isinstance(b, dict))
            if len(self._blocks) > self.max_blocks:
                raise self._too_many_blocks()

    def start_block(self, event: ContentBlockStartEvent) -> _Block:
        """Open the block of a ``content_block_start`` (the next index of a started,
        unfinished message) and return it.

        Raises:
            ProtocolError, LimitExceededError: As the module docstring says.
        """
        if self._message is None or self._final is not None:
            raise self._misplaced("content_block_start")
        index = event.index
        if index != len(self._blocks):
            raise self._protocol("content_block_start", f"index {index}, expected {len(self._blocks)}")
        if index >= self.max_blocks:
            raise self._too_many_blocks()
        # never mutated in place (build() works on a copy; to_dict() copies deep)
        block = _Block(index, event.content_block)
        self._blocks.append(block)
        return block

    def stop_block(self, index: int) -> ContentBlock:
        """Finish block *index* at its ``content_block_stop`` and return it.

        Raises:
            ProtocolError, ToolInputError, LimitExceededError: As the module docstring says.
        """
        if self._message is None or self._final is not None:
            raise self._misplaced("content_block_stop")
        if not 0 <= index < len(self._blocks):
            raise self._protocol("content_block_stop", f"for unknown block index {index}")
        block = self._blocks[index]
        if block.done is not None:
            raise self._protocol("content_block_stop", f"for block {index} that already stopped")
        if block.kind == _TOOL and block.pieces.size > self.max_tool_input:
            raise self.tool_input_too_large(index)
        try:
            block.done = block.build(partial=False)
        except ToolInputError as exc:
            exc.partial_message = self.snapshot()
            raise
        return block.done

    def _delta(self, event: MessageDeltaEvent) -> None:
        message = self._message
        assert message is not None
        delta, usage = event.delta, event.usage
        message["stop_reason"] = delta.get("stop_reason")
        message["stop_sequence"] = delta.get("stop_sequence")
        message["stop_details"] = copy_json(delta.get("stop_details"))
        if delta.get("container") is not None:
            message["container"] = copy_json(delta["container"])
        totals = message.get("usage")
        if not isinstance(totals, dict):
            totals = message["usage"] = {}
        totals["output_tokens"] = usage.get("output_tokens")
        for key in _USAGE_IF_SET:
            value = usage.get(key)
            if value is not None:
                totals[key] = copy_json(value)

    def _finish(self) -> Message:
        assert self._message is not None
        try:
            for block in self._blocks:  # a block that never stopped ends with the message
                if block.done is None:
                    block.done = block.build(partial=False)
        except ToolInputError as exc:
            exc.partial_message = self.snapshot()
            raise
        self._final = Message(self._message, [b.done for b in self._blocks if b.done is not None])
        return self._final

    def flush(self) -> list[Any]:
        """End of input: check that the message finished.

        Raises:
            IncompleteStreamError: No ``message_stop`` arrived (unless allowed).
        """
        if self._final is None:
            if self._allow_incomplete and self._message is not None:
                self._final = self.snapshot()
            else:
                last = self._last
                raise IncompleteStreamError(self.snapshot(), None if last is None else last.type)
        return []

    def tool_input_too_large(self, index: int) -> LimitExceededError:
        """The error of tool block *index* whose input went over ``max_tool_input_chars``."""
        name = self._blocks[index].data.get("name")
        error = LimitExceededError(
            "max_tool_input_chars", self.max_tool_input, f"the input of tool {name!r} in block {index}"
        )
        error.partial_message = self.snapshot()
        return error

    def _too_many_blocks(self) -> LimitExceededError:
        error = LimitExceededError("max_blocks", self.max_blocks, "the number of content blocks")
        error.partial_message = self.snapshot()
        return error

    def _misplaced(self, event_type: str) -> ProtocolError:
        """The error of an event that needs a started, unfinished message, and came before
        ``message_start`` or after ``message_stop``."""
        if self._message is None:
            return ProtocolError(event_type, "before message_start")
        return self._protocol(event_type, "after message_stop")

    def _protocol(self, event_type: str, problem: str) -> ProtocolError:
        error = ProtocolError(event_type, problem)
        error.partial_message = self.snapshot()
        return error
