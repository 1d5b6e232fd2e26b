"""The ``derive`` stage: raw events -> the SDK's event stream (sync, sans-IO).

After every ``content_block_delta`` we add the event the SDK adds: ``text``,
``input_json``, ``citation``, ``thinking`` or ``signature``, but only when the delta fits
the block's type, as the SDK does. ``ping`` is dropped; everything else passes through.

Each derived event holds a reference to its block's :class:`~pipeline.events.Pieces` and
the number of pieces it covers, so its ``snapshot`` is computed only if someone reads it.
The deriver keeps its own piece lists (references to the same strings, no copies), so it
is consistent with the events it saw even when a custom stage sits before it.
"""

from __future__ import annotations

from typing import Any, Final, final

from .events import (
    CitationEvent,
    CitationsDelta,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    InputJSONDelta,
    InputJsonEvent,
    PingEvent,
    Pieces,
    SignatureDelta,
    SignatureEvent,
    TextDelta,
    TextEvent,
    ThinkingDelta,
    ThinkingEvent,
)

__all__ = ["Deriver"]

from .accumulate import _KINDS, _OTHER, _TEXT, _THINKING, _TOOL
_START: Final = {_TEXT: ("text", ""), _TOOL: ("input", {}), _THINKING: ("thinking", "")}


@final
class Deriver:
    """The ``derive`` stage's logic."""

    __slots__ = ("_blocks",)

    name = "derive"

    def __init__(self) -> None:
        # index -> (block kind, pieces of its text / json / thinking, pieces of citations)
        self._blocks: dict[int, tuple[int, Pieces, Pieces]] = {}

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
                bkind, pieces, cites = block
                if dkind is TextDelta:
                    if bkind == _TEXT:
                        pieces.items.append(delta.text)
                        append(TextEvent(text=delta.text, _pieces=pieces, _n=len(pieces.items)))
                elif dkind is InputJSONDelta:
                    if bkind == _TOOL:
                        pieces.items.append(delta.partial_json)
                        append(
                            InputJsonEvent(
                                partial_json=delta.partial_json, _pieces=pieces, _n=len(pieces.items)
                            )
                        )
                elif dkind is ThinkingDelta:
                    if bkind == _THINKING:
                        pieces.items.append(delta.thinking)
                        append(ThinkingEvent(thinking=delta.thinking, _pieces=pieces, _n=len(pieces.items)))
                elif dkind is CitationsDelta:
                    if bkind == _TEXT:
                        cites.items.append(delta.citation)
                        append(CitationEvent(citation=delta.citation, _pieces=cites, _n=len(cites.items)))
                elif dkind is SignatureDelta:
                    if bkind == _THINKING:
                        append(SignatureEvent(signature=delta.signature))
            elif kind is PingEvent:
                continue
            else:
                if kind is ContentBlockStartEvent:
                    self._start(event)
                append(event)

    def _start(self, event: ContentBlockStartEvent) -> None:
        data = event.content_block
        kind = _KINDS.get(event.block_type, _OTHER)
        key, default = _START.get(kind, ("", None))
        start = data.get(key, default) if key else None
        if isinstance(default, str) and not isinstance(start, str):
            start = default
        self._blocks[event.index] = (kind, Pieces(start), Pieces(data.get("citations")))

    def flush(self) -> list[Any]:
        """Nothing is held back; forget the blocks."""
        self._blocks.clear()
        return []
