"""Lazy snapshot stores, sans-IO: the growing text of a block (:class:`Pieces`) and its
citations (:class:`Citations`).

A derived event keeps a reference to its block's store and the size after its own delta;
its ``snapshot`` is computed from the store only when read, so not reading snapshots costs
nothing and a stream's cost stays linear in its bytes.
"""

from __future__ import annotations

from typing import Any, Final, final

import jiter

__all__ = ["GROUP", "Citations", "Pieces"]


GROUP: Final = 16  # pieces joined into one string at a time


@final
class Pieces:
    """The text of one block (text, thinking or tool-input JSON) as it grows.

    Pieces are appended as they arrive; every 16 of them are joined and kept as UTF-8
    bytes, so a block costs about its UTF-8 size in memory (not an object per delta, nor
    four bytes per character), and each piece is copied a bounded number of times. A
    derived event keeps the store and ``end``, the length of the text after its own delta;
    its snapshot is ``whole()[:end]``, computed only when read. The accumulator and the
    deriver share one store when they are fused (the default).
    """

    __slots__ = ("_text", "groups", "tail", "size", "start_size", "_parsed")

    def __init__(self, start: str = "") -> None:
        self._text = start  # the decoded text of the first len(_text) code points
        self.groups: list[bytes] = []  # then these, encoded (surrogatepass: lossless)
        self.tail: list[str] = []  # then these pieces, not yet joined
        self.size = self.start_size = len(start)  # in code points, as str slicing counts
        self._parsed: tuple[int, Any] = (-1, None)  # the last partial JSON parse (end, value)

    def add(self, piece: str) -> int:
        """Append *piece*; return the new size (the ``end`` of its derived event)."""
        tail = self.tail
        tail.append(piece)
        self.size += len(piece)
        if len(tail) >= GROUP:
            self.compact()
        return self.size

    def compact(self) -> None:
        """Join the pending pieces into one encoded group."""
        if self.tail:
            self.groups.append("".join(self.tail).encode("utf-8", "surrogatepass"))
            self.tail.clear()

    def whole(self) -> str:
        """Return the whole text so far (kept, so the next call is free)."""
        if len(self._text) != self.size:
            groups, tail = self.groups, self.tail
            if groups:
                self._text += b"".join(groups).decode("utf-8", "surrogatepass")
                groups.clear()
            if tail:  # joined as they are: no round trip through UTF-8
                self._text += "".join(tail)
                tail.clear()
        return self._text

    def whole_bytes(self) -> bytes:
        """Return the whole text so far as UTF-8 (for a JSON parser)."""
        self.compact()
        if self._text:
            return self._text.encode("utf-8", "surrogatepass") + b"".join(self.groups)
        if len(self.groups) > 1:
            self.groups[:] = [b"".join(self.groups)]
        return self.groups[0] if self.groups else b""

    def upto(self, end: int) -> str:
        """Return the text as it was when its size was *end*."""
        whole = self.whole()
        return whole if end == len(whole) else whole[:end]

    def parsed(self, end: int, start: Any) -> Any:
        """Return the JSON text up to *end* parsed in jiter's partial mode (as the SDK does),
        or *start* when there is no JSON text yet.

        Best effort: a prefix that cannot be parsed (malformed JSON, or a leading space)
        gives the last value that could be, never an error. Invalid input fails the stream
        at its ``content_block_stop`` with :class:`~pipeline.errors.ToolInputError`.
        """
        if self._parsed[0] != end:
            raw = self.whole_bytes() if end == self.size else self.upto(end).encode("utf-8", "surrogatepass")
            value = start
            if raw:
                try:
                    value = jiter.from_json(raw, partial_mode=True, cache_mode="keys")
                except ValueError:
                    good_end, good = self._parsed
                    value = good if 0 <= good_end < end else start
            self._parsed = (end, value)
        return self._parsed[1]


@final
class Citations:
    """The citations of one text block as a deriver saw them."""

    __slots__ = ("start", "items")

    def __init__(self, start: Any) -> None:
        # most blocks never get a citation: no list until the first one
        self.start: list[Any] | tuple[()] = start if isinstance(start, list) else ()
        self.items: list[Any] | tuple[()] = ()

    def add(self, citation: Any) -> int:
        """Append *citation*; return how many citation deltas the block has had."""
        items = self.items
        if isinstance(items, list):
            items.append(citation)
            return len(items)
        self.items = [citation]
        return 1

    def upto(self, n: int) -> list[Any]:
        """The block's citations after its first *n* citation deltas (the SDK replaces an
        empty start list with the first citation, then appends)."""
        return [*self.start, *self.items[:n]]
