"""The hand-fused accumulate+derive loop gives exactly what the two stages give apart."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pipeline
import pipeline.stages.fused as fused
from pipeline.stages.plan import island_of
from pipeline.testing import all_cases, chunk_bytes, chunk_events, chunk_random

CASES = all_cases(seed=11)


def run_island(stages: list[Any], chunks: list[bytes]) -> tuple[list[dict[str, Any]], str | None]:
    island = island_of(stages)
    events: list[dict[str, Any]] = []
    error = None
    for chunk in [*chunks, None]:
        out, failure = island.run([chunk]) if chunk is not None else island.finish()
        events += [event.to_dict() for event in out]
        if failure is not None:
            error = repr(failure)
            break
    return events, error


def identity(event: Any) -> Any:
    return event


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("chunker", ["events", "bytes", "random"])
def test_fused_equals_unfused(name: str, chunker: str) -> None:
    """Fusing is an optimisation only: the events and errors are identical."""
    body = CASES[name].body()
    chunks = {"events": chunk_events, "bytes": lambda b: chunk_bytes(b, 5), "random": lambda b: chunk_random(b, 2)}[
        chunker
    ](body)
    fused = [pipeline.parse(), pipeline.accumulate(), pipeline.derive()]
    apart = [pipeline.parse(), pipeline.accumulate(), pipeline.Map(identity), pipeline.derive()]
    assert island_of(fused).names == ("parse+accumulate+derive",)
    assert island_of(apart).names == ("parse", "accumulate", "identity", "derive")
    assert run_island(fused, chunks) == run_island(apart, chunks)


def test_fused_equals_unfused_on_failure() -> None:
    """A failing stream fails identically, after the same events."""
    body = CASES["text"].body()
    cut = body[: body.rindex(b"event: content_block_stop")]
    bad = b'{"type":"content_block_delta","index":7,"delta":{"type":"text_delta","text":"x"}}'
    truncated = cut + b"event: content_block_delta\ndata: " + bad + b"\n\n"
    fused = [pipeline.parse(), pipeline.accumulate(), pipeline.derive()]
    apart = [pipeline.parse(), pipeline.accumulate(), pipeline.Map(identity), pipeline.derive()]
    got = run_island(fused, chunk_events(truncated))
    assert got == run_island(apart, chunk_events(truncated))
    assert got[1] is not None and "unknown block index 7" in got[1]


_ODD_EVENTS = {  # one-event chunks the fused chain reads without the parser's framing, or not
    "ping": b'event: ping\ndata: {"type": "ping"}\n\n',
    "ping_with_other_data": b'event: ping\ndata: {"type": "message_stop"}\n\n',
    "unknown_event": b'event: mystery\ndata: {"type": "mystery_event", "x": 1}\n\n',
    "misnamed_stop": b'event: whatever\ndata: {"type": "content_block_stop", "index": 0}\n\n',
    "empty_data": b"event: content_block_stop\ndata: \n\n",
    "no_space": b'event:content_block_stop\ndata:{"type": "content_block_stop", "index": 0}\n\n',
    "crlf": b'event: content_block_stop\r\ndata: {"type": "content_block_stop", "index": 0}\r\n\r\n',
    "cr_ends_the_data_line": b'event: content_block_stop\ndata: {"type": "content_block_stop",\r"index": 0}\n\n',
    "comment": b': keep-alive\n\n',
    "two_data_lines": b'event: content_block_stop\ndata: {"type": "content_block_stop",\ndata: "index": 0}\n\n',
    "bad_json": b'event: content_block_stop\ndata: {"type": "content_block_stop", "index": }\n\n',
    "wrong_shape": b'event: content_block_stop\ndata: {"type": "content_block_stop", "index": "0"}\n\n',
    "error": b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}\n\n',
    "bare_error": b"event: error\ndata: \n\n",
    "id_line_first": b'id: 1\nevent: ping\ndata: {"type": "content_block_stop", "index": 0}\n\n',
    "id_line_last": b'event: content_block_stop\ndata: {"type": "content_block_stop", "index": 0}\nid: 2\n\n',
    "name_with_a_trailing_space": b'event: ping \ndata: {"type": "content_block_stop", "index": 0}\n\n',
    "lone_blank_line": b"\n\n",
    "one_byte": b"\n",
}


@pytest.mark.parametrize("odd", sorted(_ODD_EVENTS))
def test_fused_equals_unfused_on_odd_single_event_chunks(odd: str) -> None:
    """A chunk that is exactly one event other than a delta, inserted after the first
    block's start, gives what the stages give apart (the fused chain's shortcut for such
    chunks follows the parser's rules)."""
    chunks = chunk_events(CASES["text"].body())
    at = next(i for i, c in enumerate(chunks) if c.startswith(b"event: content_block_start")) + 1
    chunks = [*chunks[:at], _ODD_EVENTS[odd], *chunks[at:]]
    fused = [pipeline.parse(), pipeline.accumulate(), pipeline.derive()]
    apart = [pipeline.parse(), pipeline.accumulate(), pipeline.Map(identity), pipeline.derive()]
    assert run_island(fused, chunks) == run_island(apart, chunks)


