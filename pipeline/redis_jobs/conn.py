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

__all__ = ["Redis", "RedisUnavailableError", "RedisJobsError", "connect", "retrying", "transient_redis_error"]

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
_FIRST_BACKOFF: Final = 0.05  # seconds; doubles with each retry
_MAX_BACKOFF: Final = 2.0  # seconds: an outage is noticed to be over this soon
_log = structlog.get_logger("pipeline.redis")


class RedisJobsError(PipelineError):
    """Base class of the errors of the Redis scale-out."""


class RedisUnavailableError(RedisJobsError):
    """Redis could not be reached for longer than the caller allows; the last connection
    error is the ``__cause__``.

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
async def connect(url: str, *, max_connections: int = 64) -> AsyncIterator[Redis]:
    """Open a coredis client on *url* (no retries of its own: :func:`retrying` decides).

    An exception of the block propagates as itself, not wrapped in the exception group of
    the client's connection task group.

    Raises:
        ValueError: *url* is not a Redis URL.
    """
    check_url(url)
    client: Redis = coredis.Redis.from_url(
        url, retry_policy=coredis.retry.NoRetryPolicy(), max_connections=max_connections, connect_timeout=5.0
    )
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
    attempt would leak six streams, and a ResourceWarning, during a Redis outage)."""

    class Connection(base):  # type: ignore[misc]
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
            :class:`RedisUnavailableError`; ``None``: retry for ever (workers).

    Cancellation: propagates at once (also during a backoff).
    """
    attempt, started = 0, anyio.current_time()
    while True:
        try:
            return await operation()
        except _TRANSIENT as exc:
            if deadline is not None and anyio.current_time() - started >= deadline:
                raise RedisUnavailableError(safe_url(url), exc) from exc
            delay = backoff(attempt, _FIRST_BACKOFF, _MAX_BACKOFF)
            if attempt in (0, 3) or attempt % 20 == 0:  # keep logs short during an outage
                _log.warning("redis_retry", operation=what, attempt=attempt + 1, delay=round(delay, 3),
                             error=repr(exc), **context)  # fmt: skip
            attempt += 1
            await anyio.sleep(delay)
