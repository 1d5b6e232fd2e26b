"""The hand-fused accumulate+derive loop gives exactly what the two stages give apart."""

from __future__ import annotations

from typing import Any

import pytest

import pipeline
from pipeline.stage import Island
from pipeline.testing import all_cases, chunk_bytes, chunk_events, chunk_random

CASES = all_cases(seed=11)


def run_island(stages: list[Any], chunks: list[bytes]) -> tuple[list[dict[str, Any]], str | None]:
    island = Island(stages)
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
    assert Island(fused).names == ("parse+accumulate+derive",)
    assert Island(apart).names == ("parse", "accumulate", "identity", "derive")
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
