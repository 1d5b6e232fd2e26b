"""Hand-fused ``accumulate`` + ``derive`` for the hot path of the default chain.

When the two built-in stages are adjacent (the default), the island calls one loop instead
of two, and both use one :class:`~pipeline.events.Pieces` store per block, so each piece
is stored once. The common deltas (text, thinking, tool input) are folded and derived
inline; every other event goes through the two stages' own code, in order. The result is
exactly that of running the stages one after the other; tests/test_fused.py checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from .accumulate import _TEXT, _THINKING, _TOOL, Accumulator
from .derive import Deriver
from .events import (
    GROUP,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    InputJSONDelta,
    InputJsonEvent,
    TextDelta,
    TextEvent,
    ThinkingDelta,
    ThinkingEvent,
)
from .providers.anthropic import BAD_DATA, AnthropicParser, decode_wire

__all__ = ["chunks_into", "fuse_accumulate_derive", "fuse_parse_accumulate_derive"]


def fuse_accumulate_derive(acc: Accumulator, der: Deriver) -> Callable[[list[Any], list[Any]], None]:
    """Return a ``process_into`` that runs *acc* then *der* over each event."""
    acc_into, der_into = acc.process_into, der.process_into
    acc_blocks, der_blocks = acc._blocks, der._blocks
    max_tool = acc.max_tool_input  # checked per compacted group (64 pieces) and at the block's stop

    def process_into(events: list[Any], out: list[Any]) -> None:
        append = out.append
        for event in events:
            kind = type(event)
            if kind is ContentBlockDeltaEvent:
                index = event.index
                derived = der_blocks.get(index)
                if derived is not None and 0 <= index < len(acc_blocks):
                    block = acc_blocks[index]
                    delta: Any = event.delta
                    dkind = type(delta)
                    bkind = block.kind
                    if block.done is None and bkind == derived[0]:
                        pieces = block.pieces  # shared with the deriver (see below)
                        if dkind is TextDelta and bkind == _TEXT:
                            piece = delta.text
                        elif dkind is ThinkingDelta and bkind == _THINKING:
                            piece = delta.thinking
                        elif dkind is InputJSONDelta and bkind == _TOOL:
                            piece = delta.partial_json
                        else:
                            piece = None
                        if piece is not None:
                            tail = pieces.tail  # Pieces.add, inlined
                            tail.append(piece)
                            pieces.size += len(piece)
                            if len(tail) >= GROUP:
                                pieces.compact()
                                if pieces.size > max_tool and bkind == _TOOL:
                                    raise acc.tool_input_too_large(index)
                            append(event)
                            if dkind is TextDelta:
                                append(TextEvent(piece, pieces, pieces.size))
                            elif dkind is ThinkingDelta:
                                append(ThinkingEvent(piece, pieces, pieces.size))
                            else:
                                append(InputJsonEvent(piece, pieces, pieces.size, derived[3]))
                            continue
            folded: list[Any] = []
            acc_into([event], folded)
            der_into(folded, out)
            if kind is ContentBlockStartEvent:
                der.share(event.index, acc_blocks[event.index].pieces)
        if events:
            acc._last = events[-1]  # what acc_into records, for IncompleteStreamError

    return process_into


_LIVE_DELTA: Final = b"event: content_block_delta\ndata: "
_DATA_AT: Final = len(_LIVE_DELTA)


def fuse_parse_accumulate_derive(
    parser: AnthropicParser, acc: Accumulator, der: Deriver, fold: Callable[[list[Any], list[Any]], None]
) -> Callable[[bytes, list[Any]], None]:
    """Return a ``process_chunk(chunk, out)`` that runs *parser*, *acc* and *der* over one
    byte chunk (see :func:`chunks_into` for batches).

    A live stream's typical chunk, exactly one ``content_block_delta`` event, is decoded
    and folded in one go; every other chunk goes through the parser, then the fused
    accumulate+derive (*fold*), exactly as the three stages would run apart.
    """
    parse_into, sse = parser.process_into, parser._sse
    acc_blocks, der_blocks = acc._blocks, der._blocks
    max_tool = acc.max_tool_input

    def process_chunk(chunk: bytes, out: list[Any]) -> None:
        # exactly `event: content_block_delta\ndata: {...}\n\n`, nothing carried over, no CR
        if (
            sse.idle
            and chunk.startswith(_LIVE_DELTA)
            and chunk.endswith(b"\n\n")
            and chunk.find(b"\n", _DATA_AT, -2) < 0
            and chunk.find(b"\r") < 0
        ):
            try:
                event: Any = decode_wire(chunk[_DATA_AT:-2])
            except BAD_DATA:
                event = None
            if type(event) is ContentBlockDeltaEvent:
                index = event.index
                derived = der_blocks.get(index)
                # a block the deriver knows was started through the accumulator too
                if derived is not None:
                    block = acc_blocks[index]
                    delta: Any = event.delta
                    dkind = type(delta)
                    bkind = block.kind
                    if block.done is None and bkind == derived[0]:
                        # the same fold as fuse_accumulate_derive's, inlined here too:
                        # handing the event to fold([event], out) instead measured +8%
                        # instructions per live delta (callgrind)
                        if dkind is TextDelta and bkind == _TEXT:
                            piece = delta.text
                        elif dkind is ThinkingDelta and bkind == _THINKING:
                            piece = delta.thinking
                        elif dkind is InputJSONDelta and bkind == _TOOL:
                            piece = delta.partial_json
                        else:
                            piece = None
                        if piece is not None:
                            pieces = block.pieces
                            tail = pieces.tail  # Pieces.add, inlined
                            tail.append(piece)
                            pieces.size += len(piece)
                            if len(tail) >= GROUP:
                                pieces.compact()
                                if pieces.size > max_tool and bkind == _TOOL:
                                    raise acc.tool_input_too_large(index)
                            out.append(event)
                            if dkind is TextDelta:
                                out.append(TextEvent(piece, pieces, pieces.size))
                            elif dkind is ThinkingDelta:
                                out.append(ThinkingEvent(piece, pieces, pieces.size))
                            else:
                                out.append(InputJsonEvent(piece, pieces, pieces.size, derived[3]))
                            acc._last = event
                            return
                fold([event], out)
                return
        middle: list[Any] = []
        try:
            parse_into([chunk], middle)
        except Exception:
            fold(middle, out)  # what the chunk held before the bad event
            raise
        fold(middle, out)

    return process_chunk


def chunks_into(process_chunk: Callable[[bytes, list[Any]], None]) -> Callable[[list[bytes], list[Any]], None]:
    """The ``process_into(chunks, out)`` of a ``process_chunk``: for batches of chunks."""

    def process_into(chunks: list[bytes], out: list[Any]) -> None:
        for chunk in chunks:
            process_chunk(chunk, out)

    return process_into
