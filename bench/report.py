"""Markdown tables, machine description and target verdicts of a benchmark run."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from many_streams import DELTAS, RATE, SATURATED_CPU, SATURATED_P99, SPREAD, paired_ratios, saturated
from throughput import Cell

__all__ = ["machine", "main_table", "many_table", "memory_table", "scaling_table", "targets", "verdicts"]

ROOT = Path(__file__).resolve().parents[1]
LIVE_TARGET, BULK_TARGET = 1.5, 2.0
TOOL_1M_TARGET, TOOL_1M_BASELINE = 1.0, 0.3
STREAMS_TARGET, P99_TARGET_K, P99_TARGET, RSS_TARGET_KIB = 2000, 1000, 0.005, 8.0


def fmt_time(s: float | None) -> str:
    """Seconds as a short human figure (``0.941 ms``, ``18.6 ms``, ``807 ms``, ``196.6 s``)."""
    if s is None:
        return "-"
    if s >= 10:
        return f"{s:.1f} s"
    ms = s * 1e3
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 10 else f"{ms:.3f} ms"


def fmt_num(x: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if x is None else f"{x:,.{digits}f}{suffix}"


def table(head: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """A markdown table; *right* marks right-aligned columns."""
    align = right or [False] + [True] * (len(head) - 1)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if r else "---" for r in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine(command: str) -> str:
    """The run's context: CPU, cores, load, Python, library versions, commit, command."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        commit = (
            subprocess.run(
                ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
            ).stdout.strip()
            or "unknown"
        )
    except OSError:
        commit = "unknown"
    versions = ", ".join(
        f"{d} {_version(d)}" for d in ("sse-pipeline", "anthropic", "httpx2", "msgspec", "jiter", "anyio")
    )
    return "\n".join(
        [
            f"- Machine: {cpu}, {os.cpu_count()} cores ({usable} usable), load average at start {load}",
            f"- Python {platform.python_version()} ({platform.python_implementation()}), {platform.platform()}",
            f"- Versions: {versions}",
            f"- Commit: {commit}",
            f"- Command: `{command}`",
        ]
    )


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else "pass" if ok else "**miss**"


def cell_target(cell: Cell) -> tuple[float | None, float, bool | None]:
    """(ours/floor ratio, target, pass?) of a main-table cell: the per-round ratio's median
    where the cell has enough rounds, else the ratio of the medians."""
    limit = LIVE_TARGET if cell.shape == "live" else BULK_TARGET
    paired = cell.paired_ratio("ours", cell.floor_name())
    ratio = paired[0] if paired else cell.ratio("ours", cell.floor_name())
    return ratio, limit, None if ratio is None else ratio <= limit


def per_round(cell: Cell, other: str) -> str:
    """ours / *other* per round: "median (lower-upper quartile)", or "-"."""
    paired = cell.paired_ratio("ours", other)
    if paired is None:
        return "-"
    median, q1, q3 = paired
    return f"{median:.2f}x ({q1:.2f}-{q3:.2f})"


def main_table(cells: Sequence[Cell]) -> str:
    head = [
        "workload",
        "shape",
        "SSE events",
        "ours median / min",
        "ours us/ev",
        "sdk median / min",
        "sdk us/ev",
        "floor_decode",
        "floor_decode_async",
        "floor us/ev",
        "ours / sdk",
        "ours / floor",
        "per round (IQR)",
        "target",
        "correctness",
    ]
    rows = []
    for c in cells:

        def mm(name: str, c: Cell = c) -> str:
            s = c.stats.get(name)
            if s is None:
                return "-"
            if s.skipped or s.error:
                return s.skipped or "error"
            n = f" (n={len(s.times)})" if len(s.times) < 5 else ""
            return f"{fmt_time(s.median)} / {fmt_time(s.min)}{n}"

        _, limit, ok = cell_target(c)
        ours_sdk = c.ratio("ours", "sdk")
        rows.append(
            [
                c.workload + (f" ({c.note})" if c.note else ""),
                c.shape,
                f"{c.wire_events:,}",
                mm("ours"),
                fmt_num(c.us_per_event("ours")),
                mm("sdk"),
                fmt_num(c.us_per_event("sdk")),
                mm("floor_decode"),
                mm("floor_decode_async"),
                fmt_num(c.us_per_event(c.floor_name())),
                "-" if ours_sdk is None else f"1/{1 / ours_sdk:,.0f}" if ours_sdk < 1 else f"{ours_sdk:.2f}x",
                fmt_num(c.ratio("ours", c.floor_name()), 2, "x"),
                per_round(c, c.floor_name()),
                f"<= {limit}x {_verdict(ok)}",
                c.correctness,
            ]
        )
    right = [False, False] + [True] * 12 + [False]
    return table(head, rows, right)


