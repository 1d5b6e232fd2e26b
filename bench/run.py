"""Benchmark sse-pipeline against the official SDK and the decode floor (issue 4).

Sections (all by default, see ``--sections``):

- ``main``: per-stream wall time of ``ours``, ``sdk``, ``floor_decode`` and
  ``floor_decode_async`` on every workload x chunk shape, interleaved in one process, with a
  correctness column (ours vs the SDK, or vs the generator's expected message when the SDK
  is skipped) and the BASELINE.md targets.
- ``scaling``: us/event of ours, the SDK and the floor from text:5000 to text:80000 and from
  tool:30000 to tool_1m (live), as a table and a PNG plot (needs matplotlib).
- ``many``: K concurrent paced streams in one event loop (fresh process per cell).
- ``memory``: peak RSS growth of one stream, text and tool_1m (fresh process per cell).

Examples::

    python bench/run.py --quick --markdown /tmp/quick.md
    python bench/run.py --markdown BENCHMARKS.md --json bench/results/full.json
    python bench/run.py --only text,tool_100k --shape live --reps 10 --sections main
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contenders import SdkClient, make_runners
from many_streams import run_many
from memory import run_memory
from plot import plot_scaling
from report import (
    fmt_time,
    machine,
    main_table,
    many_table,
    memory_table,
    scaling_table,
    targets,
)
from throughput import Cell, measure_cell, predict_skip, warm_up
from workloads import NAMED, SHAPES, make, parse_names

SECTIONS = ("main", "scaling", "many", "memory")
SCALING = [
    "text:5000",
    "text:10000",
    "text:20000",
    "text:40000",
    "text:80000",
    "tool:30000",
    "tool:100000",
    "tool:300000",
    "tool_1m",
]
SCALING_QUICK = ["text:100", "text:400", "tool:2000", "tool_1m"]
MANY_K = [100, 500, 1000, 2000, 5000]
MEMORY = ["text", "tool_1m"]
WARM = ["text:300", "tool:3000", "thinking:40", "citations:6"]


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny workloads, 1-2 reps, K=50 (CI correctness check)")
    p.add_argument("--only", type=parse_names, help=f"main-table workloads (default: {','.join(NAMED)})")
    p.add_argument("--shape", type=_list, default=list(SHAPES), help="chunk shapes: live,bulk (default both)")
    p.add_argument("--sections", type=_list, default=list(SECTIONS), help=f"default: {','.join(SECTIONS)}")
    p.add_argument("--reps", type=int, help="timed rounds per main-table cell (default 30; quick 2)")
    p.add_argument(
        "--seconds",
        type=float,
        help="main table: a contender with more than --reps runs in this many seconds gets them (default 2; quick 0)",
    )
    p.add_argument("--max-reps", type=int, default=300, help="main table: rounds at most (default 300)")
    p.add_argument("--scaling-reps", type=int, help="timed rounds per scaling cell (default 5; quick 1)")
    p.add_argument(
        "--budget",
        type=float,
        default=20.0,
        help="max seconds of samples per contender per cell, at least one sample (default 20)",
    )
    p.add_argument(
        "--with-slow-sdk",
        action="store_true",
        help="run the SDK once on tool_1m-sized cells (~200 s per stream) instead of skipping it",
    )
    p.add_argument("--many-k", type=lambda v: [int(x) for x in _list(v)], help="K values (default 100..5000; quick 50)")
    p.add_argument(
        "--sdk-max-k", type=int, default=1000, help="skip the SDK above this K once saturated (default 1000)"
    )
    p.add_argument(
        "--many-repeat",
        type=int,
        help="runs of each many-streams cell, medians reported (default 3; quick 2; the SDK runs once)",
    )
    p.add_argument("--markdown", type=Path, help="write the markdown report here")
    p.add_argument("--json", type=Path, help="write the raw results here")
    p.add_argument("--plot", type=Path, help="scaling plot path (default bench/scaling.png; none with --quick)")
    args = p.parse_args(argv)
    for shape in args.shape:
        if shape not in SHAPES:
            p.error(f"unknown shape {shape!r}")
    for section in args.sections:
        if section not in SECTIONS:
            p.error(f"unknown section {section!r}")
    args.only = args.only or list(NAMED)
    args.reps = args.reps or (2 if args.quick else 30)
    if args.seconds is None:
        args.seconds = 0.0 if args.quick else 2.0
    args.scaling_reps = args.scaling_reps or (1 if args.quick else 5)
    args.many_k = args.many_k or ([50] if args.quick else MANY_K)
    args.many_repeat = args.many_repeat or (2 if args.quick else 3)
    if args.plot is None and not args.quick:
        args.plot = ROOT / "bench" / "scaling.png"
    return args


_T0 = time.perf_counter()


def _log(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _progress(cell: Cell) -> None:
    parts = [f"{name} {s.skipped or s.error or fmt_time(s.median)}" for name, s in cell.stats.items()]
    _log(f"  {cell.workload}/{cell.shape}: " + ", ".join(parts) + f" -> {cell.correctness}")


async def throughput(args: argparse.Namespace) -> tuple[list[Cell], list[Cell]]:
    """The main table and the scaling cells, all in this process's event loop."""
    sdk = SdkClient()
    runners = make_runners(sdk)
    main: list[Cell] = []
    scaling: list[Cell] = []
    try:
        _log("warm-up")
        await warm_up(runners, [make(n) for n in WARM])
        if "main" in args.sections:
            _log(f"main table ({args.reps}-{args.max_reps} reps)")
            for name in args.only:
                w = make(name, quick=args.quick)
                for shape in args.shape:
                    main.append(
                        await measure_cell(
                            w,
                            shape,
                            runners,
                            reps=args.reps,
                            budget=args.budget,
                            with_slow_sdk=args.with_slow_sdk,
                            seconds=args.seconds,
                            max_reps=args.max_reps,
                        )
                    )
                    _progress(main[-1])
        if "scaling" in args.sections:
            _log(f"scaling ({args.scaling_reps} reps, live)")
            subset = {k: v for k, v in runners.items() if k in ("ours", "sdk", "floor_decode_async")}
            points: dict[str, list[tuple[int, float]]] = {"text": [], "tool": []}
            for name in SCALING_QUICK if args.quick else SCALING:
                w = make(name, quick=args.quick)
                kind = "tool" if name.startswith("tool") else "text"
                # the SDK grows ~n^1.3 on text and ~n^2 on tool input: skip it where a stream would take > 30 s
                skip = (
                    ""
                    if args.with_slow_sdk
                    else predict_skip(points[kind], w.wire_events, 2.0 if kind == "tool" else 1.3)
                )
                cell = await measure_cell(
                    w,
                    "live",
                    subset,
                    reps=args.scaling_reps,
                    budget=args.budget,
                    with_slow_sdk=args.with_slow_sdk,
                    sdk_skip=skip,
                )
                scaling.append(cell)
                sdk_median = cell.median("sdk")
                if sdk_median is not None:
                    points[kind].append((w.wire_events, sdk_median))
                _progress(cell)
    finally:
        await sdk.aclose()
    return main, scaling


