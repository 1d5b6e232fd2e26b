"""Byte sources of a stream: what ``open_stream`` reads (``chunks_of``), the idle timeout, and closing.

Also the runner's small helpers for channels (``drain``) and lifecycle callbacks.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, final

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from ..errors import IdleTimeoutError, LimitExceededError

__all__ = ["Exhausted", "IdleLimited", "body_too_large", "aclose_source", "call_quietly", "chunks_of", "drain"]

_log = structlog.get_logger("pipeline")


def chunks_of(source: Any) -> AsyncIterator[bytes]:
    """Return the iterator of byte chunks that ``open_stream`` reads from *source*: an
    ``httpx.Response`` through ``aiter_bytes()``, any other ``AsyncIterable[bytes]`` as is.

    Raises:
        TypeError: *source* is neither.
    """
    # an httpx.Response streams its (decoded) body through aiter_bytes()
    aiter_bytes = getattr(source, "aiter_bytes", None)
    iterable = aiter_bytes() if callable(aiter_bytes) else source
    if not isinstance(iterable, AsyncIterable):
        raise TypeError(f"source must be an AsyncIterable[bytes] or httpx.Response, got {type(source).__name__}")
    iterator = iterable.__aiter__()
    # the runner's hot loop reads it with `async for`, which wants both methods on its type
    return iterator if isinstance(iterator, AsyncIterator) else _Iterator(iterator)


@final
class _Iterator:
    """An async iterator made of an object that has ``__anext__`` only."""

    __slots__ = ("_iterator",)

    def __init__(self, iterator: Any) -> None:
        self._iterator = iterator

    def __aiter__(self) -> _Iterator:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        return self._iterator.__anext__()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close the wrapped iterator, if it can be closed."""
        await aclose_source(self._iterator, self._iterator)


@final
class Exhausted:
    """A source iterator that already ended (its generator finished by itself)."""

    def __aiter__(self) -> Exhausted:
        return self

    async def __anext__(self) -> bytes:
        raise StopAsyncIteration


def drain(receive: MemoryObjectReceiveStream[list[Any]], batch: list[Any]) -> list[Any]:
    # take what is already buffered without yielding: one hop per round, not per batch
    while True:
        try:
            more = receive.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            return batch
        batch = batch + more


async def aclose_source(iterator: Any, source: Any) -> None:
    for obj in (iterator, source):
        aclose = getattr(obj, "aclose", None)
        if callable(aclose):
            try:
                await aclose()
            except Exception as exc:  # closing must not hide the stream's own outcome
                _log.warning("source_close_failed", error=repr(exc))
        if iterator is source:
            break


async def call_quietly(fn: Callable[..., Any], *args: Any) -> None:
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        _log.warning("lifecycle_callback_failed", callback=getattr(fn, "__name__", repr(fn)), error=repr(exc))


@final
class IdleLimited:
    """A chunk iterator that fails with :class:`~pipeline.errors.IdleTimeoutError` when the
    source gives nothing for *seconds* (only streams with an ``idle_timeout`` pay for it)."""

    __slots__ = ("_iterator", "_seconds")

    def __init__(self, iterator: AsyncIterator[bytes], seconds: float) -> None:
        self._iterator = iterator
        self._seconds = seconds

    def __aiter__(self) -> IdleLimited:
        return self

    async def __anext__(self) -> bytes:
        try:
            with anyio.fail_after(self._seconds):
                return await self._iterator.__anext__()
        except TimeoutError:
            raise IdleTimeoutError(self._seconds) from None

    async def aclose(self) -> None:
        """Close the wrapped iterator."""
        await aclose_source(self._iterator, self._iterator)


def body_too_large(limit: int) -> LimitExceededError:
    """The error of a body longer than ``Limits.max_stream_bytes`` (*limit*)."""
    return LimitExceededError("max_stream_bytes", limit, "the stream's body")
