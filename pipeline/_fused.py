"""Hand-fused ``accumulate`` + ``derive`` for the hot path of the default chain.

When the two built-in stages are adjacent (the default), the island calls one loop instead
of two: the common deltas (text, thinking, tool input) are folded and derived inline, and
every other event goes through the two stages' own code, in order. The result is exactly
that of running the stages one after the other; tests/test_fused.py checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .accumulate import _TEXT, _THINKING, _TOOL, Accumulator
from .derive import Deriver
from .events import (
    ContentBlockDeltaEvent,
    InputJSONDelta,
    InputJsonEvent,
    TextDelta,
    TextEvent,
    ThinkingDelta,
    ThinkingEvent,
)

__all__ = ["fuse_accumulate_derive"]


def fuse_accumulate_derive(acc: Accumulator, der: Deriver) -> Callable[[list[Any], list[Any]], None]:
    """Return a ``process_into`` that runs *acc* then *der* over each event."""
    acc_into, der_into = acc.process_into, der.process_into
    acc_blocks, der_blocks = acc._blocks, der._blocks

    def process_into(events: list[Any], out: list[Any]) -> None:
        append = out.append
        for event in events:
            if type(event) is ContentBlockDeltaEvent:
                index = event.index
                derived = der_blocks.get(index)
                if derived is not None and 0 <= index < len(acc_blocks):
                    block = acc_blocks[index]
                    delta: Any = event.delta
                    kind = type(delta)
                    if block.done is None and block.kind == derived[0]:
                        pieces = derived[1]
                        if kind is TextDelta and block.kind == _TEXT:
                            block.parts.append(delta.text)
                            pieces.items.append(delta.text)
                            append(event)
                            append(TextEvent(text=delta.text, _pieces=pieces, _n=len(pieces.items)))
                            continue
                        if kind is InputJSONDelta and block.kind == _TOOL:
                            block.parts.append(delta.partial_json)
                            pieces.items.append(delta.partial_json)
                            append(event)
                            append(
                                InputJsonEvent(partial_json=delta.partial_json, _pieces=pieces, _n=len(pieces.items))
                            )
                            continue
                        if kind is ThinkingDelta and block.kind == _THINKING:
                            block.parts.append(delta.thinking)
                            pieces.items.append(delta.thinking)
                            append(event)
                            append(ThinkingEvent(thinking=delta.thinking, _pieces=pieces, _n=len(pieces.items)))
                            continue
            folded: list[Any] = []
            acc_into([event], folded)
            der_into(folded, out)

    return process_into
