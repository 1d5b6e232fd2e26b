"""The ``accumulate`` stage: raw events -> the message snapshot (sync fold, sans-IO).

The fold follows the official SDK's ``accumulate_event`` exactly on well-formed streams:
text, thinking and tool-input pieces are appended to per-block lists (never re-joined per
delta); a tool block's input JSON is parsed once, with jiter, when the block stops; a
``message_delta`` overwrites stop fields and cumulative usage as the SDK does. Every raw
event passes through, except that the wire ``content_block_stop`` and ``message_stop`` are
replaced by :class:`~pipeline.core.events.ContentBlockStopEvent` (with the finished block) and
:class:`~pipeline.core.events.MessageStopEvent` (with the final message).

Where the SDK is silent on a broken stream we raise a typed error, always with the partial
message: an event before ``message_start``, a delta for a block that does not exist or has
stopped, invalid tool input JSON, an ``event: error``, and (at the end) a stream without
``message_stop``.
"""

from __future__ import annotations

from typing import Any, Final, final

from ..errors import IncompleteStreamError, LimitExceededError, ProtocolError, ToolInputError, api_stream_error
from .blocks import TEXT, THINKING, TOOL, Block
from .events import (
    CitationsDelta,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    ErrorEvent,
    InputJSONDelta,
    MessageDeltaEvent,
    MessageStartEvent,
    MessageStopEvent,
    PingEvent,
    RawContentBlockStopEvent,
    RawMessageStopEvent,
    SignatureDelta,
    TextDelta,
    ThinkingDelta,
    UnknownEvent,
)
from .limits import DEFAULT_LIMITS, Limits
from .message import ContentBlock, Message, copy_json

__all__ = ["Accumulator"]

# message_delta usage fields that overwrite the snapshot's only when present (cumulative)
_USAGE_IF_SET: Final = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "server_tool_use",
    "output_tokens_details",
)


@final
class Accumulator:
    """The ``accumulate`` stage's logic: folds raw events into a :class:`Message`.

    Args:
        allow_incomplete: At the end of input without ``message_stop``, finish with the
            partial message (as the SDK does) instead of raising
            :class:`~pipeline.errors.IncompleteStreamError`.
        limits: Its ``max_blocks`` and ``max_tool_input_chars`` apply here.
    """

    __slots__ = ("_allow_incomplete", "_message", "_blocks", "_final", "last", "max_blocks", "max_tool_input")

    name = "accumulate"

    def __init__(self, *, allow_incomplete: bool = False, limits: Limits = DEFAULT_LIMITS) -> None:
        self._allow_incomplete = allow_incomplete
        self.max_blocks = limits.max_blocks
        self.max_tool_input = limits.max_tool_input_chars
        self._message: dict[str, Any] | None = None
        self._blocks: list[Block] = []
        self._final: Message | None = None
        # the last raw event folded, named by IncompleteStreamError; a chain that folds an
        # event without process_into (the fused one) records it here itself
        self.last: Any = None

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
                        if block.kind == TEXT:
                            block.pieces.add(delta.text)
                    elif dkind is InputJSONDelta:
                        if block.kind == TOOL and block.pieces.add(delta.partial_json) > self.max_tool_input:
                            raise self.tool_input_too_large(index)
                    elif dkind is ThinkingDelta:
                        if block.kind == THINKING:
                            block.pieces.add(delta.thinking)
                    elif dkind is CitationsDelta:
                        if block.kind == TEXT:
                            block.citations().add(delta.citation)
                    elif dkind is SignatureDelta:
                        if block.kind == THINKING:
                            block.signature = delta.signature
                    append(event)
                else:
                    self._bad_delta(event)
            else:
                self._other(event, append)
        if events:
            self.last = events[-1]

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
            self._blocks.extend(Block(i, b) for i, b in enumerate(content) if isinstance(b, dict))
            if len(self._blocks) > self.max_blocks:
                raise self._too_many_blocks()

    def start_block(self, event: ContentBlockStartEvent) -> Block:
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
        block = Block(index, event.content_block)
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
        if block.kind == TOOL and block.pieces.size > self.max_tool_input:
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
                last = self.last
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
