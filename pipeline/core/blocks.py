"""Content blocks as the fold sees them, sans-IO: :class:`Block` (the growing state of one
block), the block kinds, and :func:`cite`, the one way a citation delta becomes an event.

The accumulator keeps one :class:`Block` per content block; the deriver keeps its own when
it runs apart; fused (the default), the chain derives from the accumulator's blocks.
"""

from __future__ import annotations

from typing import Any, Final, final

import jiter

from ..errors import ToolInputError
from .events import CitationEvent, InputJSONDelta, TextDelta, ThinkingDelta
from .message import ContentBlock, TextBlock, ThinkingBlock, block_from_dict
from .pieces import Citations, Pieces

__all__ = ["OTHER", "TEXT", "THINKING", "TOOL", "Block", "cite"]

OTHER, TEXT, TOOL, THINKING = 0, 1, 2, 3  # block kinds: other, text, tool_use, thinking
_KINDS: Final = {"text": TEXT, "tool_use": TOOL, "server_tool_use": TOOL, "thinking": THINKING}
_TEXT_KEYS: Final = {TEXT: "text", THINKING: "thinking"}
# the delta that adds to a block's pieces, by block kind
_PIECE_DELTAS: Final[dict[int, type]] = {TEXT: TextDelta, THINKING: ThinkingDelta, TOOL: InputJSONDelta}
# by block type: its kind, the delta that adds to its pieces, the key of its starting text
_SHAPES: Final[dict[str, tuple[int, type | None, str | None]]] = {
    name: (kind, _PIECE_DELTAS[kind], _TEXT_KEYS.get(kind)) for name, kind in _KINDS.items()
}
_NO_SHAPE: Final = (OTHER, None, None)

@final
class Block:
    """One content block as a stage saw it start: the accumulator's, which it folds into
    the message, or the deriver's own (which reads ``kind``, ``pieces``, ``start`` and
    :meth:`citations`). Fused, the two stages use the accumulator's: one store for both.

    Fields: ``index``; ``data``, the block as ``content_block_start`` gave it; ``kind``
    (:data:`TEXT`, :data:`TOOL`, :data:`THINKING` or :data:`OTHER`); ``piece``, the delta
    class that adds to ``pieces`` (``None`` for other kinds); ``pieces``; ``start``, a tool
    block's starting input (its events' snapshot before any JSON); ``cites`` (made by
    :meth:`citations`); ``signature``; ``done``, the finished block once it stopped.
    """

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
            self.start = data.get("input", {}) if kind == TOOL else None
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
        if kind == TEXT:
            if pieces.size != pieces.start_size:
                data["text"] = pieces.whole()
            cites = self.cites
            if cites is not None:  # to_dict() copies
                data["citations"] = [*cites.start, *cites.items]
            return TextBlock(data)
        if kind == TOOL:
            raw = pieces.whole_bytes()
            if raw:
                data["input"] = self._parse(raw, partial=partial)
        elif kind == THINKING:
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


def cite(block: Block, citation: Any) -> CitationEvent:
    """Add a citation delta's *citation* to the text *block*'s store; return its event."""
    cites = block.citations()
    return CitationEvent(citation=citation, _citations=cites, _n=cites.add(citation))
