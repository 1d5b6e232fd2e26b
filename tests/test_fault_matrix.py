"""The fault matrix: every fault the fake server injects, at every phase it can hit, through
real sockets (``MessagesClient`` -> ``FakeServer`` -> pipeline), with its expected outcome.

Each cell is one test. For a fault that hits after the first *n* events of the body, the
events delivered and the error's ``partial_message`` must be exactly what the first *n*
events give in memory: nothing received before the fault is lost. The table in
RELIABILITY.md is generated from ``CELLS`` (``python tests/test_fault_matrix.py``) and a
test checks that it is up to date.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest

import pipeline
from pipeline.client import RetryPolicy
from pipeline.fake_server import (
    GARBAGE_DATA,
    GARBAGE_LINES,
    TRUNCATED_UTF8,
    FakeServer,
    Script,
    split_events,
)
from pipeline.testing import aiter_chunks, mixed_body

ROOT: Final = Path(__file__).resolve().parents[1]
RETRY: Final = RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.05)
BODY: Final = mixed_body(10, 200, seed=4)  # a text block, a tool_use block, a text block; pings
EVENTS: Final = split_events(BODY)
_FIRST_JSON: Final = next(i for i, e in enumerate(EVENTS) if b'"input_json_delta"' in e)
PHASES: Final = {  # phase -> how many events of the body were sent before the fault
    "before the first event": 0,
    "after message_start": 1,
    "mid text": 8,
    "mid tool input": _FIRST_JSON + 10,
    "before message_stop": len(EVENTS) - 1,
}


@dataclass(frozen=True)
class Cell:
    """One fault at one phase and what must come of it.

    Attributes:
        fault: The fault, as RELIABILITY.md names it.
        phase: When it hits (a key of ``PHASES``, or ``"before the body"``).
        scripts: The server's answers to successive requests.
        error: The typed error the stream must raise; ``None``: it must succeed.
        requests: How many requests the client must send (more than one: it retried).
        sent: Events of the body sent before the fault (what must be delivered).
        idle_timeout: The stream's ``idle_timeout``.
        note: What else the table says about the outcome.
    """

    fault: str
    phase: str
    scripts: list[Script]
    error: type[pipeline.PipelineError] | None
    requests: int = 1
    sent: int = 0
    idle_timeout: float | None = None
    note: str = ""
    status: int | None = field(default=None)

    @property
    def id(self) -> str:
        return f"{self.fault} / {self.phase}"


def _cells() -> list[Cell]:
    ok = Script(body=BODY)
    cells = [
        Cell("529 overloaded", "before the body", [Script(status=529), ok], None, 2, note="retried"),
        Cell("529 overloaded, every attempt", "before the body", [Script(status=529)], pipeline.OverloadedError, 3,
             status=529, note="retried, then `.status_code` 529"),
        Cell("429 with retry-after", "before the body", [Script(status=429, retry_after=0.01), ok], None, 2,
             note="retried after `retry-after`"),
        Cell("500 internal error", "before the body", [Script(status=500), ok], None, 2, note="retried"),
        Cell("400 invalid request", "before the body", [Script(status=400)], pipeline.errors.InvalidRequestError, 1,
             status=400, note="not retried"),
        Cell("connection closed before the response", "before the body", [Script(close_before_response=True), ok],
             None, 2, note="retried"),
        Cell("connection closed before the response, every attempt", "before the body",
             [Script(close_before_response=True)], pipeline.APIConnectionError, 3, note="retried, then typed"),
    ]
    for phase, n in PHASES.items():
        cells += [
            Cell("connection cut between events", phase, [Script(body=BODY, cut_after_events=n)],
                 pipeline.SourceError, sent=n, note="not retried once the body started"),
            Cell("connection cut mid-event", phase, [Script(body=BODY, cut_after_events=n, cut_mid_event=True)],
                 pipeline.SourceError, sent=n, note="the half event is dropped"),
            Cell("`event: error` (overloaded)", phase, [Script(body=BODY, error_event_after=n)],
                 pipeline.OverloadedError, sent=n, note="`.status_code` None"),
            Cell("garbage lines (no SSE field)", phase, [Script(body=BODY, inject=(n, GARBAGE_LINES))], None,
                 note="ignored, as the event-stream rules say"),
            Cell("garbage data (not JSON)", phase, [Script(body=BODY, inject=(n, GARBAGE_DATA))],
                 pipeline.DecodeError, sent=n),
            Cell("truncated UTF-8 in data", phase, [Script(body=BODY, inject=(n, TRUNCATED_UTF8))],
                 pipeline.DecodeError, sent=n),
        ]
    cells += [
        Cell("slow drip (7 bytes per write)", "whole body", [Script(body=BODY, drip_bytes=7, drip_delay=0.0005)],
             None, note="complete and exact"),
        Cell("stall longer than idle_timeout", "mid text", [Script(body=BODY, events_per_second=1.0)],
             pipeline.IdleTimeoutError, sent=1, idle_timeout=0.3, note="the connection closed"),
    ]
    return cells


CELLS: Final = _cells()


async def in_memory(events: list[bytes]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The derived events and the snapshot that the first events of a body give."""
    if not events:
        return [], None
    async with pipeline.open_stream(aiter_chunks(events), allow_incomplete=True) as stream:
        derived = [event.to_dict() async for event in stream]
        return derived, (await stream.get_final_message()).to_dict()


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.id)
async def test_fault_matrix_cell(cell: Cell) -> None:
    delivered: list[dict[str, Any]] = []
    error: pipeline.PipelineError | None = None
    message: pipeline.Message | None = None
    async with FakeServer(cell.scripts) as server:
        async with pipeline.MessagesClient(api_key="sk-test", base_url=server.url, retry=RETRY) as client:
            request = client.stream(
                model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}],
                idle_timeout=cell.idle_timeout,
            )  # fmt: skip
            try:
                async with request as stream:
                    async for event in stream:
                        delivered.append(event.to_dict())
                    message = await stream.get_final_message()
            except pipeline.PipelineError as exc:
                error = exc
        assert len(server.requests) == cell.requests
    if cell.error is None:
        assert error is None
        full_events, full_message = await in_memory(EVENTS)
        assert message is not None and (delivered, message.to_dict()) == (full_events, full_message)
        return
    assert type(error) is cell.error, repr(error)
    if cell.status is not None:
        assert isinstance(error, pipeline.APIError) and error.status_code == cell.status
    prefix_events, prefix_message = await in_memory(EVENTS[: cell.sent])
    assert delivered == prefix_events
    partial = error.partial_message
    assert (partial.to_dict() if partial is not None else None) == prefix_message


