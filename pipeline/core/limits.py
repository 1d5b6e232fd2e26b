"""``Limits``: how much one stream may send before it is failed and closed.

A stream sits between the network and your code: an upstream that is broken or hostile
(an endless line, millions of blocks, a gigabyte of tool input) must fail its stream with a
typed :class:`~pipeline.errors.LimitExceededError`, never take all memory. The defaults are
far above anything the Messages API sends; lower them when you run many streams at once::

    limits = pipeline.Limits(max_stream_bytes=32 * 1024 * 1024)
    async with pipeline.open_stream(body, limits=limits) as stream:
        ...

The checks cost nothing per event on the hot path: sizes are compared per network chunk, per
content block start, and per 16 pieces of a tool input (and exactly at its block's stop).
"""

from __future__ import annotations

from typing import Final, final

import msgspec

__all__ = ["DEFAULT_LIMITS", "Limits"]

_MIB: Final = 1024 * 1024


@final
class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Per-stream limits; going over one fails the stream with
    :class:`~pipeline.errors.LimitExceededError` (its ``partial_message`` holds what
    arrived) and closes the source.

    Attributes:
        max_event_bytes: The most bytes one SSE line or event may hold, so that an
            upstream that never ends a line is stopped with bounded memory (64 MiB).
        max_stream_bytes: The most body bytes one stream may receive in all; this bounds
            everything a stream keeps: text, thinking, tool input, citations (256 MiB).
        max_blocks: The most content blocks in one message (10,000).
        max_tool_input_chars: The most characters of one tool block's input JSON, checked
            every 16 pieces while it streams and exactly when the block stops (64 Mi).
    """

    max_event_bytes: int = 64 * _MIB
    max_stream_bytes: int = 256 * _MIB
    max_blocks: int = 10_000
    max_tool_input_chars: int = 64 * _MIB

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be an int >= 1, got {value!r}")


DEFAULT_LIMITS: Final = Limits()