def scaling_table(cells: Sequence[Cell]) -> str:
    head = [
        "workload",
        "bytes",
        "SSE events",
        "ours us/ev",
        "sdk us/ev",
        "floor_decode_async us/ev",
        "sdk / ours",
        "ours / floor",
        "correctness",
    ]
    rows = []
    for c in cells:
        sdk = c.stats.get("sdk")
        sdk_cell = sdk.skipped if sdk and sdk.skipped else fmt_num(c.us_per_event("sdk"), 1)
        if sdk and sdk.times and len(sdk.times) < 3:
            sdk_cell += f" (n={len(sdk.times)})"
        ratio = c.ratio("sdk", "ours")
        rows.append(
            [
                c.workload + (f" ({c.note})" if c.note else ""),
                f"{c.bytes:,}",
                f"{c.wire_events:,}",
                fmt_num(c.us_per_event("ours")),
                sdk_cell,
                fmt_num(c.us_per_event("floor_decode_async")),
                fmt_num(ratio, 0, "x"),
                fmt_num(c.ratio("ours", "floor_decode_async"), 2, "x"),
                c.correctness,
            ]
        )
    return table(head, rows, [False] + [True] * 7 + [False])


def many_table(rows_in: Sequence[dict[str, Any]]) -> str:
    head = [
        "contender",
        "K",
        "SSE events",
        "wall",
        "cpu/wall",
        "CPU us/event",
        "due->seen p50 / p99 / max",
        "p99 of each run",
        "RSS per stream",
        "saturated",
        "correctness",
    ]
    rows = []
    for r in rows_in:
        if r.get("skipped") or r.get("cpu_wall") is None:
            rows.append([r["contender"], f"{r['k']:,}"] + ["-"] * 8 + [r.get("skipped") or r.get("correctness", "")])
            continue
        lat = " / ".join(fmt_time(r[k]) for k in ("p50_s", "p99_s", "max_s"))
        each = ", ".join(fmt_time(run["p99_s"]) for run in r.get("runs", ()))
        rows.append(
            [
                r["contender"],
                f"{r['k']:,}",
                f"{r['events']:,}",
                fmt_time(r["wall_s"]),
                f"{r['cpu_wall']:.2f}",
                f"{r['cpu_us_per_event']:.1f}",
                lat,
                each,
                f"{r['rss_per_stream_kib']:.1f} KiB",
                "**yes**" if saturated(r) else "no",
                r["correctness"],
            ]
        )
    notes = (
        f"\n\nEach stream: text:{DELTAS} ({DELTAS} text deltas, 206 SSE events, one per chunk) at "
        f"{RATE:.0f} events/s, starts spread over {SPREAD:.0f} s; one asyncio loop, one fresh process per run. "
        f"Each figure is the median of the cell's runs ({_runs(rows_in)}), taken round by round: in each round "
        "every K, and at each K the contenders one after the other, in an order rotated each round. "
        f"Saturated: cpu/wall >= {SATURATED_CPU} or p99 > {SATURATED_P99 * 1e3:.0f} ms (medians). "
        "`floor` = the paced body framed and decoded with msgspec only (the harness's own cost)."
    )
    return (
        table(head, rows, [False] + [True] * 8 + [False, False])
        + notes
        + "\n\n"
        + _saturation(rows_in)
        + _paired(rows_in)
    )


def _runs(rows: Sequence[dict[str, Any]]) -> str:
    counts = {c: {len(r.get("runs", ())) for r in rows if r["contender"] == c and r.get("runs")} for c in _names(rows)}
    return ", ".join(f"{c} {'/'.join(map(str, sorted(n)))}" for c, n in counts.items() if n)


def _names(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["contender"] for r in rows))


def _paired(rows: Sequence[dict[str, Any]]) -> str:
    """Ours' CPU per event over the floor's, run by run (the two runs of a round)."""
    parts = []
    for k in sorted({r["k"] for r in rows}):
        ratios = paired_ratios(rows, k)
        if ratios:
            spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""
            parts.append(f"K = {k:,}: {statistics.median(ratios):.2f}x{spread}")
    if not parts:
        return ""
    return (
        "\n- ours / floor, CPU per event, the two runs of each round paired (median, range): " + "; ".join(parts) + "."
    )