def test_default_plan_is_the_fused_island() -> None:
    """The default chain's plan, made without looking at its specs, is what planning the
    same specs makes: one island, the whole chain fused, its accumulator the plan's."""
    from pipeline.stages.plan import Plan
    from pipeline.stages.specs import DEFAULT_CHAIN

    quick, planned = Plan(DEFAULT_CHAIN), Plan(list(DEFAULT_CHAIN))
    for plan in (quick, planned):
        assert len(plan.nodes) == 1 and plan.last is plan.nodes[0] and plan.buffers == ()
        assert plan.last.names == ("parse+accumulate+derive",)
        assert plan.last.fused is not None
        assert plan.last.fused._acc is plan.accumulator
    assert Plan(DEFAULT_CHAIN).accumulator is not quick.accumulator  # fresh state per stream
    chunks = chunk_events(CASES["text"].body())
    results = []
    for plan in (quick, planned):
        events: list[dict[str, Any]] = []
        for chunk in chunks:
            out, failure = plan.last.run([chunk])
            assert failure is None
            events += [event.to_dict() for event in out]
        assert plan.accumulator is not None and plan.accumulator.final_message is not None
        results.append((events, plan.accumulator.final_message.to_dict()))
    assert results[0] == results[1]


_BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("variant", ["plain", "bom_first", "bom_split", "bom_later", "bom_later_whole_chunk"])
def test_fused_equals_unfused_at_the_start_of_a_stream(variant: str) -> None:
    """The fused chain reads a stream's first one-event chunk without the parser once the
    byte order mark check is done: a leading BOM is still dropped, a later one kept."""
    chunks = chunk_events(CASES["text"].body())
    if variant == "bom_first":
        chunks[0] = _BOM + chunks[0]
    elif variant == "bom_split":
        chunks[:1] = [_BOM[:2], _BOM[2:] + chunks[0]]
    elif variant == "bom_later":  # kept, it hides the event's name: ignored (dropped, a delta "X")
        delta = b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"X"}}'
        at = next(i for i, c in enumerate(chunks) if c.startswith(b"event: content_block_start")) + 1
        chunks.insert(at, _BOM + b"event: content_block_delta\ndata: " + delta + b"\n\n")
    elif variant == "bom_later_whole_chunk":
        chunks.insert(1, _BOM)
    fused = [pipeline.parse(), pipeline.accumulate(), pipeline.derive()]
    apart = [pipeline.parse(), pipeline.accumulate(), pipeline.Map(identity), pipeline.derive()]
    got = run_island(fused, chunks)
    assert got == run_island(apart, chunks)
    assert got[1] is None and got[0][0]["type"] == "message_start"


def test_sse_start_checks_for_a_byte_order_mark() -> None:
    decoder = pipeline.SSEDecoder()
    assert not decoder.start(_BOM + b"data: 1\n\n") and not decoder.idle
    assert decoder.start(b"data: 1\n\n") and decoder.idle
    assert not decoder.start(b"data: 2\n\n")  # once only: the check is done
    # a BOM after the start is not dropped: here it makes the field name unknown
    assert decoder.process(_BOM + b"data: 3\n\n") == []
    assert [f.data for f in pipeline.SSEDecoder().process(_BOM + b"data: 3\n\n")] == [b"3"]
    split = pipeline.SSEDecoder()
    assert split.process(_BOM[:1]) == [] and not split.start(b"data: 4\n\n")  # a BOM is under way


def run_both(chunks: list[bytes]) -> tuple[list[dict[str, Any]], str | None]:
    """Run *chunks* through the fused chain and the stages apart; check that they agree."""
    fused = run_island([pipeline.parse(), pipeline.accumulate(), pipeline.derive()], chunks)
    apart = [pipeline.parse(), pipeline.accumulate(), pipeline.Map(identity), pipeline.derive()]
    assert fused == run_island(apart, chunks)
    return fused


def _delta_chunk(index: int, text: str) -> bytes:
    data = pipeline.testing.json_text(
        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}
    )
    return b"event: content_block_delta\ndata: " + data.encode() + b"\n\n"


_PARTIAL = {  # what a chunk may leave the decoder holding, before a chunk that is one whole delta
    "data_line": b'data: {"type": "ping"}\n',  # an event's data line, not yet ended by a blank line
    "name_line": b"event: ping\n",
    "unended_line": b"data: ",
    "cr": b"event: ping\r",  # the next chunk's leading LF would belong to this CR
}


