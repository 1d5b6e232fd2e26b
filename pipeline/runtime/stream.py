"""``MessageStream``: one stream, driven by its consumer; it owns a task group only when it needs one.

How a stream runs
-----------------
The planner (:mod:`pipeline.stages.plan`) cuts the chain (``parse -> accumulate -> derive
-> user stages``) into *islands* of consecutive sync stages; an async stage or a
``boundary()`` marker ends an island. The **last island always runs in the consumer's
task**: ``async for``, ``until_done()`` and ``get_final_message()`` pull one network chunk
(or one batch from the last channel), run the island over it, publish the derived events
to the bus, and hand them to the caller. With only sync stages and sync subscribers (the
default) there is no task, no channel and no task group at all: one await per network
chunk, everything else is plain calls. Every other island and async stage, and every async
subscriber, runs as a task in the stream's task group, entered with the stream when there
is such a task to run (:mod:`pipeline.runtime.boundaries`); islands are connected by
bounded memory channels whose items are batches (one per chunk), so backpressure reaches
the network read. So an async subscriber is given before the stream is entered, or added
inside ``async with`` to a stream that has a task group already; a stream without one
refuses it with a ``RuntimeError`` (a task cannot be started without a task group, and one
entered later would not nest in the caller's cancel scopes).

Errors travel in-band: a failing stage delivers what it produced before the failure, then
the error is raised to the consumer after every earlier event was published, never as an
ExceptionGroup. Leaving the ``async with`` block early (``break``, an exception, a
cancellation or a timeout) cancels every task of the stream and closes the source
(``aclose()``), shielded and bounded in time. ``on_end`` callbacks always run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar, final

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from ..core.events import DerivedEvent, TextEvent
from ..core.limits import DEFAULT_LIMITS, Limits
from ..core.message import Message, TextBlock
from ..errors import PipelineError, SourceError
from ..stages.fused import Undelivered
from ..stages.island import ChunkByChunk, Island, wrap_error
from ..stages.plan import Plan
from ..stages.specs import resolve
from .boundaries import CLOSE_TIMEOUT, Boundaries
from .bus import EventBus
from .sources import Exhausted, IdleLimited, aclose_source, body_too_large, call_quietly, chunks_of, drain
from .subscription import OnFailure, Overflow, SubscriberStatistics, Subscription, callback_subscription

__all__ = ["MessageStream", "StreamStatistics"]

_log = structlog.get_logger("pipeline")
F = TypeVar("F", bound=Callable[..., Any])


class StreamStatistics(msgspec.Struct, frozen=True):
    """Counters of one stream.

    Attributes:
        chunks: Network chunks read from the source.
        bytes: Bytes in those chunks.
        events: Derived events published.
        subscribers: Per async subscriber counters (delivered, dropped, queued).
    """

    chunks: int
    bytes: int
    events: int
    subscribers: list[SubscriberStatistics]


def _as_subscription(obj: object) -> Subscription:
    return obj if isinstance(obj, Subscription) else Subscription(obj)


@final
class MessageStream:
    """One streaming message: iterate it, subscribe to it, or wait for its final message.

    Made by :func:`open_stream` or :meth:`Pipeline.open_stream`; use it as an async
    context manager. The stream is driven by its consumer: ``async for event in stream``,
    ``await stream.until_done()`` or ``await stream.get_final_message()``.
    """

    __slots__ = (
        "_buffer",
        "_boundaries",
        "_bus",
        "_bytes",
        "_chain",
        "_chunks",
        "_ended",
        "_error",
        "_events",
        "_finished",
        "_idle_timeout",
        "_max_bytes",
        "_pending",
        "_plan",
        "_pos",
        "_receive",
        "_source",
        "_source_iter",
        "_tg",
    )

    def __init__(
        self,
        source: Any,
        *,
        stages: Sequence[Any] = (),
        subscribers: Sequence[object] = (),
        allow_incomplete: bool = False,
        idle_timeout: float | None = None,
        limits: Limits | None = None,
    ) -> None:
        if idle_timeout is not None and not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be > 0 or None, got {idle_timeout!r}")
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"limits must be a pipeline.Limits, got {type(limits).__name__}")
        self._idle_timeout = idle_timeout
        self._max_bytes = (limits or DEFAULT_LIMITS).max_stream_bytes
        self._source = source
        self._chain = resolve(stages, allow_incomplete=allow_incomplete, limits=limits)
        self._bus = EventBus()
        for sub in subscribers:
            self._bus.subscribe(_as_subscription(sub))
        self._plan: Plan | None = None
        self._tg: TaskGroup | None = None
        self._source_iter: AsyncIterator[bytes] | None = None
        self._receive: MemoryObjectReceiveStream[list[Any]] | None = None
        self._boundaries: Boundaries | None = None  # the tasks before the last island, if any
        self._error: BaseException | None = None
        self._pending: BaseException | None = None  # an error to raise after the batch before it
        self._finished = False
        self._ended = False
        self._buffer: Sequence[Any] = ()
        self._pos = 0
        self._chunks = self._bytes = self._events = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> MessageStream:
        if self._plan is not None:
            raise RuntimeError("a MessageStream can be entered only once")
        self._plan = plan = Plan(self._chain)
        if len(plan.nodes) == 1 and not self._bus.has_async:
            # Nothing runs beside the consumer: no task group (entering and leaving one,
            # with the checkpoint it runs at exit, is a large part of a short stream's
            # fixed cost, and memory held while the stream is open).
            self._source_iter = self._open_source()
            return self
        tg = self._tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            self._bus.attach(tg)
            if len(plan.nodes) == 1:
                self._source_iter = self._open_source()
            else:
                self._boundaries = engine = Boundaries(
                    open_source=self._open_source,
                    close_source=self._close_iterator,
                    max_bytes=self._max_bytes,
                    source_error=self._source_error,
                )
                self._receive = await engine.start(tg, plan)
        except BaseException:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._plan is not None
        early = not self._finished
        tg = self._tg
        try:
            if early:
                self._finished = True
                if tg is not None:
                    tg.cancel_scope.cancel()
            self._bus.close()
            if (
                self._source_iter is not None
                or self._receive is not None
                or (not self._ended and self._bus.lifecycle("on_end"))
            ):
                with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    await self._close_source()
                    await self._end()
            else:  # a finished stream closed its source already: no shielded scope (and timer) needed
                self._ended = True
        finally:
            if tg is not None:
                try:
                    await tg.__aexit__(exc_type, exc, tb)
                except BaseExceptionGroup as group:
                    if len(group.exceptions) == 1:  # a lone failure is raised as itself
                        inner = group.exceptions[0]
                        raise inner from inner.__cause__
                    raise
        if exc_type is None and not early:
            self._bus.check()
        return None

    def _open_source(self) -> AsyncIterator[bytes]:
        chunks = chunks_of(self._source)
        return chunks if self._idle_timeout is None else IdleLimited(chunks, self._idle_timeout)

    async def _close_iterator(self, iterator: AsyncIterator[bytes]) -> None:
        await aclose_source(iterator, self._source)

    def _source_error(self, exc: Exception) -> PipelineError:
        if isinstance(exc, PipelineError):
            return exc
        acc = self._plan.accumulator if self._plan else None
        error = SourceError(exc, acc.snapshot() if acc else None)
        error.__cause__ = exc
        return error

    async def _close_source(self) -> None:
        it, self._source_iter = self._source_iter, None
        if it is not None:
            await self._close_iterator(it)
        if self._receive is not None:
            await self._receive.aclose()

    async def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        for fn in self._bus.lifecycle("on_end"):
            await call_quietly(fn)

    # ------------------------------------------------------------------ driving

    async def _next_batch(self) -> list[Any] | None:
        """Pull, process and publish the next non-empty batch; ``None`` at the end.

        Cancellation: waits on the source (or the last channel); cancelling leaves the
        stream unfinished, and leaving the ``async with`` block then closes it.
        """
        plan = self._plan
        if plan is None:
            raise RuntimeError("use the stream inside `async with`")
        if self._pending is not None:  # the batch before it was handed out first
            await self._fail(self._pending)
        while not self._finished:
            try:
                if self._source_iter is not None:
                    chunk = await self._source_iter.__anext__()
                    self._chunks += 1
                    self._bytes += len(chunk)
                    if self._bytes > self._max_bytes:
                        await self._fail(body_too_large(self._max_bytes))
                    batch = [chunk]
                else:
                    assert self._receive is not None
                    batch = await self._receive.receive()
                    batch = drain(self._receive, batch)
            except (StopAsyncIteration, anyio.EndOfStream):
                return await self._finish(plan.last)
            except Exception as exc:
                await self._fail(self._source_error(exc))
            out, error = plan.last.run(batch)
            if out:
                await self._publish(out)
            if error is not None:
                if not out:
                    await self._fail(error)
                self._pending = error  # raised by the next call, once `out` was consumed
            if out:
                return out
        return None

    async def _drive_fused(self) -> None:
        # The hot loop of the default configuration (no task, no channel, no async
        # subscriber): _next_batch inlined, one await per network chunk. It stops at the
        # end of the source and leaves the ending (flush, errors) to _next_batch.
        assert self._plan is not None and self._source_iter is not None
        island = self._plan.last
        chain = island.fused or ChunkByChunk(island)
        derived = island.fused is not None  # the built-in chain makes derived events only
        source, bus = self._source_iter, self._bus
        max_bytes = self._max_bytes - self._bytes
        chunks = size = events = 0
        out: list[Any] = []  # one list for every chunk: its events are published, then dropped
        try:
            # `async for`, not `await source.__anext__()`: the loop's opcode calls the
            # iterator's slot directly, a call less per chunk. So an exception can be
            # the source's or the body's: the body's go through _fail (self._error) or are
            # a subscriber's SubscriberError, which _source_error leaves as it is.
            async for chunk in source:
                chunks += 1
                size += len(chunk)
                if size > max_bytes:
                    await self._fail(body_too_large(self._max_bytes))
                try:
                    # a live delta's events, or a block start or stop, go straight to a
                    # lone callback, if that is all there is (sync_single is None otherwise)
                    delivered = chain.process_chunk(chunk, out, bus.sync_single, bus.sync_kinds)
                    if delivered:
                        events += delivered
                        continue
                except Undelivered as u:  # that callback raised
                    events += len(u.batch)
                    bus.publish_failed(u.call, u.error, u.batch, u.batch[u.index])
                    continue
                except Exception as exc:  # deliver what the chunk held before the failure
                    self._events += len(out)
                    if bus.has_sync:
                        bus.publish_sync(out)
                    await self._fail(wrap_error(island.names[0], exc))
                events += len(out)
                if bus.sync_kinds:
                    bus.publish_sync(out, derived)
                out.clear()
            self._source_iter = Exhausted()
        except Exception as exc:
            if exc is not self._error:
                await self._fail(self._source_error(exc))
            raise
        finally:
            self._chunks += chunks
            self._bytes += size
            self._events += events

    async def _publish(self, out: list[Any]) -> None:
        self._events += len(out)
        bus = self._bus
        try:
            if bus.has_async:
                await bus.publish(out)
            elif bus.has_sync:
                bus.publish_sync(out)
        except Exception as exc:
            await self._fail(exc)

    async def _finish(self, island: Island) -> list[Any] | None:
        upstream = self._boundaries.error if self._boundaries is not None else None
        if upstream is not None:
            await self._fail(upstream)
        out, error = island.finish()
        if out:
            await self._publish(out)
        if error is not None:
            if not out:
                await self._fail(error)
            self._pending = error
            return out
        self._finished = True
        self._bus.close()
        await self._close_source()
        return out or None

    async def _fail(self, error: BaseException) -> Any:
        self._pending = None
        if isinstance(error, PipelineError) and error.partial_message is None and self._plan is not None:
            acc = self._plan.accumulator
            error.partial_message = acc.snapshot() if acc is not None else None
        self._error = error
        self._finished = True
        self._bus.close()
        for fn in self._bus.lifecycle("on_error"):
            await call_quietly(fn, error)
        raise error

    def __aiter__(self) -> MessageStream:
        return self

    async def __anext__(self) -> DerivedEvent:
        """Return the next derived event (SDK order and contents)."""
        if self._pos < len(self._buffer):
            event: DerivedEvent = self._buffer[self._pos]
            self._pos += 1
            return event
        if self._error is not None:
            raise self._error
        batch = await self._next_batch()
        if batch is None:
            raise StopAsyncIteration
        self._buffer, self._pos = batch, 1
        return batch[0]  # type: ignore[no-any-return]

    @property
    def text_stream(self) -> AsyncIterator[str]:
        """An iterator over the text deltas only."""
        return _TextStream(self)

    async def until_done(self) -> None:
        """Drive the stream to its end, then wait for async subscribers to drain.

        Raises:
            PipelineError: The stream failed (the same error on every call).
        """
        if self._error is not None:
            raise self._error
        self._buffer, self._pos = (), 0
        if self._source_iter is not None and not self._bus.has_async:
            await self._drive_fused()
        while await self._next_batch() is not None:
            pass
        if self._error is not None:
            raise self._error
        if self._bus.has_async:
            try:
                await self._bus.wait_done()
            except Exception as exc:
                await self._fail(exc)

    async def get_final_message(self) -> Message:
        """Drive the stream to its end and return the accumulated message.

        Raises:
            PipelineError: The stream failed; ``error.partial_message`` has what arrived.
        """
        if self._error is None and self._source_iter is not None and not self._bus.has_async:
            # until_done's hot loop, awaited from here: one coroutine frame less to resume
            # at each network chunk that had to be waited for
            self._buffer, self._pos = (), 0
            await self._drive_fused()
        await self.until_done()
        acc = self._plan.accumulator if self._plan else None
        if acc is None or acc.final_message is None:
            raise RuntimeError("this pipeline has no accumulate stage, so there is no final message")
        return acc.final_message

    async def get_final_text(self) -> str:
        """Return the text of all text blocks of the final message, joined.

        Raises:
            ValueError: The message has no text block.
        """
        message = await self.get_final_message()
        texts = [block.text for block in message.content if isinstance(block, TextBlock)]
        if not texts:
            kinds = ", ".join(block.type for block in message.content) or "no"
            raise ValueError(f"the message has no text block (it has {kinds} content blocks)")
        return "".join(texts)

    @property
    def request_id(self) -> str | None:
        """The ``request-id`` header when the source is an HTTP response, else ``None``."""
        headers = getattr(self._source, "headers", None)
        value = headers.get("request-id") if headers is not None else None
        return value if isinstance(value, str) else None

    @property
    def current_message_snapshot(self) -> Message | None:
        """The message as accumulated so far, or ``None`` before ``message_start``."""
        acc = self._plan.accumulator if self._plan else None
        return acc.snapshot() if acc else None

    def statistics(self) -> StreamStatistics:
        """Return the stream's counters."""
        chunks, size, engine = self._chunks, self._bytes, self._boundaries
        if engine is not None:
            chunks, size = chunks + engine.chunks, size + engine.bytes
        return StreamStatistics(chunks, size, self._events, self._bus.statistics())

    # ------------------------------------------------------------------ subscribing

    def subscribe(
        self,
        target: object,
        *,
        name: str | None = None,
        overflow: Overflow = "block",
        buffer: int = 16,
        errors: OnFailure = "propagate",
    ) -> None:
        """Attach a subscriber object (see :mod:`pipeline.runtime.subscription` for callbacks and options).

        A sync subscriber may be attached at any time and gets the events published from
        then on. An async subscriber runs in a task of the stream's task group: attach it
        before ``async with`` (or pass it to :func:`open_stream`), or inside the block when
        the stream has a task group already (an async stage or another async subscriber).

        Raises:
            RuntimeError: An async subscriber, inside ``async with``, on a stream entered
                without a task group.
        """
        sub = target if isinstance(target, Subscription) else Subscription(
            target, name=name, overflow=overflow, buffer=buffer, errors=errors
        )
        self._attach(sub)

    def _attach(self, sub: Subscription) -> None:
        if sub.is_async and self._plan is not None and self._tg is None:
            raise RuntimeError(
                f"async subscriber {sub.name!r} subscribed inside `async with`: this stream was "
                "entered without a task group to run it; subscribe it before entering the stream "
                "(open_stream(..., subscribers=[...]) or stream.subscribe(...) before `async with`)"
            )
        self._bus.subscribe(sub)

    def _decorator(self, kind: str, fn: F) -> F:
        self._attach(callback_subscription(kind, fn))
        return fn

    def on_text(self, fn: F) -> F:
        """Call ``fn(event: TextEvent)`` for every text delta."""
        return self._decorator("on_text", fn)

    def on_tool_input(self, fn: F) -> F:
        """Call ``fn(event: InputJsonEvent)`` for every piece of tool input JSON."""
        return self._decorator("on_tool_input", fn)

    def on_thinking(self, fn: F) -> F:
        """Call ``fn(event: ThinkingEvent)`` for every thinking delta."""
        return self._decorator("on_thinking", fn)

    def on_citation(self, fn: F) -> F:
        """Call ``fn(event: CitationEvent)`` for every citation."""
        return self._decorator("on_citation", fn)

    def on_signature(self, fn: F) -> F:
        """Call ``fn(event: SignatureEvent)`` when a thinking block is signed."""
        return self._decorator("on_signature", fn)

    def on_content_block(self, fn: F) -> F:
        """Call ``fn(block)`` with every finished content block."""
        return self._decorator("on_content_block", fn)

    def on_message(self, fn: F) -> F:
        """Call ``fn(message: Message)`` when the message stops."""
        return self._decorator("on_message", fn)

    def on_event(self, fn: F) -> F:
        """Call ``fn(event)`` for every derived event."""
        return self._decorator("on_event", fn)

    def on_error(self, fn: F) -> F:
        """Call ``fn(error)`` when the stream fails."""
        return self._decorator("on_error", fn)

    def on_end(self, fn: F) -> F:
        """Call ``fn()`` when the stream closes, however it closes."""
        return self._decorator("on_end", fn)


@final
class _TextStream:
    __slots__ = ("_stream",)

    def __init__(self, stream: MessageStream) -> None:
        self._stream = stream

    def __aiter__(self) -> _TextStream:
        return self

    async def __anext__(self) -> str:
        async for event in self._stream:
            if type(event) is TextEvent:
                return event.text
        raise StopAsyncIteration
