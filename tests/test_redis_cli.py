"""``sse-pipeline submit`` / ``follow`` / ``worker`` as a user runs them: output and exit status.

(Worker processes under load, SIGKILL and Redis restarts: tests/test_redis_processes.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import anyio
import pytest

pytest.importorskip("coredis")

import pipeline  # noqa: E402
from pipeline.client import RetryPolicy  # noqa: E402
from pipeline.fake_server import FakeServer, Script  # noqa: E402
from pipeline.redis_jobs import RedisWorker  # noqa: E402
from pipeline.testing import StreamBuilder  # noqa: E402
from tests.redis_server import RedisServer, needs_redis, queue_name_fixture, redis_server_fixture  # noqa: E402, F401
from tests.test_cli import ENV, one_line_error  # noqa: E402
from tests.test_cli import cli as sync_cli  # noqa: E402

pytestmark = needs_redis


async def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    result = await anyio.run_process([sys.executable, "-m", "pipeline", *args], env={**ENV, **(env or {})}, check=False)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), result.stderr.decode())


async def test_submit_then_follow(redis_server: RedisServer, queue_name: str) -> None:
    body = StreamBuilder(seed=7).text_block(["Through ", "Redis ", "and back"]).build()
    where = ("--redis", redis_server.url, "--queue", queue_name)
    async with FakeServer([Script(body=body)]) as server:
        submitted = await cli("submit", *where, "--id", "cli-1", "--model", "claude-x", "hello")
        assert (submitted.returncode, submitted.stdout) == (0, "cli-1\n"), submitted.stderr
        client = pipeline.MessagesClient(api_key="k", base_url=server.url, retry=RetryPolicy(max_retries=0))
        worker = RedisWorker(redis_server.url, client=client, queue=queue_name, concurrency=2)
        async with client, anyio.create_task_group() as tg:
            await tg.start(worker.run)
            text = await cli("follow", *where, "cli-1")
            lines = await cli("follow", *where, "--events", "cli-1")
            worker.stop()
        (request,) = server.requests
    assert request.json["model"] == "claude-x" and request.json["messages"][0]["content"] == "hello"
    assert text.returncode == 0 and text.stdout.startswith("Through Redis and back\n[end_turn; "), text
    updates = [json.loads(line) for line in lines.stdout.splitlines()]
    assert updates[0] == {"kind": "AttemptStarted", "job_id": "cli-1", "attempt": 1, "worker": worker.name}
    assert updates[-1]["kind"] == "JobFinished" and updates[-1]["error"] is None
    assert updates[-1]["message"]["content"] == [{"type": "text", "text": "Through Redis and back"}]
    assert [u["event"]["text"] for u in updates if u["kind"] == "JobEvent" and u["event"]["type"] == "text"] == [
        "Through ", "Redis ", "and back",
    ]  # fmt: skip


async def test_follow_a_failed_job(redis_server: RedisServer, queue_name: str) -> None:
    where = ("--redis", redis_server.url, "--queue", queue_name)
    async with FakeServer([Script(status=400)]) as server:
        await cli("submit", *where, "--id", "bad", "hello")
        client = pipeline.MessagesClient(api_key="k", base_url=server.url)
        worker = RedisWorker(redis_server.url, client=client, queue=queue_name, concurrency=2)
        async with client, anyio.create_task_group() as tg:
            await tg.start(worker.run)
            result = await cli("follow", *where, "bad")
            worker.stop()
    assert "job bad failed: InvalidRequestError: 400 invalid_request_error" in one_line_error(result)


def test_errors_are_one_line(redis_server: RedisServer, queue_name: str) -> None:
    bad_url = sync_cli("submit", "--redis", "http://localhost", "hello")
    assert "expected a redis://HOST:PORT, rediss:// or unix:// URL, got 'http://localhost'" in one_line_error(bad_url)
    unknown = sync_cli("follow", "--redis", redis_server.url, "--queue", queue_name, "nope")
    assert one_line_error(unknown) == "sse-pipeline: error: no job 'nope' in the queue (never submitted, or expired)"
    no_key = sync_cli("worker", "--redis", redis_server.url)
    assert "no API key" in one_line_error(no_key)
    zero = sync_cli("worker", "--concurrency", "0")
    assert "expected a positive integer" in one_line_error(zero, status=2)
