"""Peak RSS growth of one stream (``ours`` vs the SDK), one fresh subprocess per cell.

The parent writes the body to a file; the child reads and chunks it (keeping the body alive,
so setting up does not leave a peak above the resident size), warms the contender up on a
small body, resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), reads ``VmRSS``,
runs the stream once and reads ``VmHWM``. Growth = ``VmHWM`` after - ``VmRSS`` before; it
includes the final message the contender returns.

Child usage: ``python bench/memory.py CONTENDER BODY_FILE SHAPE`` (prints one JSON line).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["reset_peak", "run_children", "run_memory", "status_kib"]

HERE = Path(__file__).resolve().parent


def status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in KiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); ``False`` if not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def run_children(
    commands: list[list[str]], *, parallel: bool, timeout: float
) -> list[tuple[dict[str, Any] | None, str]]:
    """Run ``python *command`` children (all at once if *parallel*); each gives (its JSON line, error)."""

    def start(cmd: list[str]) -> subprocess.Popen[str]:
        print(f"  {' '.join(cmd)}", file=sys.stderr, flush=True)
        return subprocess.Popen([sys.executable, *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(proc: subprocess.Popen[str]) -> tuple[dict[str, Any] | None, str]:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return None, f"FAIL: child timed out after {timeout:.0f} s"
        if proc.returncode != 0 or not out.strip():
            return None, f"FAIL: child exited {proc.returncode}: {err[-300:]}"
        return json.loads(out.strip().splitlines()[-1]), ""

    if parallel:
        return [finish(p) for p in [start(cmd) for cmd in commands]]
    return [finish(start(cmd)) for cmd in commands]


async def _child(contender: str, body_file: str, shape: str) -> dict[str, Any]:
    from contenders import SdkClient, run_ours
    from workloads import chunks, make

    body = Path(body_file).read_bytes()  # noqa: ASYNC240 - before the measurement starts
    data = chunks(body, shape)
    sdk = SdkClient() if contender == "sdk" else None
    run = sdk.run if sdk is not None else run_ours
    small = chunks(make("text:50").body, shape)
    for _ in range(3):
        await run(small)
    gc.collect()
    reset = reset_peak()
    before = status_kib("VmRSS")
    outcome = await run(data)
    peak = status_kib("VmHWM")
    return {
        "rss_before_kib": before,
        "peak_kib": peak,
        "growth_kib": peak - before,
        "events": outcome.events,
        "peak_reset": reset,
    }


def run_memory(
    workloads: list[str],
    contenders: list[str],
    *,
    shape: str,
    quick: bool,
    with_slow_sdk: bool,
    parallel: bool = False,
    timeout: float = 900,
) -> list[dict[str, Any]]:
    """Measure every (workload, contender) cell in a fresh subprocess; one row per cell."""
    from throughput import SDK_SKIPPED
    from workloads import make

    rows: list[dict[str, Any]] = []
    todo: list[tuple[dict[str, Any], list[str], int]] = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        for i, name in enumerate(workloads):
            w = make(name, quick=quick)
            body_file = Path(tmp) / f"body{i}.sse"
            body_file.write_bytes(w.body)
            for contender in contenders:
                row: dict[str, Any] = {
                    "workload": name,
                    "note": w.note,
                    "shape": shape,
                    "contender": contender,
                    "bytes": len(w.body),
                    "skipped": "",
                    "growth_kib": None,
                    "correctness": "",
                }
                rows.append(row)
                if contender == "sdk" and w.sdk_slow and not with_slow_sdk:
                    row["skipped"] = SDK_SKIPPED
                else:
                    todo.append((row, [str(HERE / "memory.py"), contender, str(body_file), shape], w.derived_events))
        results = run_children([cmd for _, cmd, _ in todo], parallel=parallel, timeout=timeout)
    for (row, _, want), (result, error) in zip(todo, results, strict=True):
        if result is None:
            row["correctness"] = error
            continue
        row.update(result)
        row["correctness"] = "ok (event count)" if row["events"] == want else f"FAIL: {row['events']} events != {want}"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("contender", choices=["ours", "sdk"])
    parser.add_argument("body_file")
    parser.add_argument("shape", choices=["live", "bulk"])
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_child(args.contender, args.body_file, args.shape))))


if __name__ == "__main__":
    main()
