"""Per-stream wall time of every contender on one (workload, chunk shape) cell.

All contenders run in the same process and event loop. Per cell: one untimed warm-up run of
each contender (its outcome is the correctness sample), then ``reps`` rounds in which every
contender runs once, the order rotating by one each round; a contender quick enough for
more than ``reps`` samples in ``seconds`` keeps running in further rounds, up to
``max_reps``. ``gc.collect()`` runs between
samples, outside the timing, after a ``gc.freeze()`` of everything set up before the cell
(imports, bodies, chunks), which makes those collections cheap; the GC stays enabled during
each sample. A contender whose warm-up takes longer than :data:`SLOW_RUN` seconds keeps that
run as a sample; every contender gets at most ``budget`` seconds of samples in the cell (at
least one).

Ratios between two contenders are reported two ways: the ratio of their medians, and the
median of the per-round ratios (the two runs of a round are seconds apart at most, so a
slow spell of a shared machine, which lasts longer than one run, weighs on both sides of
the ratio alike; the targets are judged on this one, with its interquartile range).
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from contenders import Outcome, Runner, message_dict
from workloads import Workload, chunks

__all__ = ["Cell", "Stat", "check", "measure_cell", "predict_skip", "warm_up"]

SLOW_RUN = 1.0
SDK_SKIPPED = "skipped (quadratic: minutes)"
MIN_PAIRED = 5  # rounds needed for a per-round ratio
SDK_CAP = 30.0  # scaling: skip the SDK where one stream is predicted to take longer (seconds)


@dataclass
class Stat:
    """Samples of one contender in one cell (seconds per stream)."""

    times: list[float] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)  # the round of each sample (-1: the warm-up)
    skipped: str = ""
    error: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    @property
    def min(self) -> float | None:
        return min(self.times) if self.times else None


@dataclass
class Cell:
    """Results of one (workload, shape) cell."""

    workload: str
    shape: str
    note: str
    bytes: int
    wire_events: int
    stats: dict[str, Stat]
    correctness: str

    def median(self, contender: str) -> float | None:
        stat = self.stats.get(contender)
        return stat.median if stat else None

    def us_per_event(self, contender: str) -> float | None:
        m = self.median(contender)
        return None if m is None else m / self.wire_events * 1e6

    def ratio(self, a: str, b: str) -> float | None:
        ma, mb = self.median(a), self.median(b)
        return None if ma is None or mb is None or mb == 0 else ma / mb

    def paired(self, a: str, b: str) -> list[float]:
        """*a*'s time over *b*'s in every round in which both ran, in round order."""
        sa, sb = self.stats.get(a), self.stats.get(b)
        if sa is None or sb is None:
            return []
        other = {r: t for r, t in zip(sb.rounds, sb.times, strict=True) if r >= 0}
        return [t / other[r] for r, t in zip(sa.rounds, sa.times, strict=True) if r in other and other[r] > 0]

    def paired_ratio(self, a: str, b: str) -> tuple[float, float, float] | None:
        """(median, lower quartile, upper quartile) of :meth:`paired`, if it has 5 rounds."""
        ratios = self.paired(a, b)
        if len(ratios) < MIN_PAIRED:
            return None
        q1, median, q3 = statistics.quantiles(ratios, n=4)
        return median, q1, q3

    def floor_name(self) -> str:
        """The floor our target is measured against: async for live, sync for bulk."""
        return "floor_decode_async" if self.shape == "live" else "floor_decode"

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "shape": self.shape,
            "note": self.note,
            "bytes": self.bytes,
            "wire_events": self.wire_events,
            "correctness": self.correctness,
            "contenders": {
                name: {"median_s": s.median, "min_s": s.min, "n": len(s.times), "skipped": s.skipped, "error": s.error}
                for name, s in self.stats.items()
            },
            "ours_per_round": {
                floor: dict(zip(("median", "q1", "q3"), paired, strict=True)) if paired else None
                for floor in ("floor_decode", "floor_decode_async", "sdk")
                for paired in (self.paired_ratio("ours", floor),)
            },
        }


async def _timed(run: Runner, data: list[bytes]) -> tuple[float, Outcome]:
    gc.collect()
    t0 = time.perf_counter()
    outcome = await run(data)
    return time.perf_counter() - t0, outcome


async def warm_up(runners: dict[str, Runner], workloads: list[Workload]) -> None:
    """Run every contender a few times on small bodies (imports, caches, code paths)."""
    for w in workloads:
        for shape in ("live", "bulk"):
            data = chunks(w.body, shape)
            for run in runners.values():
                for _ in range(2):
                    await run(data)


def check(w: Workload, first: dict[str, Outcome], stats: dict[str, Stat]) -> str:
    """The correctness column: ours vs the SDK (or vs the expected message if it was skipped)."""
    problems: list[str] = [f"{name} raised {s.error}" for name, s in stats.items() if s.error]
    for floor in ("floor_decode", "floor_decode_async"):
        if floor in first and first[floor].events != w.wire_events:
            problems.append(f"{floor} decoded {first[floor].events} events, wire has {w.wire_events}")
    if "sdk" in first:
        sdk_msg, sdk_n = message_dict(first["sdk"].message), first["sdk"].events
        if sdk_msg != w.expected or sdk_n != w.derived_events:  # a bench bug, not ours
            problems.append("sdk disagrees with the generator's expected message/count")
        ref, ref_n, source = sdk_msg, sdk_n, "sdk"
    else:
        ref, ref_n, source = w.expected, w.derived_events, "expected"
    if "ours" in first:
        ours = first["ours"]
        if message_dict(ours.message) != ref:
            problems.append(f"final message != {source}")
        if ours.events != ref_n:
            problems.append(f"{ours.events} derived events != {source} {ref_n}")
    elif "ours" in stats and not stats["ours"].error:
        problems.append("ours did not run")
    if problems:
        return "FAIL: " + "; ".join(problems)
    return f"ok (= {source})"


def predict_skip(points: list[tuple[int, float]], events: int, exponent: float, cap: float = SDK_CAP) -> str:
    """A skip reason if one SDK stream of *events* events is predicted to exceed *cap* seconds.

    *points* are earlier (events, median seconds) of the same kind, ascending; the growth
    exponent is fitted on the last two (clamped to 1-2.2), else *exponent* is assumed.
    """
    if not points:
        return ""
    n1, t1 = points[-1]
    if len(points) >= 2:
        n0, t0 = points[-2]
        if n1 > n0 and t1 > 0 and t0 > 0:
            exponent = min(2.2, max(1.0, math.log(t1 / t0) / math.log(n1 / n0)))
    predicted = t1 * (events / n1) ** exponent
    return f"skipped (predicted ~{predicted:.0f} s > {cap:.0f} s)" if predicted > cap else ""


async def measure_cell(
    w: Workload,
    shape: str,
    runners: dict[str, Runner],
    *,
    reps: int,
    budget: float,
    with_slow_sdk: bool,
    sdk_skip: str = "",
    seconds: float = 0.0,
    max_reps: int = 0,
) -> Cell:
    """Measure every runner on one cell; see the module docstring for the protocol.

    Every contender gets *reps* rounds; one whose warm-up run shows that *seconds* hold more
    samples gets that many, up to *max_reps* rounds (never the SDK). The SDK is skipped on
    ``w.sdk_slow`` cells unless *with_slow_sdk* (then it runs once), and whenever *sdk_skip*
    gives a reason.
    """
    data = chunks(w.body, shape)
    gc.collect()
    gc.freeze()
    try:
        stats, first = await _samples(w, data, runners, reps, budget, with_slow_sdk, sdk_skip, seconds, max_reps)
    finally:
        gc.unfreeze()  # the caller's heap as it was: the next cell freezes its own set-up
    return Cell(w.name, shape, w.note, len(w.body), w.wire_events, stats, check(w, first, stats))


async def _samples(
    w: Workload,
    data: list[bytes],
    runners: dict[str, Runner],
    reps: int,
    budget: float,
    with_slow_sdk: bool,
    sdk_skip: str,
    seconds: float,
    max_reps: int,
) -> tuple[dict[str, Stat], dict[str, Outcome]]:
    stats = {name: Stat() for name in runners}
    first: dict[str, Outcome] = {}
    limit: dict[str, int] = {}
    for name, run in runners.items():
        if name == "sdk" and (sdk_skip or (w.sdk_slow and not with_slow_sdk)):
            stats[name].skipped = sdk_skip or SDK_SKIPPED
            continue
        try:
            elapsed, first[name] = await _timed(run, data)
        except Exception as exc:  # noqa: BLE001 -- a broken contender fails the cell's correctness, not the run
            stats[name].error = f"{type(exc).__name__}: {exc}"[:200]
            continue
        if elapsed > SLOW_RUN:
            stats[name].times.append(elapsed)
            stats[name].rounds.append(-1)
        elapsed = max(elapsed, 1e-9)
        wanted = reps if name == "sdk" else max(reps, min(max_reps, int(seconds / elapsed)))
        limit[name] = 1 if name == "sdk" and w.sdk_slow else min(wanted, max(1, int(budget / elapsed)))
    order = list(limit)
    for rep in range(max(limit.values(), default=0)):
        k = rep % len(order) if order else 0
        for name in order[k:] + order[:k]:
            if len(stats[name].times) < limit[name] and not stats[name].error:
                try:
                    elapsed, _ = await _timed(runners[name], data)
                except Exception as exc:  # noqa: BLE001 -- reported in the correctness column
                    stats[name].error = f"{type(exc).__name__}: {exc}"[:200]
                    continue
                stats[name].times.append(elapsed)
                stats[name].rounds.append(rep)
    return stats, first
