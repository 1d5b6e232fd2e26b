"""The benchmark's bookkeeping: rounds per contender, per-round ratios and the verdicts built
on them (no time is checked: the runners here are fakes whose times the tests set)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from contenders import Outcome  # noqa: E402 -- bench/ is a script folder, not a package
from report import cell_target, per_round, verdicts  # noqa: E402
from throughput import Cell, Stat, measure_cell  # noqa: E402
from workloads import make  # noqa: E402

pytestmark = pytest.mark.anyio


def _cell(shape: str, ours: dict[int, float], floor: dict[int, float]) -> Cell:
    floor_name = "floor_decode_async" if shape == "live" else "floor_decode"
    stats = {
        "ours": Stat(times=list(ours.values()), rounds=list(ours)),
        floor_name: Stat(times=list(floor.values()), rounds=list(floor)),
    }
    return Cell("text", shape, "", 100, 10, stats, "ok (= sdk)")


def test_paired_ratios_match_rounds_not_positions() -> None:
    # ours missed round 2, the floor round 4: only rounds 0, 1, 3 pair up
    cell = _cell("live", {0: 2.0, 1: 3.0, 3: 8.0, 4: 9.0}, {0: 1.0, 1: 2.0, 2: 5.0, 3: 4.0})
    assert cell.paired("ours", "floor_decode_async") == [2.0, 1.5, 2.0]
    assert cell.paired("ours", "sdk") == []


def test_the_warm_up_sample_is_never_paired() -> None:
    cell = _cell("live", {-1: 10.0, 0: 2.0}, {-1: 1.0, 0: 2.0})
    assert cell.paired("ours", "floor_decode_async") == [1.0]


def test_a_slow_spell_in_some_rounds_does_not_move_the_per_round_ratio() -> None:
    # the machine runs 3x slower from the middle of round 4 to the end of round 9: ours ran
    # after the floor in round 4, so six of ours' twelve samples are slow, five of the floor's
    ours = {r: 1.4 * (3 if 4 <= r < 10 else 1) for r in range(12)}
    floor = {r: 1.0 * (3 if 5 <= r < 10 else 1) for r in range(12)}
    cell = _cell("live", ours, floor)
    paired = cell.paired_ratio("ours", "floor_decode_async")
    assert paired is not None
    median, q1, q3 = paired
    assert median == pytest.approx(1.4)
    assert q1 <= median <= q3
    ratio, limit, ok = cell_target(cell)
    assert (ratio, limit, ok) == (median, 1.5, True)
    # the ratio of medians takes ours' median from a slow sample, the floor's from fast ones
    assert cell.ratio("ours", "floor_decode_async") == pytest.approx((1.4 + 4.2) / 2)
    assert per_round(cell, "floor_decode_async").startswith("1.40x (")


def test_too_few_rounds_fall_back_to_the_ratio_of_medians() -> None:
    cell = _cell("bulk", {0: 3.0, 1: 5.0}, {0: 1.0, 1: 2.0})
    assert cell.paired_ratio("ours", "floor_decode") is None
    assert per_round(cell, "floor_decode") == "-"
    ratio, limit, ok = cell_target(cell)
    assert ratio == pytest.approx(4.0 / 1.5)
    assert (limit, ok) == (2.0, False)
    (target, measured, verdict), *_ = verdicts([cell], [])
    assert target == "text / bulk: ours <= 2.0x floor_decode"
    assert (measured, verdict) == ("2.67x", False)


def test_verdicts_show_the_per_round_ratio_and_its_spread() -> None:
    cell = _cell("bulk", {r: 1.9 for r in range(6)}, {r: 1.0 for r in range(6)})
    (_, measured, verdict), *_ = verdicts([cell], [])
    assert (measured, verdict) == ("1.90x (1.90-1.90)", True)


async def _measure(names: tuple[str, ...], shape: str, **options: Any) -> tuple[Cell, list[str]]:
    """measure_cell over fake runners of *names*; also which ran, in order."""
    calls: list[str] = []

    def fake(name: str) -> Any:
        async def run(data: Sequence[bytes]) -> Outcome:
            calls.append(name)
            return Outcome(events=0)

        return run

    runners = {name: fake(name) for name in names}
    cell = await measure_cell(make("text", quick=True), shape, runners, budget=60.0, with_slow_sdk=False, **options)
    return cell, calls


async def test_quick_contenders_get_more_rounds_but_the_sdk_never() -> None:
    # a fake run takes microseconds: 60 s would hold millions
    cell, calls = await _measure(("ours", "sdk", "floor_decode"), "bulk", reps=3, seconds=60.0, max_reps=7)
    # a warm-up run each, then rounds: the SDK stops at reps, the others at max_reps
    assert calls.count("sdk") == 1 + 3
    assert calls.count("ours") == calls.count("floor_decode") == 1 + 7
    assert cell.stats["ours"].rounds == list(range(7))
    assert cell.stats["sdk"].rounds == [0, 1, 2]
    assert len(cell.paired("ours", "floor_decode")) == 7
    assert len(cell.paired("ours", "sdk")) == 3


async def test_without_seconds_every_contender_gets_reps_rounds() -> None:
    cell, calls = await _measure(("ours", "floor_decode_async"), "live", reps=4, max_reps=300)
    assert calls.count("ours") == calls.count("floor_decode_async") == 1 + 4
    assert [len(s.times) for s in cell.stats.values()] == [4, 4]


def _run(contender: str, k: int, cpu: float, p99: float, correctness: str = "ok") -> dict[str, Any]:
    return {
        "contender": contender, "k": k, "events": 206 * k, "wall_s": 5.0, "cpu_s": cpu * 206 * k / 1e6,
        "cpu_wall": cpu * 206 * k / 5e6, "cpu_us_per_event": cpu, "p50_s": p99 / 4, "p99_s": p99, "max_s": p99 * 2,
        "rss_per_stream_kib": 12.0, "correctness": correctness,
    }  # fmt: skip


def test_many_streams_cells_report_the_medians_of_their_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each cell runs `repeat` times, round by round with the contenders' order rotated;
    the SDK runs once; the row holds the median of each figure, the verdict says how many
    runs met the p99 target, and ours is paired with the floor's run of the same round."""
    import many_streams
    import memory
    from report import many_table

    cpu = {("ours", 0): 20.0, ("ours", 1): 16.0, ("ours", 2): 18.0, ("floor", 0): 16.0, ("floor", 1): 16.0,
           ("floor", 2): 12.0, ("sdk", 0): 150.0}  # fmt: skip
    p99 = {("ours", 0): 0.030, ("ours", 1): 0.002, ("ours", 2): 0.003}
    calls: list[tuple[str, int]] = []
    rounds: dict[str, int] = {}

    def fake_children(commands: list[list[str]], *, parallel: bool, timeout: float) -> list[tuple[Any, str]]:
        out = []
        for cmd in commands:
            contender, k = cmd[1], int(cmd[2])
            calls.append((contender, k))
            n = rounds[contender] = rounds.get(contender, -1) + 1
            out.append((_run(contender, k, cpu[contender, n], p99.get((contender, n), 0.002)), ""))
        return out

    monkeypatch.setattr(memory, "run_children", fake_children)
    rows = many_streams.run_many([1000], ["ours", "sdk", "floor"], sdk_max_k=1000, repeat=3)
    assert calls == [("ours", 1000), ("sdk", 1000), ("floor", 1000), ("floor", 1000), ("ours", 1000),
                     ("floor", 1000), ("ours", 1000)]  # fmt: skip
    ours = next(r for r in rows if r["contender"] == "ours")
    assert len(ours["runs"]) == 3 and ours["cpu_us_per_event"] == 18.0 and ours["p99_s"] == 0.003
    assert ours["correctness"] == "ok"
    assert many_streams.paired_ratios(rows, 1000) == [20 / 16, 16 / 16, 18 / 12]
    (verdict,) = [v for v in verdicts([], rows) if v[0].startswith("p99")]
    assert verdict[1:] == ("3.000 ms (2 of 3 runs within)", True)
    text = many_table(rows)
    assert "ours / floor, CPU per event" in text and "K = 1,000: 1.25x (1.00-1.50)" in text
    assert "30.0 ms, 2.000 ms, 3.000 ms" in text


def test_a_failed_run_fails_its_many_streams_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    import many_streams
    import memory

    results = iter([(_run("ours", 50, 10.0, 0.001), ""), (None, "FAIL: child exited 1: boom"),
                    (_run("ours", 50, 10.0, 0.001, "FAIL: 9/10 streams complete"), "")])  # fmt: skip
    monkeypatch.setattr(memory, "run_children", lambda cmds, **_: [next(results) for _ in cmds])
    (row,) = many_streams.run_many([50], ["ours"], sdk_max_k=1000, repeat=3)
    assert row["correctness"] == "FAIL: child exited 1: boom" and len(row["runs"]) == 2