@pytest.mark.parametrize("partial", sorted(_PARTIAL))
def test_a_whole_delta_after_a_partial_event_is_not_read_alone(partial: str) -> None:
    """The live path reads a one-delta chunk on its own only when the decoder holds
    nothing: after a chunk that left part of an event, the parser reads it, as apart."""
    chunks = chunk_events(CASES["text"].body())
    at = next(i for i, c in enumerate(chunks) if c.startswith(b"event: content_block_start")) + 1
    run_both([*chunks[:at], _PARTIAL[partial], _delta_chunk(0, "X"), *chunks[at:]])


def test_live_deltas_to_two_open_blocks() -> None:
    """Deltas may go to any open block, in any order: the live path follows each to its
    block (it keeps the last one's at hand), and a stopped block takes no more."""
    chunks = chunk_events(CASES["text"].body())
    start = next(c for c in chunks if c.startswith(b"event: content_block_start"))
    stop = next(c for c in chunks if c.startswith(b"event: content_block_stop"))
    last = chunks.index(stop)
    second = start.replace(b'"index":0', b'"index":1').replace(b'"index": 0', b'"index": 1')
    assert second != start
    mixed = [second, _delta_chunk(1, "a"), _delta_chunk(0, "b"), _delta_chunk(1, "c"), _delta_chunk(1, "d")]
    stop_1 = stop.replace(b'"index":0', b'"index":1').replace(b'"index": 0', b'"index": 1')
    got = run_both([*chunks[:last], *mixed, stop_1, *chunks[last:]])
    assert got[1] is None
    texts = [e["snapshot"] for e in got[0] if e["type"] == "text"]
    assert texts[-4:] == ["a", texts[-5] + "b", "ac", "acd"]
    got = run_both([*chunks[:last], *mixed, stop_1, _delta_chunk(1, "e"), *chunks[last:]])
    assert got[1] is not None and "after its content_block_stop" in got[1]


def test_one_delta_chunks_take_the_live_path() -> None:
    """A live stream's one-delta chunks are read by the fused chain's own path (the lone
    callback gets their events directly: process_chunk says how many), once the stream's
    first chunk was read; chunks the parser must read give their events in *out*."""
    island = island_of([pipeline.parse(), pipeline.accumulate(), pipeline.derive()])
    chain = island.fused
    assert chain is not None
    seen: list[Any] = []
    chunks = [c for c in chunk_events(CASES["text"].body()) if not c.startswith(b"event: ping")]
    counts = []
    for chunk in chunks:
        out: list[Any] = []
        counts.append((chunk.split(b"\n", 1)[0], chain.process_chunk(chunk, out, seen.append), len(out)))
    deltas = [(n, o) for name, n, o in counts if name == b"event: content_block_delta"]
    assert deltas and all(d == (2, 0) for d in deltas)  # the raw delta and its text event, called
    kinds = [type(e).__name__ for e in seen]
    assert kinds == ["ContentBlockStartEvent", *["ContentBlockDeltaEvent", "TextEvent"] * len(deltas),
                     "ContentBlockStopEvent"]  # fmt: skip
    assert [c for c in counts if c[0] == b"event: message_start"] == [(b"event: message_start", 0, 1)]
    # the block's start and stop too, the start being the stream's second chunk
    assert counts[1] == (b"event: content_block_start", 1, 0)
    assert [c for c in counts if c[0] == b"event: content_block_stop"] == [(b"event: content_block_stop", 1, 0)]


@settings(max_examples=300, deadline=None, database=None)
@given(
    name=st.sampled_from(sorted(CASES)),
    inserts=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 120)), max_size=4),
)
def test_fused_equals_unfused_with_fragments_between_whole_events(
    name: str, inserts: list[tuple[int, int, int]]
) -> None:
    """One-event chunks with fragments of events (the start of one, cut anywhere) put
    between them: the fused chain must stop reading whole events on its own while the
    decoder holds part of one, and start again once it holds nothing."""
    chunks = chunk_events(CASES[name].body())
    for at, which, size in inserts:
        chunks.insert(at % (len(chunks) + 1), chunks[which % len(chunks)][:size])
    run_both(chunks)


def test_the_inline_table_names_real_tests() -> None:
    """Every test that the fused chain's docstring names as the proof of an inlined copy exists."""
    named = set(re.findall(r"``(test_\w+)``", fused.__doc__ or ""))
    here = Path(__file__).parent
    defined = set(re.findall(r"^(?:async )?def (test_\w+)", (here / "test_fused.py").read_text(), re.M))
    defined |= set(re.findall(r"^(?:async )?def (test_\w+)", (here / "test_bus.py").read_text(), re.M))
    assert len(named) >= 8
    assert named <= defined, sorted(named - defined)
