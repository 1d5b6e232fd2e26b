"""The benchmark's --quick mode: every correctness cell must be "ok" (times are never checked)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "bench" / "run.py"


@pytest.mark.timeout(150)
@pytest.mark.skipif(importlib.util.find_spec("anthropic") is None, reason="the SDK (dev dependency) is the oracle")
def test_bench_quick_is_correct(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--quick",
            "--json",
            str(out),
            "--markdown",
            str(tmp_path / "quick.md"),
            "--plot",
            str(tmp_path / "scaling.png"),
        ],
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    assert out.exists(), f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    results = json.loads(out.read_text())
    verdicts = results["correctness"]
    sections = {v["section"] for v in verdicts}
    assert sections == {"main", "scaling", "many", "memory"}, sections
    failed = [v for v in verdicts if not v["value"].startswith("ok")]
    assert not failed, json.dumps(failed, indent=1)
    # every named workload and shape was checked, the tool_1m stand-in against the expected message
    cells = {v["cell"] for v in verdicts if v["section"] == "main"}
    names = ("text", "tool_10k", "tool_100k", "tool_1m", "thinking", "citations", "mixed")
    assert cells == {f"{n}/{s}" for n in names for s in ("live", "bulk")}
    assert any(v["value"] == "ok (= sdk)" for v in verdicts)
    assert any(v["value"] == "ok (= expected)" for v in verdicts)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_instruction_counting_driver_runs() -> None:
    """bench/instructions.py (what callgrind runs for BENCHMARKS.md's instruction counts)
    still runs each contender it offers."""
    script = RUN.parent / "instructions.py"
    for contender in ("ours", "floor_decode_async"):
        proc = subprocess.run(
            [sys.executable, str(script), contender, "live", "text:20", "--runs", "2"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
