"""Every example runs as a user would run it, and does what its docstring says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_every_example_is_tested() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == {
        "live_text.py",
        "redaction_stage.py",
        "tool_input.py",
        "tool_dispatcher.py",
        "worker_1000.py",
    }


def test_live_text() -> None:
    out = run_example("live_text.py")
    assert out.startswith("Streams arrive as server-sent events; sse-pipeline turns them into text, live. ")
    assert out.rstrip().endswith("[end_turn: 10 tokens in, 33 out]")


def test_redaction_stage() -> None:
    out = run_example("redaction_stage.py")
    assert "@" not in out
    assert out.rstrip().endswith("final: Write to [email] or to [email] today.")


def test_tool_input() -> None:
    out = run_example("tool_input.py").splitlines()
    assert out[-2] == "tool call complete: get_weather({'city': 'Zürich', 'unit': 'celsius', 'days': [1, 2, 3]})"
    assert out[-1] == "stop_reason: tool_use"
    assert sum(1 for line in out if "->" in line) > 3


def test_tool_dispatcher() -> None:
    assert run_example("tool_dispatcher.py") == (
        "Let me look that up.\n"
        "tool_use: 4 tool calls\n"
        "  toolu_01 get_weather({'city': 'Zürich'}) -> Zürich: sunny, 21 °C\n"
        "  toolu_02 get_weather({'city': 'Oslo'}) -> error: KeyError('Oslo')\n"
        "  toolu_03 convert({'amount': 120, 'currency': 'EUR'}) -> {'amount': 112.8, 'currency': 'CHF'}\n"
        "  toolu_04 book_flight({'to': 'Paris'}) -> error: UnknownToolError(\"no tool named 'book_flight'\")\n"
        "tool_result blocks for the next request: 4, 2 errors\n"
    )


@pytest.mark.parametrize("name", ["live_text", "redaction_stage", "tool_input", "tool_dispatcher"])
async def test_examples_accept_any_source(name: str) -> None:
    """Each example's main() takes a source, so it works on any chunking of the body."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        module = __import__(name)
    finally:
        sys.path.remove(str(EXAMPLES))
    from pipeline.testing import aiter_chunks, chunk_bytes

    chunks = [chunk async for chunk in module.demo_source()]
    by_bytes = chunk_bytes(b"".join(chunks), 3)
    assert await module.main(aiter_chunks(by_bytes)) == await module.main(aiter_chunks(chunks))
