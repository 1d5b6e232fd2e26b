"""The ``derive`` stage: raw events -> the SDK's event stream (sync, sans-IO).

After every ``content_block_delta`` we add the event the SDK adds: ``text``,
``input_json``, ``citation``, ``thinking`` or ``signature``, but only when the delta fits
the block's type, as the SDK does. Everything else passes through (the parser already
skipped the frames named ``ping``, as the SDK does).

Each derived event holds a reference to its block's :class:`~pipeline.events.Pieces` and
the size of the text after its delta, so its ``snapshot`` is computed only if someone reads
it. On its own, the deriver keeps its own store, consistent with the events it saw even when
a custom stage sits before it; fused with the accumulator (the default), the fused chain
derives from the accumulator's blocks instead, one store for both (``pipeline/_fused.py``).
"""

from __future__ import annotations

from typing import Any, final

from .events import (
    CitationEvent,
    Citations,
    CitationsDelta,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    InputJSONDelta,
    InputJsonEvent,
    Pieces,
    SignatureDelta,
    SignatureEvent,
    TextDelta,
    TextEvent,
    ThinkingDelta,
    ThinkingEvent,
)

__all__ = ["Deriver"]

from .accumulate import _KINDS, _OTHER, _TEXT, _TEXT_KEYS, _THINKING, _TOOL, PIECE_DELTAS


@final
class Deriver:
    """The ``derive`` stage's logic."""

    __slots__ = ("_blocks",)

    name = "derive"

    def __init__(self) -> None:
        # index -> (block kind, pieces of its text / json / thinking, its citations, start
        # input, the class of the deltas that add to its pieces or None)
        self._blocks: dict[int, tuple[int, Pieces, Citations, Any, type | None]] = {}

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
                bkind, pieces, cites, start, _ = block
                if dkind is TextDelta:
                    if bkind == _TEXT:
                        append(TextEvent(text=delta.text, _pieces=pieces, _end=pieces.add(delta.text)))
                elif dkind is InputJSONDelta:
                    if bkind == _TOOL:
                        end = pieces.add(delta.partial_json)
                        append(InputJsonEvent(partial_json=delta.partial_json, _pieces=pieces, _end=end, _start=start))
                elif dkind is ThinkingDelta:
                    if bkind == _THINKING:
                        append(ThinkingEvent(thinking=delta.thinking, _pieces=pieces, _end=pieces.add(delta.thinking)))
                elif dkind is CitationsDelta:
                    if bkind == _TEXT:
                        append(CitationEvent(citation=delta.citation, _citations=cites, _n=cites.add(delta.citation)))
                elif dkind is SignatureDelta:
                    if bkind == _THINKING:
                        append(SignatureEvent(signature=delta.signature))
            else:
                if kind is ContentBlockStartEvent:
                    self._start(event)
                append(event)

    def _start(self, event: ContentBlockStartEvent) -> None:
        data = event.content_block
        kind = _KINDS.get(event.block_type, _OTHER)
        key = _TEXT_KEYS.get(kind)
        text = data.get(key) if key else None
        pieces = Pieces(text if isinstance(text, str) else "")
        start = data.get("input", {}) if kind == _TOOL else None
        self._blocks[event.index] = (kind, pieces, Citations(data.get("citations")), start, PIECE_DELTAS.get(kind))

    def flush(self) -> list[Any]:
        """Nothing is held back; forget the blocks."""
        self._blocks.clear()
        return []
