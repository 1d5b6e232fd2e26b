"""Plumbing of the runner: the plan of islands, and small helpers for sources and channels."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, final

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

from ..core.accumulate import Accumulator
from ..errors import IdleTimeoutError
from ..stages.fused import Fused
from ..stages.specs import DEFAULT_CHAIN, Boundary, Island, is_async_stage, open_logic, stage_name

__all__ = ["Exhausted", "IdleLimited", "Plan", "aclose_source", "call_quietly", "chunks_of", "drain"]

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
class Plan:
    """Islands and async stages of one stream, in order, ready to run."""

    __slots__ = ("nodes", "last", "buffers", "accumulator")

    def __init__(self, chain: Sequence[Any]) -> None:
        if chain is DEFAULT_CHAIN:  # the usual case, planned without looking at the specs
            parse, accumulate, _ = chain  # derive: the fused chain applies its rules itself
            acc = accumulate.open()
            self.accumulator: Accumulator | None = acc
            self.last = Island.of_fused(Fused(acc, parse.open()))
            self.nodes: tuple[Any, ...] = (self.last,)
            self.buffers: tuple[int, ...] = ()
            return
        self.accumulator = None
        parts: list[Any] = []  # Island | (name, async logic) | Boundary
        current: list[Any] = []
        for spec in chain:
            if isinstance(spec, Boundary):
                parts += [Island(current), spec]
                current = []
                continue
            logic = open_logic(spec)
            if isinstance(logic, Accumulator):
                self.accumulator = logic
            if is_async_stage(logic):
                parts += [Island(current), Boundary(), (stage_name(spec), logic), Boundary()]
                current = []
            else:
                current.append(_Opened(stage_name(spec), logic))
        parts.append(Island(current))
        # Empty islands between two channels are dropped, and adjacent boundaries
        # collapse into one channel with the larger buffer.
        nodes: list[Any] = []
        buffers: list[int] = []
        pending = 0
        for i, part in enumerate(parts):
            if isinstance(part, Boundary):
                pending = max(pending, part.buffer)
            elif isinstance(part, Island) and not part.names and 0 < i < len(parts) - 1:
                continue
            else:
                if nodes:
                    buffers.append(pending or Boundary().buffer)
                pending = 0
                nodes.append(part)
        self.last = nodes[-1]
        self.nodes = tuple(nodes)
        self.buffers = tuple(buffers)


@final
class _Opened:
    """An already-opened logic object, so that Island does not open it again."""

    __slots__ = ("name", "logic")

    def __init__(self, name: str, logic: Any) -> None:
        self.name = name
        self.logic = logic

    def open(self) -> Any:
        return self.logic


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
