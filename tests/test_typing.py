"""The framework and the plugins type-check under ``mypy --strict`` and pass ruff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_module(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ARGS`` in the project's root; capture what it prints."""
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_mypy_strict() -> None:
    result = run_module("mypy", "--strict", "--no-incremental", "pipeline", "plugins", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    result = run_module("ruff", "check", "pipeline", "plugins", "tests", "examples", "bench", "fuzz", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
