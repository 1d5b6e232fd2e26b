"""Connecting to Redis with coredis, and retrying what a lost connection interrupted.

Only :mod:`pipeline.redis_jobs` and its private modules import this; coredis is an
optional dependency (``pip install 'sse-pipeline[redis]'``).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import anyio
import structlog

from ..client.retry import backoff
from ..errors import PipelineError

try:
    import coredis
    import coredis.exceptions
    import coredis.retry
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "the Redis scale-out needs coredis: pip install 'sse-pipeline[redis]'", name=exc.name
    ) from exc

__all__ = [
    "CONNECT_TIMEOUT", "Redis", "RedisJobsError", "RedisUnavailableError", "connect", "retrying",
    "transient_redis_error",
]  # fmt: skip

Redis = coredis.Redis[bytes]
T = TypeVar("T")

_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})
_TRANSIENT: Final[tuple[type[BaseException], ...]] = (
    coredis.exceptions.ConnectionError,  # BusyLoadingError (the server loads its data) included
    coredis.exceptions.ReadOnlyError,  # a replica during a failover
    coredis.exceptions.ClusterDownError,
    coredis.exceptions.TryAgainError,
    TimeoutError,
    OSError,
)
CONNECT_TIMEOUT: Final = 5.0  # seconds one connection attempt (TCP connect + handshake) may take
_FIRST_BACKOFF: Final = 0.05  # seconds; doubles with each retry
_MAX_BACKOFF: Final = 2.0  # seconds: an outage is noticed to be over this soon
_log = structlog.get_logger("pipeline.redis")


class RedisJobsError(PipelineError):
    """Base class of the errors of the Redis scale-out."""


class RedisUnavailableError(RedisJobsError):
    """Redis could not be reached for longer than the caller allows, or what answers at the
    URL is not a Redis server; the last connection error is the ``__cause__``.

    Attributes:
        url: The Redis URL, without its password.
    """

    def __init__(self, url: str, error: BaseException) -> None:
        self.url = url
        super().__init__(f"cannot reach Redis at {url}: {error}")


def transient_redis_error(error: BaseException) -> bool:
    """Whether *error* may go away by itself (a lost connection, a restart, a failover)."""
    return isinstance(error, _TRANSIENT)


def safe_url(url: str) -> str:
    """*url* without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


def check_url(url: str) -> None:
    """Raise ``ValueError`` unless *url* is a ``redis://``, ``rediss://`` or ``unix://`` URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ValueError(f"bad Redis URL {safe_url(url)!r}: {exc}") from None
    if parts.scheme not in _SCHEMES or not (parts.hostname or parts.path):
        raise ValueError(f"expected a redis://HOST:PORT, rediss:// or unix:// URL, got {safe_url(url)!r}")


@asynccontextmanager
async def connect(
    url: str, *, max_connections: int = 64, connect_timeout: float = CONNECT_TIMEOUT
) -> AsyncIterator[Redis]:
    """Open a coredis client on *url* (no retries of its own: :func:`retrying` decides).

    An exception of the block propagates as itself, not wrapped in the exception group of
    the client's connection task group.

    Args:
        url: The Redis URL.
        max_connections: Connections the client opens at most.
        connect_timeout: Seconds one connection attempt may take, the handshake included
            (a host that accepts but never answers, such as a stopped Redis, fails it as a
            connection error, which :func:`retrying` retries); when unsure, the default.

    Raises:
        ValueError: *url* is not a Redis URL.
    """
    check_url(url)
    client: Redis = coredis.Redis.from_url(
        url, retry_policy=coredis.retry.NoRetryPolicy(), max_connections=max_connections,
        connect_timeout=connect_timeout,
    )  # fmt: skip
    pool: Any = client.connection_pool
    pool.connection_class = _closing_buffers(pool.connection_class)
    try:
        async with client:
            yield client
    except BaseExceptionGroup as group:
        lone = group.exceptions[0] if len(group.exceptions) == 1 else None
        if isinstance(lone, Exception) and not isinstance(lone, BaseExceptionGroup):
            raise lone from lone.__cause__
        raise


_BUFFERS: Final = ("_write_buffer", "_push_message_buffer", "_streamed_message_buffer")


@functools.cache
def _closing_buffers(base: Any) -> Any:
    """*base*, a coredis connection class, that also closes its memory streams when it
    cannot connect (coredis 6.9 closes them only after connecting: each failed connection
    attempt would leak six streams, and a ResourceWarning, during a Redis outage), and
    whose handshake (HELLO, SELECT ...) waits at most its connect timeout (coredis bounds
    only the TCP connect: a peer that accepts and never answers hung the attempt)."""

    class Connection(base):  # type: ignore[misc]
        def create_request(self, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
            if timeout is None and not self._handshake_attempted:
                timeout = self._connect_timeout
            return super().create_request(*args, timeout=timeout, **kwargs)

        async def _connect(self) -> Any:
            try:
                return await super()._connect()
            except BaseException:
                for name in _BUFFERS:
                    for end in ("_in", "_out"):
                        stream = getattr(self, name + end, None)
                        if stream is not None:
                            stream.close()
                raise

    Connection.__name__ = Connection.__qualname__ = f"Closing{base.__name__}"
    return Connection


async def retrying(
    operation: Callable[[], Awaitable[T]], *, what: str, url: str, deadline: float | None = None, **context: Any
) -> T:
    """Run *operation* until it succeeds, retrying transient Redis errors with backoff.

    Args:
        operation: Makes a fresh call on each try (it may run more than once: every
            operation given here is safe to repeat).
        what: Names the operation in logs.
        url: The Redis URL, for the error.
        deadline: Seconds after which a transient error is raised as
            :class:`RedisUnavailableError` (the last try starts at the deadline, the
            backoff never sleeps past it); ``None``: retry for ever (workers).

    Retries are logged as ``redis_retry`` warnings when there is no deadline (a worker's
    outage is otherwise silent), at debug level with one: the caller either succeeds or
    gets the error, and a command-line client prints that error alone.

    Raises:
        RedisUnavailableError: The deadline passed, or what answers at *url* does not
            speak the Redis protocol (at once: waiting will not change that).

    Cancellation: propagates at once (also during a backoff).
    """
    attempt, started = 0, anyio.current_time()
    log = _log.warning if deadline is None else _log.debug
    while True:
        try:
            return await operation()
        except coredis.exceptions.InvalidResponse as exc:  # not a Redis server: waiting will not help
            raise RedisUnavailableError(safe_url(url), exc) from exc
        except _TRANSIENT as exc:
            delay = backoff(attempt, _FIRST_BACKOFF, _MAX_BACKOFF)
            if deadline is not None:
                left = deadline - (anyio.current_time() - started)
                if left <= 0:
                    raise RedisUnavailableError(safe_url(url), exc) from exc
                delay = min(delay, left)
            if attempt in (0, 3) or attempt % 20 == 0:  # keep logs short during an outage
                log("redis_retry", operation=what, attempt=attempt + 1, delay=round(delay, 3), error=repr(exc),
                    **context)  # fmt: skip
            attempt += 1
            await anyio.sleep(delay)
