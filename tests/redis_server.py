"""A private ``redis-server`` for the Redis tests: loopback, a free port, a temp dir.

Test modules import the fixtures they use (``redis_server_fixture`` provides ``redis_server``).

Durable (``appendonly yes``, ``appendfsync always``): a restart loses no acknowledged write.
Tests are skipped, with the reason, when the ``redis-server`` binary is missing (``.ci/run``
installs the Debian package).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest

BINARY = shutil.which("redis-server")
SKIP_REASON = "redis-server is not installed (apt-get install redis-server; .ci/run does it)"
needs_redis = pytest.mark.skipif(BINARY is None, reason=SKIP_REASON)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ping(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
        conn.sendall(b"PING\r\n")
        return conn.recv(64)


class RedisServer:
    """One redis-server process; ``restart()`` keeps its port and data."""

    def __init__(self, directory: Path) -> None:
        if BINARY is None:
            pytest.skip(SKIP_REASON)
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        assert BINARY is not None and self.process is None
        args = [
            BINARY, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", "redis.log",
            "--protected-mode", "no", "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:  # poll with a deadline: ready once it answers PONG (not LOADING)
            with contextlib.suppress(OSError):
                if _ping(self.port).startswith(b"+PONG"):
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (redis flushes its append-only file), then wait for the exit."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", name="redis_server")
def redis_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the whole session; each test uses its own queue name."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(name="own_redis_server")
def own_redis_server_fixture(tmp_path: Path) -> Iterator[RedisServer]:
    """A server for one test only (one that restarts it)."""
    with running_redis(tmp_path) as server:
        yield server


_queues = iter(range(1_000_000))


@pytest.fixture(name="queue_name")
def queue_name_fixture(request: pytest.FixtureRequest) -> str:
    """A queue name no other test uses."""
    return f"t{next(_queues)}-{request.node.name[:40]}".replace(" ", "_").replace("[", "-").replace("]", "")


async def eventually(condition: Callable[[], bool | Awaitable[bool]], *, within: float = 10.0) -> None:
    """Poll *condition* until it holds (for state only visible by asking Redis or a
    process); fail after *within* seconds."""
    with anyio.fail_after(within):
        for _ in itertools.count():
            result = condition()
            if await result if inspect.isawaitable(result) else result:
                return
            await anyio.sleep(0.01)
