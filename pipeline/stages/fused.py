"""The hand-fused hot path of the default chain: ``parse`` + ``accumulate`` + ``derive`` in
one loop (or ``accumulate`` + ``derive`` when a stage sits before them).

The planner (:mod:`pipeline.stages.plan`) puts this chain in place of the three built-in
stages when they are adjacent. The deriver's rules are applied to the accumulator's own
blocks: one :class:`~pipeline.core.pieces.Pieces` and one citation store per block, each
piece stored once. The deltas of an open block are folded and derived inline, block starts
and stops too; every other event goes through the accumulator's own code and derives
nothing. The table of open blocks holds those started by ``content_block_start`` and not
stopped (all are dropped at ``message_stop``), so finding a block there means any delta
may add to it. The result is exactly that of running the stages one after the other.

What it inlines: each copy, its original, and the tests that prove them equal (in
tests/test_fused.py unless named otherwise; a test checks that every one named here exists):

- one-event chunk framing (``_LIVE_DELTA``, ``_NAME_LINES``: one event, LF line ends,
  nothing carried over) <- ``SSEDecoder.process`` (core/sse.py) and the parser's fast path
  (providers/anthropic.py): ``test_fused_equals_unfused_on_odd_single_event_chunks``,
  ``test_fused_equals_unfused_at_the_start_of_a_stream``,
  ``test_sse_start_checks_for_a_byte_order_mark``,
  ``test_a_whole_delta_after_a_partial_event_is_not_read_alone``,
  ``test_fused_equals_unfused_with_fragments_between_whole_events``;
- a piece added to a block (in ``fold`` and on the live path) <- ``Pieces.add``
  (core/pieces.py): ``test_fused_equals_unfused`` (every case, three chunkings);
- a delta derived (text, input_json, thinking, citation, signature) <-
  ``Deriver.process_into`` (core/derive.py): ``test_fused_equals_unfused``,
  ``test_live_deltas_to_two_open_blocks``;
- the errors of a fold (unknown block, delta after stop, limits) <- ``Accumulator.process_into``:
  ``test_fused_equals_unfused_on_failure``;
- delivery to a lone callback <- ``EventBus.publish_sync`` (runtime/bus.py):
  ``test_one_delta_chunks_take_the_live_path``, and in tests/test_bus.py
  ``test_a_lone_callback_raising_on_a_live_event``.

The objects it shares, and the fields it may touch: the :class:`Accumulator`'s blocks
(through ``start_block`` / ``stop_block``), ``max_tool_input``, ``tool_input_too_large()``
and ``last`` (written: the fold records the last event there when it bypasses
``process_into``); the parser's ``process_into``, ``flush`` and its decoder ``sse`` (read:
``idle``, ``start()``); a :class:`Block`'s ``kind``, ``piece``, ``pieces``, ``start`` and
``signature``; a lone callback and its kinds as the bus declares them (``sync_single``,
``sync_kinds``). Nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any, Final, final

from ..core.accumulate import Accumulator
from ..core.blocks import TEXT, THINKING, Block, cite
from ..core.events import (
    DERIVED_TYPES,
    KNOWN_EVENT_TYPES,
    CitationsDelta,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    InputJSONDelta,
    InputJsonEvent,
    RawContentBlockStopEvent,
    RawMessageStopEvent,
    SignatureDelta,
    SignatureEvent,
    TextDelta,
    TextEvent,
    ThinkingEvent,
)
from ..core.pieces import GROUP
from ..providers.anthropic import BAD_DATA, AnthropicParser, decode_pair, decode_wire

__all__ = ["Fused", "Undelivered"]

_LIVE_DELTA: Final = b"event: content_block_delta\ndata: "
_DATA_AT: Final = len(_LIVE_DELTA)
_LF: Final = 10  # b"\n"[0]: `int in bytes` is a memchr, `bytes in bytes` a general search
_CR: Final = 13
# stands for the last live delta in the accumulator's record, of which only the type is read
_A_DELTA: Final = ContentBlockDeltaEvent(index=0, delta=TextDelta(text=""))
_NAME_LINES: Final = frozenset(b"event: " + name.encode() for name in KNOWN_EVENT_TYPES)  # the API's


class Undelivered(Exception):  # noqa: N818 -- not an error of the chain: a carrier
    """The lone callback given to :meth:`Fused.process_chunk` raised *error* on
    ``batch[index]``; the chunk itself was processed (its events are *batch*)."""

    def __init__(self, call: Callable[[Any], Any], error: Exception, batch: list[Any], index: int) -> None:
        super().__init__(call, error, batch, index)
        self.call, self.error, self.batch, self.index = call, error, batch, index


@final
class Fused:
    """The built-in ``accumulate`` and ``derive`` of one stream fused into one loop, and
    ``parse`` before them when it is given.

    One object per stream, its state in slots: closures would cost a cell per captured
    name, each a separate object to hold and for the garbage collector to walk (at
    thousands of open streams, the collector's full passes set the latency tail).
    """

    __slots__ = (
        "_acc",
        "_hot",
        "_hot_index",
        "_hot_piece",
        "_hot_pieces",
        "_idle",
        "_live_last",
        "_max_tool",
        "_open",
        "_parser",
        "_sse",
    )

    def __init__(self, acc: Accumulator, parser: AnthropicParser | None = None) -> None:
        self._acc, self._parser = acc, parser
        # the accumulator's blocks that content_block_start opened and no stop closed yet
        self._open: dict[int, Block] = {}
        self._max_tool = acc.max_tool_input  # checked per compacted group (GROUP pieces) and at the block's stop
        self._sse = parser.sse if parser is not None else None
        # What a live delta needs, kept here so that it touches this object and its
        # block's pieces only: with thousands of open streams, each is out of the caches
        # when its next event comes, and every other object it reads is a cache miss
        # (the table of open blocks, the block, the decoder, the accumulator).
        # - the open block the last live delta went to: its index (None: none; reset
        #   when that block stops), the block, its piece delta class and its Pieces
        #   (typed Any: they are read only once _hot_index is set);
        self._hot_index: int | None = None
        self._hot: Any = None
        self._hot_piece: Any = None
        self._hot_pieces: Any = None
        # - the decoder's `idle`, copied after each call that may change it;
        self._idle = False
        # - whether the last event was a live delta, which leaves the accumulator's
        #   record of the last event (for IncompleteStreamError) to flush()
        self._live_last = False

    def fold(self, events: list[Any], out: list[Any]) -> None:
        """Run the accumulator, then the deriver, over each of *events* (raw events)."""
        acc, blocks = self._acc, self._open
        for event in events:
            kind = type(event)
            if kind is ContentBlockDeltaEvent:
                index = event.index
                block = blocks.get(index)
                # an open block (started by content_block_start, not stopped), so the
                # accumulator takes any delta for it: only the deriver's rules are left
                if block is not None:
                    delta: Any = event.delta
                    dkind = type(delta)
                    if dkind is block.piece:  # the delta of the block's kind: a piece
                        pieces = block.pieces
                        if dkind is TextDelta:
                            piece = delta.text
                        elif dkind is InputJSONDelta:
                            piece = delta.partial_json
                        else:
                            piece = delta.thinking
                        tail = pieces.tail  # Pieces.add, inlined
                        tail.append(piece)
                        size = pieces.size = pieces.size + len(piece)
                        if len(tail) >= GROUP:
                            pieces.compact()
                            if size > self._max_tool and dkind is InputJSONDelta:
                                raise acc.tool_input_too_large(index)
                        if dkind is TextDelta:
                            out += (event, TextEvent(piece, pieces, size))
                        elif dkind is InputJSONDelta:
                            out += (event, InputJsonEvent(piece, pieces, size, block.start))
                        else:
                            out += (event, ThinkingEvent(piece, pieces, size))
                    elif dkind is CitationsDelta and block.kind == TEXT:
                        out += (event, cite(block, delta.citation))
                    elif dkind is SignatureDelta and block.kind == THINKING:
                        block.signature = delta.signature
                        out += (event, SignatureEvent(signature=delta.signature))
                    else:  # a delta of another kind: nothing to fold, nothing derived
                        out.append(event)
                    continue
            elif kind is ContentBlockStartEvent:
                out.append(self._start(event))
                continue
            elif kind is RawContentBlockStopEvent:
                out.append(self._stop(event))
                continue
            elif kind is RawMessageStopEvent:
                blocks.clear()  # every block is closed now
                self._hot_index = None
            # the accumulator's own way; a delta for a block that is not open (one of
            # message_start's, or none: the accumulator raises) derives nothing
            acc.process_into([event], out)
        if events:
            acc.last = events[-1]  # what acc.process_into records, for IncompleteStreamError
            self._live_last = False

    def _start(self, event: ContentBlockStartEvent) -> ContentBlockStartEvent:
        self._open[event.index] = self._acc.start_block(event)
        return event

    def _stop(self, event: RawContentBlockStopEvent) -> ContentBlockStopEvent:
        index = event.index
        done = self._acc.stop_block(index)
        self._open.pop(index, None)  # closed (a block of message_start is not there)
        if index == self._hot_index:
            self._hot_index = None
        return ContentBlockStopEvent(index=index, content_block=done)

    def process_chunk(
        self,
        chunk: bytes,
        out: list[Any],
        call: Callable[[Any], Any] | None = None,
        kinds: Container[type] = DERIVED_TYPES,
    ) -> int:
        """Run parse, accumulate and derive over one byte chunk (needs the parser).

        A live stream's typical chunk, exactly one ``content_block_delta`` event, is
        decoded and folded in one go; every other chunk goes through the parser, then
        :meth:`fold`, exactly as the three stages would run apart.

        The events go to *out* and 0 is returned, except that, given *call* (a
        subscriber's lone callback, which takes the event types *kinds*), the events of a
        chunk that is one delta of an open block (the raw delta and its text, input JSON,
        thinking or citation event), one block start or one block stop are passed to it
        instead, those of them that it takes, in order, and how many events the chunk made
        is returned. If the callback raises, :class:`Undelivered` says on which event.
        """
        # exactly `event: content_block_delta\ndata: {...}\n\n`, nothing carried over, no CR.
        # Written with slices, indexing and `int in bytes` rather than startswith, endswith
        # and find, which parse their arguments the slow way (BENCHMARKS.md, "The hot path").
        if chunk[:_DATA_AT] == _LIVE_DELTA and chunk[-1] == _LF and chunk[-2] == _LF and self._idle:
            data = chunk[_DATA_AT:-2]
            if _LF in data or _CR in data:
                event: Any = None
            else:
                try:
                    event = decode_wire(data)
                except BAD_DATA:
                    event = None
            if type(event) is ContentBlockDeltaEvent:
                index = event.index
                if index != self._hot_index:  # another block than the last live delta's
                    block = self._open.get(index)
                    if block is None:  # not open: the accumulator's way (see fold)
                        self.fold([event], out)
                        return 0
                    self._hot_index, self._hot = index, block
                    self._hot_piece, self._hot_pieces = block.piece, block.pieces
                delta: Any = event.delta
                dkind = type(delta)
                if dkind is self._hot_piece:  # an open block (see fold) of that delta's kind
                    # fold()'s piece path, inlined here too (a call to fold([event], out)
                    # would build a list and re-read the block table per live delta)
                    pieces = self._hot_pieces
                    if dkind is TextDelta:
                        piece = delta.text
                    elif dkind is InputJSONDelta:
                        piece = delta.partial_json
                    else:
                        piece = delta.thinking
                    tail = pieces.tail
                    tail.append(piece)
                    size = pieces.size = pieces.size + len(piece)
                    if len(tail) >= GROUP:
                        pieces.compact()
                        if size > self._max_tool and dkind is InputJSONDelta:
                            raise self._acc.tool_input_too_large(index)
                    if dkind is TextDelta:
                        made: Any = TextEvent(piece, pieces, size)
                    elif dkind is InputJSONDelta:
                        made = InputJsonEvent(piece, pieces, size, self._hot.start)
                    else:
                        made = ThinkingEvent(piece, pieces, size)
                elif dkind is CitationsDelta and self._hot.kind == TEXT:  # and fold()'s citation path
                    made = cite(self._hot, delta.citation)
                else:
                    self.fold([event], out)
                    return 0
                self._live_last = True
                if call is None:
                    out += (event, made)
                    return 0
                # the lone callback, called here: no list to fill, empty and loop over
                # in the caller. The raw delta is for on_event only (DERIVED_TYPES); the
                # try blocks cost nothing until a callback raises.
                if kinds is DERIVED_TYPES:
                    try:
                        call(event)
                    except Exception as exc:
                        raise Undelivered(call, exc, [event, made], 0) from None
                elif type(made) not in kinds:
                    return 2
                try:
                    call(made)
                except Exception as exc:
                    raise Undelivered(call, exc, [event, made], 1) from None
                return 2
        elif chunk[-2:] == b"\n\n" and (self._idle or self._start_decoder(chunk)):
            # Exactly one other event (a block start or stop, a message event...), two
            # lines and no CR: what the parser would make of it, without its framing.
            # The first chunk of a stream (message_start, usually) too, once the decoder
            # checked that it does not start with a byte order mark.
            # The name line is one the API sends (any other takes the parser's way).
            name, _, data = chunk.partition(b"\ndata: ")
            if name in _NAME_LINES and _CR not in chunk:
                data = data[:-2]
                if _LF not in data:
                    event = decode_pair(name, data)
                    kind = type(event)
                    # a block's start or stop: fold()'s way, but handed to the lone
                    # callback like a delta's events
                    if kind is ContentBlockStartEvent:
                        made = self._start(event)
                    elif kind is RawContentBlockStopEvent:
                        made = self._stop(event)
                    else:
                        if event is not None:
                            self.fold([event], out)
                        return 0
                    self._acc.last = event
                    self._live_last = False
                    if call is None:
                        out.append(made)
                        return 0
                    if kinds is DERIVED_TYPES or type(made) in kinds:
                        try:
                            call(made)
                        except Exception as exc:
                            raise Undelivered(call, exc, [made], 0) from None
                    return 1
        middle: list[Any] = []
        try:
            self._parser.process_into([chunk], middle)  # type: ignore[union-attr]
        except Exception:
            self.fold(middle, out)  # what the chunk held before the bad event
            raise
        finally:
            self._idle = self._sse.idle  # type: ignore[union-attr]
        self.fold(middle, out)
        return 0

    def _start_decoder(self, chunk: bytes) -> bool:
        """The decoder's start (its byte order mark check) for a one-event *chunk*."""
        self._idle = started = self._sse.start(chunk)  # type: ignore[union-attr]
        return started

    def process_chunks(self, chunks: list[bytes], out: list[Any]) -> None:
        """:meth:`process_chunk` over a batch of chunks."""
        for chunk in chunks:
            self.process_chunk(chunk, out)

    def flush(self) -> list[Any]:
        """End of input: each stage's tail goes through the stages after it."""
        out: list[Any] = []
        if self._parser is not None:
            tail = self._parser.flush()
            self._idle = False
            if tail:
                self.fold(list(tail), out)
        if self._live_last:  # the last event was a live delta, which process_chunk does not record
            self._acc.last = _A_DELTA
        out += self._acc.flush()  # raises without message_stop (unless allowed); derives nothing
        self._open.clear()
        self._hot_index = None
        return out
