"""The client side against a Redis it cannot use: a closed port, a peer that never answers,
a server that is not Redis. ``submit`` and ``follow`` end with one line on stderr, within
``--redis-timeout``; the worker keeps its retry warnings.

Wall times are asserted only as what a user sees: the default waits for its few seconds
(a lower bound, which load cannot break), a short timeout ends well before that.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

pytest.importorskip("coredis")

import coredis.exceptions  # noqa: E402

import pipeline  # noqa: E402
from pipeline.redis_jobs import RedisUnavailableError, open_queue  # noqa: E402
from pipeline.redis_jobs import conn as redis_conn  # noqa: E402
from tests.test_cli import ENV, one_line_error  # noqa: E402

DEFAULT_TIMEOUT = 3.0  # the CLI's --redis-timeout default
CEILING = 2.5  # seconds: a 0.5 s timeout plus interpreter start, far from the default


def closed_port() -> int:
    """A loopback port that refuses connections (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(name="silent_port")
def silent_port_fixture() -> Iterator[int]:
    """A loopback port whose connections are accepted by the kernel and never answered
    (as a stopped Redis, or a stalled link, behaves)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=30, env=ENV, check=False
    )
    return result, time.monotonic() - started


def unreachable(port: int) -> str:
    return f"sse-pipeline: error: cannot reach Redis at redis://127.0.0.1:{port}: "


def test_submit_fails_after_the_default_timeout_with_one_line() -> None:
    """Against a closed port, submit retries for the default timeout, prints no retry
    warnings, then one line naming the Redis it could not reach."""
    port = closed_port()
    result, elapsed = run_cli("submit", "--redis", f"redis://127.0.0.1:{port}", "hello")
    line = one_line_error(result)
    assert line.startswith(unreachable(port)) and "Unable to establish a connection" in line
    assert result.stdout == "" and "redis_retry" not in result.stderr
    assert elapsed >= DEFAULT_TIMEOUT


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("command", [("submit", "hello"), ("follow", "job-1")])
def test_a_short_redis_timeout_fails_sooner(command: tuple[str, str], backend: str) -> None:
    """--redis-timeout 0.5 ends submit and follow with the same one line, well before the default."""
    port = closed_port()
    verb, argument = command
    result, elapsed = run_cli(
        "--backend", backend, verb, "--redis", f"redis://127.0.0.1:{port}", "--redis-timeout", "0.5", argument
    )
    assert one_line_error(result).startswith(unreachable(port))
    assert elapsed < CEILING


def test_a_peer_that_never_answers_is_bounded_too(silent_port: int) -> None:
    """A connection accepted and never answered (the handshake waits) fails within the timeout,
    where it used to hang."""
    result, elapsed = run_cli("submit", "--redis", f"redis://127.0.0.1:{silent_port}", "--redis-timeout", "0.5", "hi")
    assert one_line_error(result).startswith(unreachable(silent_port))
    assert elapsed < CEILING


async def test_not_a_redis_server_is_one_line() -> None:
    """A URL that reaches a server speaking another protocol fails at once with one line,
    not a traceback."""

    async def answer_http(stream: SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, answer_http)
        port = listener.extra(SocketAttribute.local_port)
        result = await anyio.run_process(
            [sys.executable, "-m", "pipeline", "submit", "--redis", f"redis://127.0.0.1:{port}", "hi"],
            env=ENV, check=False,
        )  # fmt: skip
        tg.cancel_scope.cancel()
    completed = subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(), "")
    completed.stderr = result.stderr.decode()
    assert one_line_error(completed).startswith(unreachable(port) + "Protocol Error")


def test_the_help_names_the_option() -> None:
    for verb in ("submit", "follow"):
        result, _ = run_cli(verb, "--help")
        assert "--redis-timeout SECONDS" in result.stdout
    worker, _ = run_cli("worker", "--help")
    assert "--redis-timeout" not in worker.stdout  # a worker retries for ever
    bad, _ = run_cli("submit", "--redis-timeout", "0", "hi")
    assert "expected seconds > 0, got '0'" in one_line_error(bad, status=2)


async def test_open_queue_bounds_a_silent_connection(silent_port: int) -> None:
    """open_queue's timeout bounds the connection attempt, handshake included."""
    started = anyio.current_time()
    with anyio.fail_after(5):  # without the bound: forever
        with pytest.raises(RedisUnavailableError, match=r"^cannot reach Redis at redis://127\.0\.0\.1:\d+: "):
            async with open_queue(f"redis://127.0.0.1:{silent_port}", timeout=0.3) as queue:
                await queue.exists("j")
    # (coredis turns a cancellation while connecting into a ConnectionError on trio: the
    # fail_after alone would not catch a hang there)
    assert anyio.current_time() - started < CEILING


class Recorder:
    """Stands in for the module's structlog logger: (level, event, fields) per line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.lines.append((level, event, fields))


async def test_retries_warn_only_when_unbounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call that retries for ever (the worker's) logs its retries as warnings; a bounded
    call (a client's, which raises the error at its deadline) logs them at debug level."""
    recorder = Recorder()
    monkeypatch.setattr(redis_conn, "_log", recorder)

    def flaky() -> Any:
        failures = iter([coredis.exceptions.ConnectionError("down")])

        async def call() -> str:
            for error in failures:
                raise error
            return "up"

        return call

    assert await redis_conn.retrying(flaky(), what="worker_call", url="redis://h") == "up"
    assert await redis_conn.retrying(flaky(), what="client_call", url="redis://h", deadline=5) == "up"
    assert [(level, event, fields["operation"]) for level, event, fields in recorder.lines] == [
        ("warning", "redis_retry", "worker_call"), ("debug", "redis_retry", "client_call"),
    ]  # fmt: skip


async def test_a_deadline_is_not_overslept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backoff sleeps at most until the deadline: the last try starts there, however
    long the backoff would be."""
    monkeypatch.setattr(redis_conn, "_log", Recorder())
    monkeypatch.setattr(redis_conn, "backoff", lambda attempt, first, most: 60.0)
    tries = 0

    async def down() -> None:
        nonlocal tries
        tries += 1
        raise coredis.exceptions.ConnectionError("down")

    with anyio.fail_after(5), pytest.raises(RedisUnavailableError, match=r"^cannot reach Redis at redis://h: down$"):
        await redis_conn.retrying(down, what="x", url="redis://h", deadline=0.2)
    assert tries == 2


def test_the_library_default_is_unchanged() -> None:
    """A library caller of open_queue keeps its patient default (ten seconds)."""
    assert pipeline.redis_jobs.open_queue("redis://h")._timeout == 10.0