def _saturation(rows: Sequence[dict[str, Any]]) -> str:
    lines = []
    for contender in _names(rows):
        mine = [r for r in rows if r["contender"] == contender and r.get("cpu_wall") is not None]
        first = next((r for r in mine if saturated(r)), None)
        ok = [r for r in mine if not saturated(r)]
        est = ""
        if ok:
            best = max(ok, key=lambda r: r["k"])
            capacity = 1 / (RATE * best["cpu_us_per_event"] * 1e-6)
            est = (
                f"; largest unsaturated K = {best['k']:,} (cpu/wall {best['cpu_wall']:.2f}); "
                f"CPU-bound capacity = 1 / ({RATE:.0f} events/s x CPU per event there) ~ {capacity:,.0f} streams/core"
            )
        where = f"saturates one core at K = {first['k']:,}" if first else "did not saturate at any measured K"
        lines.append(f"- {contender}: {where}{est}.")
    return "\n".join(lines)


def memory_table(rows_in: Sequence[dict[str, Any]]) -> str:
    head = ["workload", "shape", "contender", "body", "peak RSS growth", "growth / body", "correctness"]
    rows = []
    for r in rows_in:
        name = r["workload"] + (f" ({r['note']})" if r.get("note") else "")
        body = f"{r['bytes'] / 2**20:.2f} MiB"
        if r.get("growth_kib") is None:
            rows.append(
                [name, r["shape"], r["contender"], body, r.get("skipped") or "-", "-", r.get("correctness", "")]
            )
            continue
        growth = r["growth_kib"] * 1024
        rows.append(
            [
                name,
                r["shape"],
                r["contender"],
                body,
                f"{growth / 2**20:.2f} MiB",
                f"{growth / r['bytes']:.2f}x",
                r["correctness"],
            ]
        )
    return table(head, rows, [False, False, False, True, True, True, False])


def verdicts(cells: Sequence[Cell], many: Sequence[dict[str, Any]]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, pass?) for every target of BASELINE.md / issue 4 that was measured."""
    out: list[tuple[str, str, bool | None]] = []
    for c in cells:
        ratio, limit, ok = cell_target(c)
        floor = c.floor_name()
        measured = per_round(c, floor) if c.paired_ratio("ours", floor) else fmt_num(ratio, 2, "x")
        out.append((f"{c.workload} / {c.shape}: ours <= {limit}x {floor}", measured, ok))
    for c in cells:
        if c.workload == "tool_1m" and not c.note:
            m = c.median("ours")
            for limit, src in ((TOOL_1M_TARGET, "issue 4"), (TOOL_1M_BASELINE, "BASELINE.md")):
                out.append(
                    (f"tool_1m / {c.shape}: ours < {limit} s ({src})", fmt_time(m), None if m is None else m < limit)
                )
    ours = [r for r in many if r["contender"] == "ours" and r.get("cpu_wall") is not None]
    big = [r for r in ours if r["k"] >= STREAMS_TARGET]
    if big:
        r = min(big, key=lambda r: r["k"])
        out.append(
            (
                f">= {STREAMS_TARGET:,} paced streams per core before saturation",
                f"K={r['k']:,}: cpu/wall {r['cpu_wall']:.2f}, p99 {fmt_time(r['p99_s'])}",
                not saturated(r),
            )
        )
    for r in ours:
        if r["k"] == P99_TARGET_K:
            runs = [run["p99_s"] for run in r.get("runs", ())]
            within = f" ({sum(p <= P99_TARGET for p in runs)} of {len(runs)} runs within)" if len(runs) > 1 else ""
            out.append(
                (
                    f"p99 due->seen <= {P99_TARGET * 1e3:.0f} ms at K = {P99_TARGET_K:,}",
                    f"{fmt_time(r['p99_s'])}{within}",
                    r["p99_s"] <= P99_TARGET,
                )
            )
    for r in ours:
        if r["k"] >= P99_TARGET_K:
            out.append(
                (
                    f"<= {RSS_TARGET_KIB:.0f} KiB RSS per stream (K = {r['k']:,})",
                    f"{r['rss_per_stream_kib']:.1f} KiB",
                    r["rss_per_stream_kib"] <= RSS_TARGET_KIB,
                )
            )
    return out


def targets(cells: Sequence[Cell], many: Sequence[dict[str, Any]]) -> str:
    rows = [[name, measured, _verdict(ok)] for name, measured, ok in verdicts(cells, many)]
    return table(["target", "measured", "verdict"], rows, [False, True, False])
