"""Structured event log: one structlog line per chosen kind of event.

``redact_secrets`` (the framework's, re-exported here) masks API keys in any log line.

::

    log = EventLogger(stream="turn-1")                     # context bound to every line
    async with pipeline.open_stream(source, subscribers=[log]) as stream: ...

    structlog.configure(processors=[redact_secrets, ..., structlog.processors.JSONRenderer()])

:class:`EventLogger` keeps no per-stream state, so one instance may serve many streams;
bind something that tells them apart (a request or stream id) when it does. It logs what
happened, never content: block types, indexes, sizes, tool names and ids, stop reasons and
usage, not text, thinking or tool input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, final

import structlog

import pipeline
from pipeline import REDACTED, SECRET_KEYS, redact_secrets

__all__ = ["DEFAULT_KINDS", "KINDS", "REDACTED", "SECRET_KEYS", "EventLogger", "redact_secrets"]

KINDS: Final = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "error",
        "end",
    }
)
"""Every kind :class:`EventLogger` can log: derived event types plus ``error`` and ``end``."""

DEFAULT_KINDS: Final = frozenset({"content_block_start", "content_block_stop", "message_stop", "error"})
"""Block starts and stops, the message stop (with usage) and stream errors."""



@final
class EventLogger:
    """A sync subscriber that logs one structured line per event of the chosen kinds.

    Lines (``event`` name: fields):

    - ``content_block_start``: ``index``, ``block_type`` (tool blocks: ``tool_name``, ``tool_use_id``)
    - ``content_block_delta`` (debug): ``index``, ``delta_type``, ``size`` (characters)
    - ``content_block_stop``: ``index``, ``block_type``, and ``chars`` (text, thinking),
      ``citations`` (text) or ``tool_name`` / ``tool_use_id`` (tool blocks)
    - ``message_start``: ``message_id``, ``model``, ``input_tokens``
    - ``message_delta``: ``stop_reason``, ``output_tokens``
    - ``message_stop``: ``message_id``, ``model``, ``stop_reason`` and the four token counts
    - ``stream_error`` (error level): ``error_type``, ``error``, ``message_id`` if one started
    - ``stream_end`` (debug)

    Args:
        logger: A structlog logger (default: ``structlog.get_logger("pipeline.events")``,
            resolved lazily so that later ``structlog.configure`` calls apply).
        kinds: The kinds to log, from :data:`KINDS` (default :data:`DEFAULT_KINDS`).
        deltas: Also log every ``content_block_delta``, at debug level.
        level: The level of the lines that are not errors or debug lines.
        **context: Bound to every line (secret-looking keys are redacted).

    Raises:
        ValueError: An unknown kind or level.
    """

    __slots__ = ("kinds", "_log", "_emit", "_handlers")

    def __init__(
        self,
        logger: Any = None,
        *,
        kinds: Iterable[str] = DEFAULT_KINDS,
        deltas: bool = False,
        level: str = "info",
        **context: Any,
    ) -> None:
        chosen = frozenset(kinds) | ({"content_block_delta"} if deltas else frozenset())
        if unknown := chosen - KINDS:
            raise ValueError(f"unknown kinds {sorted(unknown)}; choose from {sorted(KINDS)}")
        if level not in ("debug", "info", "warning"):
            raise ValueError(f"level must be debug, info or warning, got {level!r}")
        self.kinds = chosen
        context = dict(redact_secrets(None, "", dict(context)))
        if logger is None:
            self._log: Any = structlog.get_logger("pipeline.events", **context)
        else:
            self._log = logger.bind(**context) if context else logger
        self._emit: Callable[..., Any] = getattr(self._log, level)
        table: dict[type, tuple[str, Callable[[Any], None]]] = {
            pipeline.ContentBlockStartEvent: ("content_block_start", self._block_start),
            pipeline.ContentBlockDeltaEvent: ("content_block_delta", self._block_delta),
            pipeline.ContentBlockStopEvent: ("content_block_stop", self._block_stop),
            pipeline.MessageStartEvent: ("message_start", self._message_start),
            pipeline.MessageDeltaEvent: ("message_delta", self._message_delta),
            pipeline.MessageStopEvent: ("message_stop", self._message_stop),
        }
        self._handlers = {kind: handler for kind, (name, handler) in table.items() if name in chosen}

    def on_event(self, event: Any) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def on_error(self, error: BaseException) -> None:
        if "error" in self.kinds:
            partial = getattr(error, "partial_message", None)
            extra = {"message_id": partial.id} if isinstance(partial, pipeline.Message) else {}
            self._log.error("stream_error", error_type=type(error).__name__, error=str(error), **extra)

    def on_end(self) -> None:
        if "end" in self.kinds:
            self._log.debug("stream_end")

    def _block_start(self, event: pipeline.ContentBlockStartEvent) -> None:
        block = event.content_block
        extra = {}
        if "name" in block:
            extra = {"tool_name": block.get("name"), "tool_use_id": block.get("id")}
        self._emit("content_block_start", index=event.index, block_type=event.block_type, **extra)

    def _block_delta(self, event: pipeline.ContentBlockDeltaEvent) -> None:
        delta = event.delta
        size = 0
        for field in ("text", "partial_json", "thinking", "signature"):
            piece = getattr(delta, field, None)
            if isinstance(piece, str):
                size = len(piece)
                break
        self._log.debug("content_block_delta", index=event.index, delta_type=delta.type, size=size)

    def _block_stop(self, event: pipeline.ContentBlockStopEvent) -> None:
        block = event.content_block
        extra: dict[str, Any] = {}
        if isinstance(block, pipeline.TextBlock):
            extra = {"chars": len(block.text), "citations": len(block.citations or ())}
        elif isinstance(block, pipeline.ThinkingBlock):
            extra = {"chars": len(block.thinking)}
        elif isinstance(block, (pipeline.ToolUseBlock, pipeline.ServerToolUseBlock)):
            extra = {"tool_name": block.name, "tool_use_id": block.id}
        self._emit("content_block_stop", index=event.index, block_type=block.type, **extra)

    def _message_start(self, event: pipeline.MessageStartEvent) -> None:
        message = event.message
        usage = message.get("usage")
        tokens = usage.get("input_tokens") if isinstance(usage, dict) else None
        self._emit("message_start", message_id=message.get("id"), model=message.get("model"), input_tokens=tokens)

    def _message_delta(self, event: pipeline.MessageDeltaEvent) -> None:
        self._emit(
            "message_delta",
            stop_reason=event.delta.get("stop_reason"),
            output_tokens=event.usage.get("output_tokens"),
        )

    def _message_stop(self, event: pipeline.MessageStopEvent) -> None:
        message = event.message
        usage = message.usage
        self._emit(
            "message_stop",
            message_id=message.id,
            model=message.model,
            stop_reason=message.stop_reason,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
            cache_read_input_tokens=usage.cache_read_input_tokens or 0,
        )
