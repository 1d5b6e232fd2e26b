"""Property tests on arbitrary and corrupted SSE bytes, under arbitrary chunkings: only the
library's typed errors escape, nothing hangs, the fused and staged chains agree, and every
event that was valid before the corruption point is delivered. Inputs the atheris fuzzer
(fuzz/) found are kept in tests/fuzz_crashes/ and run here."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipeline
from fuzz.harness import STAGED, check_input, outcome
from pipeline.fake_server import split_events
from pipeline.testing import aiter_chunks, all_bodies

CRASHES: Final = sorted((Path(__file__).parent / "fuzz_crashes").glob("*.bin"))
BODIES: Final = all_bodies(seed=3)
SETTINGS: Final = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def cut_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({c % (len(data) + 1) for c in cuts} - {0, len(data)}), len(data)]
    return [data[a:b] for a, b in pairwise(bounds) if b > a]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("path", CRASHES, ids=[p.stem for p in CRASHES])
def test_saved_fuzzer_crashes_pass(path: Path, backend: str) -> None:
    check_input(path.read_bytes(), backend)


def test_there_are_saved_crashes() -> None:
    assert len(CRASHES) >= 2


# one line of an SSE stream: fields, comments, noise; data that is JSON-ish or not
_LINE = st.one_of(
    st.sampled_from([b"", b":comment", b"event: content_block_delta", b"event: error", b"event: ping", b"retry: 5"]),
    st.builds(lambda v: b"data: " + v, st.sampled_from([
        b'{"type":"message_start","message":{"id":"m","content":[],"usage":{}}}',
        b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}',
        b'{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}',
        b'{"type":"content_block_stop","index":0}', b'{"type":"message_stop"}', b'{"type":"nope"}', b"{", b"\xff",
    ])),
    st.binary(max_size=40),
)
_EOL = st.sampled_from([b"\n", b"\r\n", b"\r"])


@SETTINGS
@given(lines=st.lists(st.tuples(_LINE, _EOL), max_size=40), cuts=st.lists(st.integers(0, 10**6), max_size=20),
       backend=st.sampled_from(["asyncio", "trio"]))
def test_arbitrary_event_streams_fail_typed_and_chains_agree(
    lines: list[tuple[bytes, bytes]], cuts: list[int], backend: str
) -> None:
    data = b"".join(line + eol for line, eol in lines)
    chunks = cut_at(data, cuts)

    async def both() -> tuple[Any, Any]:
        with anyio.fail_after(10):  # a hang fails the test
            return await outcome(chunks, ()), await outcome(chunks, STAGED)

    fused, staged = anyio.run(both, backend=backend)
    assert fused == staged


@SETTINGS
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 10**6), max_size=20))
def test_arbitrary_bytes_fail_typed(data: bytes, cuts: list[int]) -> None:
    async def run() -> Any:
        with anyio.fail_after(10):
            return await outcome(cut_at(data, cuts), ())

    anyio.run(run)  # outcome() lets only PipelineError through (as a result)


@SETTINGS
@given(name=st.sampled_from(sorted(BODIES)), point=st.integers(0, 10**6), tail=st.binary(min_size=1, max_size=300),
       cuts=st.lists(st.integers(0, 10**6), max_size=20), backend=st.sampled_from(["asyncio", "trio"]))
def test_what_came_before_the_corruption_is_delivered(
    name: str, point: int, tail: bytes, cuts: list[int], backend: str
) -> None:
    """The events before the corruption point, whole and valid, are all delivered, with the
    same content, whatever follows them and however the bytes are cut."""
    events = split_events(BODIES[name])
    k = point % len(events)
    prefix = events[:k]

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with anyio.fail_after(10):
            expected: list[dict[str, Any]] = []
            if prefix:
                async with pipeline.open_stream(aiter_chunks(prefix), allow_incomplete=True) as stream:
                    expected = [event.to_dict() async for event in stream]
            delivered, _ = await outcome(cut_at(b"".join(prefix) + tail, cuts), ())
            return expected, delivered

    expected, delivered = anyio.run(run, backend=backend)
    assert delivered[: len(expected)] == expected