METHOD = """\
Method: every contender consumes the same chunks of the same seeded body (`bench/workloads.py`), in one
asyncio event loop, GC enabled (`gc.collect()` between samples, outside the timing, after a `gc.freeze()` of the
set-up heap so that it is cheap). Per cell: one warm-up
run per contender (its result feeds the correctness column), then rounds of one run per contender, the order
rotating each round: `--reps` rounds, more for a contender that fits more runs in `--seconds` (up to
`--max-reps`; never the SDK). A contender whose warm-up exceeds 1 s keeps it as a sample and gets at most
`--budget` seconds of samples (`n=` shows the count when < 5). Ratios: "ours / floor" is the ratio of the
medians; "per round" is the median of ours' time over the floor's in each round both ran (the two runs are
seconds apart, so a slow spell of the machine weighs on both), with its interquartile range. The targets are
judged on the per-round ratio. Times are per stream, from opening it to having the final
message (`to_dict()` not timed); us/event divides by the SSE events on the wire (pings included). `ours` =
`pipeline.open_stream` over an async generator of the chunks with one sync `on_event` counting subscriber, then
`get_final_message()`; `sdk` = `AsyncAnthropic.messages.stream` over an `httpx2` mock transport (one client,
request building included), every event iterated, then `get_final_message()`; `floor_decode[_async]` =
`rfind(b"\\n\\n")` framing + `msgspec.json` decode of each payload, nothing else. Target ratios: ours /
floor_decode_async for `live` (one SSE event per chunk), ours / floor_decode for `bulk` (16 KiB chunks).
Correctness: our final `to_dict()` and derived-event count equal the SDK's, or, where the SDK is skipped,
the generator's expected message and event count (which the SDK matches wherever it runs)."""