@pytest.mark.parametrize(
    "script",
    [Script(body=BODY, cut_after_events=0), Script(body=BODY, error_event_after=0), Script(status=529)],
    ids=["cut", "error event", "529"],
)
async def test_a_worker_retries_a_job_that_failed_before_its_first_event(script: Script) -> None:
    """The opt-in worker retry: a transient failure before any event runs the job again."""
    async with FakeServer([script, Script(body=BODY)]) as server:
        async with pipeline.MessagesClient(api_key="k", base_url=server.url, retry=RetryPolicy(max_retries=0)) as c:
            async with pipeline.Worker(client=c, concurrency=1, retry=RETRY) as worker:
                job = pipeline.JobRequest(id="j", model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
                [result] = await worker.run([job])
    assert result.error is None and result.attempts == 2
    assert result.message is not None and result.message.to_dict() == (await in_memory(EVENTS))[1]


def outcome(cell: Cell) -> str:
    what = "success" if cell.error is None else f"`{cell.error.__name__}`"
    if cell.error is not None:
        what += ", partial: none" if cell.sent == 0 else f", partial: the first {cell.sent} events"
    return what + (f"; {cell.note}" if cell.note else "")


def matrix_markdown() -> str:
    """The fault matrix as the Markdown table RELIABILITY.md holds."""
    rows = [
        "| fault | phase | requests | outcome |",
        "|---|---|---|---|",
        *(f"| {c.fault} | {c.phase} | {c.requests} | {outcome(c)} |" for c in CELLS),
    ]
    return "\n".join(rows) + "\n"


def test_reliability_md_holds_the_current_matrix() -> None:
    text = (ROOT / "RELIABILITY.md").read_text(encoding="utf-8")
    assert matrix_markdown() in text, "regenerate the table: python tests/test_fault_matrix.py"


if __name__ == "__main__":
    sys.stdout.write(matrix_markdown())
