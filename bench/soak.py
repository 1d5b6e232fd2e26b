"""Soak: many thousands of streams through one Worker against the fake server, with faults.

Every job gets one fate, drawn from a seeded random generator: a clean stream, a stream that
also feeds a slow async subscriber (dropping or blocking), a subscriber that raises, a
cancellation by ``worker.cancel`` after its fifth text event, a connection cut mid-event, an
``event: error`` mid-stream, or a 529 before the body that the client retries. At the end:

- every job that should succeed has exactly the final message its body gives in memory,
  every other one failed with the typed error of its fate;
- no task is left in the event loop and no file descriptor is left open (counted);
- resident memory was sampled every second: the slope after warm-up is reported.

Run (a few minutes)::

    python bench/soak.py --streams 10000 --concurrency 200

tests/test_soak.py runs a scaled-down version (``soak(300, ...)``) and checks everything
above except the memory slope.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pipeline  # noqa: E402
from pipeline.client import RetryPolicy  # noqa: E402
from pipeline.fake_server import FakeServer, ReceivedRequest, Script  # noqa: E402
from pipeline.testing import mixed_builder, text_builder  # noqa: E402

FATES = {  # fate -> weight
    "clean": 60,
    "slow_subscriber_drop": 6,
    "slow_subscriber_block": 4,
    "failing_subscriber": 5,
    "cancelled": 7,
    "cut": 6,
    "error_event": 6,
    "overloaded_then_ok": 6,
}
EXPECTED_ERROR: dict[str, type[BaseException] | None] = {
    "clean": None,
    "slow_subscriber_drop": None,
    "slow_subscriber_block": None,
    "overloaded_then_ok": None,
    "failing_subscriber": pipeline.SubscriberError,
    "cancelled": pipeline.JobCancelledError,
    "cut": pipeline.SourceError,
    "error_event": pipeline.OverloadedError,
}


@dataclass
class SoakReport:
    streams: int
    concurrency: int
    seconds: float
    fates: dict[str, int]
    outcomes: dict[str, int]
    wrong: list[str]
    events: int
    leaked_tasks: int
    leaked_fds: int
    rss_samples: list[tuple[float, float]] = field(repr=False)
    rss_start_mib: float = 0.0
    rss_end_mib: float = 0.0
    rss_slope_kib_per_min: float = 0.0
    server: dict[str, int] = field(default_factory=dict)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope in KiB per minute of (seconds, MiB) samples."""
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(m for _, m in samples) / n
    var = sum((t - mx) ** 2 for t, _ in samples)
    cov = sum((t - mx) * (m - my) for t, m in samples)
    return 0.0 if var == 0 else cov / var * 1024 * 60


class _Slow:
    """An async subscriber that takes a while per batch."""

    def __init__(self) -> None:
        self.seen = 0

    async def on_text(self, event: Any) -> None:
        self.seen += 1
        await anyio.sleep(0.002)


class _CancelAfter:
    """Cancels its own job, through the worker, after a few text events."""

    def __init__(self, worker: pipeline.Worker, job_id: str, after: int) -> None:
        self.worker, self.job_id, self.left = worker, job_id, after

    def on_text(self, event: Any) -> None:
        self.left -= 1
        if self.left == 0:
            self.worker.cancel(self.job_id)


class _Failing:
    def __init__(self, after: int) -> None:
        self.left = after

    def on_text(self, event: Any) -> None:
        self.left -= 1
        if self.left == 0:
            raise RuntimeError("subscriber failed on purpose")


def _body(job: int, seed: int) -> tuple[bytes, dict[str, Any]]:
    builder = mixed_builder(8, 200, seed + job) if job % 5 == 0 else text_builder(40, seed + job)
    stop = "tool_use" if job % 5 == 0 else "end_turn"
    return builder.build(stop_reason=stop), builder.expected_message(stop_reason=stop)