def compose(
    args: argparse.Namespace,
    command: str,
    header: str,
    main: list[Cell],
    scaling: list[Cell],
    many: list[dict[str, Any]],
    memory: list[dict[str, Any]],
    plot_note: str,
    elapsed: float,
) -> str:
    out = ["# Benchmarks", ""]
    if args.quick:
        out += ["**--quick run: tiny workloads, 1-2 repetitions. Only the correctness columns mean anything.**", ""]
    out += ["## Setup", "", header, f"- Duration: {elapsed / 60:.1f} min", "", METHOD, ""]
    if main or many:
        out += ["## Targets (BASELINE.md, issue 4)", "", targets(main, many), ""]
    if main:
        out += ["## Per-stream time", "", main_table(main), ""]
    if scaling:
        out += ["## Scaling (live)", "", scaling_table(scaling), "", plot_note, ""]
        if args.plot and args.markdown and args.plot.exists():
            out += [f"![scaling]({os.path.relpath(args.plot, args.markdown.resolve().parent)})", ""]
    if many:
        out += ["## Many concurrent streams (one event loop, one core)", "", many_table(many), ""]
    if memory:
        out += [
            "## Memory (one stream, fresh process per cell)",
            "",
            memory_table(memory),
            "",
            (
                "Growth = VmHWM after the stream - VmRSS before it (peak reset via /proc/self/clear_refs), "
                "final message included."
            ),
            "",
        ]
    return "\n".join(out)


def correctness(
    main: list[Cell], scaling: list[Cell], many: list[dict[str, Any]], memory: list[dict[str, Any]]
) -> list[dict[str, str]]:
    """Every correctness verdict of the run (skipped cells have none)."""
    out = [
        {"section": sec, "cell": f"{c.workload}/{c.shape}", "value": c.correctness}
        for sec, cells in (("main", main), ("scaling", scaling))
        for c in cells
    ]
    out += [
        {"section": "many", "cell": f"{r['contender']}/K={r['k']}", "value": r["correctness"]}
        for r in many
        if not r.get("skipped")
    ]
    out += [
        {"section": "memory", "cell": f"{r['workload']}/{r['contender']}", "value": r["correctness"]}
        for r in memory
        if not r.get("skipped")
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rel = os.path.relpath(__file__, Path.cwd())
    command = " ".join(["python", shlex.quote(rel), *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    header = machine(command)
    start = time.perf_counter()
    main_cells, scaling = asyncio.run(throughput(args))
    many: list[dict[str, Any]] = []
    if "many" in args.sections:
        _log(f"many streams (K = {args.many_k})")
        many = run_many(
            args.many_k,
            ["ours", "sdk", "floor"],
            sdk_max_k=args.sdk_max_k,
            repeat=args.many_repeat,
            parallel=args.quick,
        )
    memory: list[dict[str, Any]] = []
    if "memory" in args.sections:
        _log("memory")
        memory = run_memory(
            MEMORY,
            ["ours", "sdk"],
            shape="live",
            quick=args.quick,
            with_slow_sdk=args.with_slow_sdk,
            parallel=args.quick,
        )
    plot_note = plot_scaling(scaling, args.plot) if scaling and args.plot else ""
    report = compose(args, command, header, main_cells, scaling, many, memory, plot_note, time.perf_counter() - start)
    print(report)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report + "\n", encoding="utf-8")
    verdicts = correctness(main_cells, scaling, many, memory)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "quick": args.quick,
                    "command": command,
                    "main": [c.to_json() for c in main_cells],
                    "scaling": [c.to_json() for c in scaling],
                    "many": many,
                    "memory": memory,
                    "correctness": verdicts,
                },
                indent=1,
            ),
            encoding="utf-8",
        )
    failed = [v for v in verdicts if not v["value"].startswith("ok")]
    for v in failed:
        _log(f"CORRECTNESS FAILURE {v['section']} {v['cell']}: {v['value']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
