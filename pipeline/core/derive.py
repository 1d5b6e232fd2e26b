"""The ``derive`` stage: raw events -> the SDK's event stream (sync, sans-IO).

After every ``content_block_delta`` we add the event the SDK adds: ``text``,
``input_json``, ``citation``, ``thinking`` or ``signature``, but only when the delta fits
the block's type, as the SDK does. Everything else passes through (the parser already
skipped the frames named ``ping``, as the SDK does).

Each derived event holds a reference to its block's :class:`~pipeline.core.pieces.Pieces` and
the size of the text after its delta, so its ``snapshot`` is computed only if someone reads
it. On its own, the deriver keeps its own store, consistent with the events it saw even when
a custom stage sits before it; fused with the accumulator (the default), the fused chain
derives from the accumulator's blocks instead, one store for both (``pipeline/stages/fused.py``).
"""

from __future__ import annotations

from typing import Any, final

from .blocks import TEXT, THINKING, TOOL, Block, cite
from .events import (
    CitationsDelta,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    InputJSONDelta,
    InputJsonEvent,
    SignatureDelta,
    SignatureEvent,
    TextDelta,
    TextEvent,
    ThinkingDelta,
    ThinkingEvent,
)

__all__ = ["Deriver"]


@final
class Deriver:
    """The ``derive`` stage's logic."""

    __slots__ = ("_blocks",)

    name = "derive"

    def __init__(self) -> None:
        # index -> the block as this stage saw it start (its own store, apart from the
        # accumulator's: a custom stage between the two may change the events)
        self._blocks: dict[int, Block] = {}

    def process(self, event: Any) -> list[Any]:
        """Return *event* followed by the events derived from it."""
        out: list[Any] = []
        self.process_into([event], out)
        return out

    def process_into(self, events: list[Any], out: list[Any]) -> None:
        """Append each event of *events*, and what derives from it, to *out*."""
        append = out.append
        blocks = self._blocks
        for event in events:
            kind = type(event)
            if kind is ContentBlockDeltaEvent:
                append(event)
                block = blocks.get(event.index)
                if block is None:
                    continue
                delta = event.delta
                dkind = type(delta)
                bkind, pieces = block.kind, block.pieces
                if dkind is TextDelta:
                    if bkind == TEXT:
                        append(TextEvent(text=delta.text, _pieces=pieces, _end=pieces.add(delta.text)))
                elif dkind is InputJSONDelta:
                    if bkind == TOOL:
                        end = pieces.add(delta.partial_json)
                        start = block.start
                        append(InputJsonEvent(partial_json=delta.partial_json, _pieces=pieces, _end=end, _start=start))
                elif dkind is ThinkingDelta:
                    if bkind == THINKING:
                        append(ThinkingEvent(thinking=delta.thinking, _pieces=pieces, _end=pieces.add(delta.thinking)))
                elif dkind is CitationsDelta:
                    if bkind == TEXT:
                        append(cite(block, delta.citation))
                elif dkind is SignatureDelta:
                    if bkind == THINKING:
                        append(SignatureEvent(signature=delta.signature))
            else:
                if kind is ContentBlockStartEvent:
                    self._blocks[event.index] = Block(event.index, event.content_block)
                append(event)

    def flush(self) -> list[Any]:
        """Nothing is held back; forget the blocks."""
        self._blocks.clear()
        return []