async def soak(streams: int, concurrency: int, *, seed: int = 0, sample_every: float = 1.0) -> SoakReport:
    """Run *streams* jobs through one worker; return the report (see the module doc)."""
    rng = random.Random(seed)
    names, weights = zip(*FATES.items(), strict=True)
    fates = [rng.choices(names, weights)[0] for _ in range(streams)]
    overloaded: set[int] = set()

    def script(request: ReceivedRequest) -> Script:
        job = int(request.json["messages"][-1]["content"])
        fate = fates[job]
        body, _ = _body(job, seed)
        if fate == "overloaded_then_ok" and job not in overloaded:  # only its first attempt
            overloaded.add(job)
            return Script(status=529)
        if fate == "cut":
            return Script(body=body, cut_after_events=20, cut_mid_event=True)
        if fate == "error_event":
            return Script(body=body, error_event_after=20)
        if fate == "cancelled":
            return Script(body=body, events_per_second=500.0)  # paced: the cancel closes an open body
        return Script(body=body)

    gc.collect()
    fds_before = _fds()
    samples: list[tuple[float, float]] = []
    start = time.perf_counter()
    outcomes: Counter[str] = Counter()
    wrong: list[str] = []
    events = 0

    def check(result: pipeline.JobResult) -> None:
        nonlocal events
        events += result.events
        job = int(result.id)
        fate = fates[job]
        expected = EXPECTED_ERROR[fate]
        outcomes["ok" if result.error is None else type(result.error).__name__] += 1
        if expected is None:
            if result.error is not None or result.message is None:
                wrong.append(f"{job} ({fate}): {result.error!r}")
            elif result.message.to_dict() != _body(job, seed)[1]:
                wrong.append(f"{job} ({fate}): wrong final message")
        elif not isinstance(result.error, expected):
            wrong.append(f"{job} ({fate}): {result.error!r}, expected {expected.__name__}")

    async def sample(stop: anyio.Event) -> None:
        while not stop.is_set():
            samples.append((time.perf_counter() - start, _rss_mib()))
            with anyio.move_on_after(sample_every):
                await stop.wait()

    tasks_before = len(anyio.get_running_tasks())
    async with FakeServer(script, keep_requests=100) as server:
        retry = RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.01)
        async with pipeline.MessagesClient(
            api_key="sk-soak", base_url=server.url, retry=retry, max_connections=concurrency
        ) as client:
            worker = pipeline.Worker(client=client, concurrency=concurrency)
            async with worker, anyio.create_task_group() as tg:
                stop = anyio.Event()
                tg.start_soon(sample, stop)

                async def collect() -> None:
                    finished = 0
                    async for result in worker.results():
                        check(result)  # and drop it: the soak must not hold 10,000 messages itself
                        finished += 1
                        if finished == streams:
                            break
                    stop.set()

                tg.start_soon(collect)
                for job, fate in enumerate(fates):
                    subscribers: list[object] = []
                    if fate == "slow_subscriber_drop":
                        subscribers.append(pipeline.Subscription(_Slow(), overflow="drop_oldest", buffer=2))
                    elif fate == "slow_subscriber_block":
                        subscribers.append(pipeline.Subscription(_Slow(), overflow="block", buffer=2))
                    elif fate == "failing_subscriber":
                        subscribers.append(_Failing(after=5))
                    elif fate == "cancelled":
                        subscribers.append(_CancelAfter(worker, str(job), after=5))
                    await worker.submit(pipeline.JobRequest(
                        id=str(job), model="claude-soak", max_tokens=64,
                        messages=[{"role": "user", "content": str(job)}], subscribers=subscribers,
                    ))  # fmt: skip
        server_stats = asdict(server.statistics())
    await anyio.lowlevel.checkpoint()
    leaked_tasks = len(anyio.get_running_tasks()) - tasks_before
    seconds = time.perf_counter() - start
    gc.collect()
    leaked_fds = _fds() - fds_before

    warm = [s for s in samples if s[0] >= seconds * 0.2]
    return SoakReport(
        streams=streams, concurrency=concurrency, seconds=seconds, fates=dict(Counter(fates)),
        outcomes=dict(outcomes), wrong=wrong, events=events,
        leaked_tasks=leaked_tasks, leaked_fds=leaked_fds, rss_samples=samples,
        rss_start_mib=warm[0][1] if warm else 0.0, rss_end_mib=warm[-1][1] if warm else 0.0,
        rss_slope_kib_per_min=_slope(warm), server=server_stats,
    )  # fmt: skip


def main() -> None:
    structlog.configure(  # retries are logged at info: keep stdout for the report
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--json", type=Path, help="also write the report (with the RSS samples) here")
    args = parser.parse_args()
    report = anyio.run(lambda: soak(args.streams, args.concurrency, seed=args.seed), backend=args.backend)
    summary = {k: v for k, v in asdict(report).items() if k != "rss_samples"}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    if report.wrong or report.leaked_tasks or report.leaked_fds:
        sys.exit(1)


if __name__ == "__main__":
    main()
