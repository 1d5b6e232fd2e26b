"""The command line, run as a user runs it: a subprocess, its output and exit status."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from pipeline.cli.commands import freeze_startup_heap
from pipeline.fake_server import FakeServer, Script
from pipeline.testing import StreamBuilder, text_body

ENV = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**ENV, **(env or {})},
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    assert result.returncode == status, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sse-pipeline: error: ")
    return lines[0]


def test_demo_runs_many_streams() -> None:
    result = cli("demo", "--streams", "30", "--rate", "2000")
    assert result.returncode == 0, result.stderr
    assert "streams ok: 30, failed: 0" in result.stdout
    assert "time to first token: p50 " in result.stdout
    assert "Traceback" not in result.stderr


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, str]:
    builder = StreamBuilder(seed=2).text_block(["Hello", ", ", "recorded", " world"])
    path = tmp_path / "hello.sse"
    path.write_bytes(builder.build())
    return path, "Hello, recorded world"


def test_replay_prints_text(recorded: tuple[Path, str]) -> None:
    path, text = recorded
    result = cli("replay", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == text + "\n"


def test_replay_json_and_events(recorded: tuple[Path, str]) -> None:
    path, text = recorded
    message = json.loads(cli("replay", "--json", str(path)).stdout)
    assert message["content"] == [{"type": "text", "text": text}]
    lines = cli("replay", "--events", str(path)).stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["type"] for e in events][:2] == ["message_start", "content_block_start"]
    assert events[-1]["type"] == "message_stop" and events[-1]["message"] == message


def test_replay_errors_are_one_line(tmp_path: Path) -> None:
    assert "no such file" in one_line_error(cli("replay", str(tmp_path / "missing.sse")))
    broken = tmp_path / "broken.sse"
    broken.write_bytes(text_body(5)[:-200])
    assert "stream ended without message_stop" in one_line_error(cli("replay", str(broken)))
    garbage = tmp_path / "garbage.sse"
    garbage.write_bytes(b"event: message_start\ndata: {not json\n\n")
    assert "cannot decode message_start event" in one_line_error(cli("replay", str(garbage)))


def test_bad_arguments_are_one_line() -> None:
    assert "invalid choice" in one_line_error(cli("fly"), status=2)
    assert "expected a positive integer" in one_line_error(cli("demo", "--streams", "0"), status=2)


async def test_serve_fake_port_in_use() -> None:
    async with FakeServer() as server:
        result = await anyio.run_process(
            [sys.executable, "-m", "pipeline", "serve-fake", "--port", str(server.port)], env=ENV, check=False
        )
    completed = subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )
    assert "cannot listen on 127.0.0.1:" in one_line_error(completed)


def test_run_needs_a_key() -> None:
    assert "no API key" in one_line_error(cli("run", "hello"))


def test_run_unreachable_server() -> None:
    result = cli("run", "--base-url", "http://127.0.0.1:9", "hello", env={"ANTHROPIC_API_KEY": "k"})
    assert "cannot reach http://127.0.0.1:9" in one_line_error(result)


async def test_run_against_the_fake_server() -> None:
    body = StreamBuilder(seed=5).text_block(["Fake ", "server ", "says hi"]).build()
    async with FakeServer([Script(body=body)]) as server:
        result = await anyio.run_process(
            [sys.executable, "-m", "pipeline", "run", "--base-url", server.url, "--model", "claude-x", "hello"],
            env={**ENV, "ANTHROPIC_API_KEY": "sk-test"},
            check=False,
        )
        (request,) = server.requests
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().startswith("Fake server says hi\n[end_turn;")
    assert request.json["model"] == "claude-x"
    assert request.headers["x-api-key"] == "sk-test"


async def test_serve_fake_answers_requests() -> None:
    async with await anyio.open_process(
        [sys.executable, "-m", "pipeline", "serve-fake", "--port", "0"], env=ENV
    ) as process:
        assert process.stdout is not None
        with anyio.fail_after(20):
            line = b""
            async for data in process.stdout:
                line += data
                if b"\n" in line:
                    break
        url = line.decode().split()[4]
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"{url}/v1/messages",
                headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "stream": True},
            )
        process.terminate()
    assert answer.status_code == 200
    assert b"event: message_stop" in answer.content


def test_freeze_startup_heap_hides_the_import_heap_from_full_collections() -> None:
    """What `demo` and `worker` do before serving: the objects so far leave the GC's walk."""
    before = len(gc.get_objects())
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= before // 2
        assert len(gc.get_objects()) < before // 2
    finally:
        gc.unfreeze()
    assert len(gc.get_objects()) >= before // 2
