"""The task-per-island engine: the nodes of a plan before its last island, each in its own
task of the stream's task group, connected by bounded memory channels of batches.

The stream hands the engine what it needs (how to open and close the source, the body's
byte limit, how to turn a source's exception into a typed error) and reads back the
channel that feeds its last island, the counters of the source, and the upstream error.

Errors travel in-band: a failing island or async stage sends what it produced before the
failure, then records the error; of two failures, the one nearer the consumer wins (it is
the earlier event's). A downstream node that stops closes its channel, which ends the
nodes before it (``BrokenResourceError``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, final

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..errors import PipelineError, StageError
from ..stages.island import Island
from ..stages.plan import Plan
from .sources import body_too_large, drain

__all__ = ["Boundaries"]

CLOSE_TIMEOUT: Final = 5.0
"""Seconds granted to closing a source (and to ``on_end``) when the stream is cancelled."""

Batches = MemoryObjectReceiveStream[list[Any]]


@final
class Boundaries:
    """The tasks and channels of one stream's plan, up to its last island.

    Args:
        open_source: Opens the source's chunk iterator (called in the first island's task).
        close_source: Closes that iterator and the source.
        max_bytes: The body's byte limit (``Limits.max_stream_bytes``).
        source_error: Turns an exception of the source into the stream's typed error.
    """

    __slots__ = ("error", "chunks", "bytes", "_rank", "_open", "_close", "_max_bytes", "_source_error")

    def __init__(
        self,
        *,
        open_source: Callable[[], AsyncIterator[bytes]],
        close_source: Callable[[AsyncIterator[bytes]], Awaitable[None]],
        max_bytes: int,
        source_error: Callable[[Exception], PipelineError],
    ) -> None:
        self._open, self._close = open_source, close_source
        self._max_bytes = max_bytes
        self._source_error = source_error
        self.chunks = self.bytes = 0  # read from the source by the first island's task
        self.error: BaseException | None = None  # the upstream failure the consumer raises last
        self._rank = 0  # where it happened: 0 the source, i + 1 the plan's node i

    async def start(self, tg: TaskGroup, plan: Plan) -> Batches:
        """Start a task for every node but the last in *tg*; return the last channel.

        Cancellation: each task is started with ``tg.start``, so feeding begins only once
        every node listens; cancelling *tg* cancels them all.
        """
        upstream: Batches | None = None
        for rank, (node, buffer) in enumerate(zip(plan.nodes[:-1], plan.buffers, strict=True), 1):
            send, receive = anyio.create_memory_object_stream[list[Any]](buffer)
            if isinstance(node, Island):
                await tg.start(self._pump, rank, node, upstream, send)
            else:
                assert upstream is not None
                await tg.start(self._run_async_stage, rank, node, upstream, send)
            upstream = receive
        assert upstream is not None
        return upstream

    async def _pump(
        self,
        rank: int,
        island: Island,
        receive: Batches | None,
        send: MemoryObjectSendStream[list[Any]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run an island in its own task: from the source (or a channel) to a channel."""
        task_status.started()
        source = self._open() if receive is None else None
        try:
            async with send:
                if source is not None:
                    async for chunk in source:
                        self.chunks += 1
                        self.bytes += len(chunk)
                        if self.bytes > self._max_bytes:
                            raise body_too_large(self._max_bytes)
                        if not await self._forward(rank, island, [chunk], send):
                            return
                else:
                    assert receive is not None
                    async with receive:
                        async for batch in receive:
                            batch = drain(receive, batch)
                            if not await self._forward(rank, island, batch, send):
                                return
                if self.error is None:
                    out, error = island.finish()
                    if out:
                        await send.send(out)
                    if error is not None:
                        self._failed(rank, error)
        except anyio.BrokenResourceError:
            pass  # the node after us stopped reading: nothing left to do
        except Exception as exc:  # the source failed: deliver what we have, then the error
            self._failed(0, self._source_error(exc))
        finally:
            if source is not None:
                with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    await self._close(source)

    async def _forward(
        self, rank: int, island: Island, batch: list[Any], send: MemoryObjectSendStream[list[Any]]
    ) -> bool:
        out, error = island.run(batch)
        if out:
            await send.send(out)
        if error is not None:
            self._failed(rank, error)
            return False
        # An upstream island's error does not stop this one: the batches sent before that
        # error are still in our channel and must reach the consumer first.
        return True

    def _failed(self, rank: int, error: BaseException) -> None:
        # Of two failures upstream of the consumer, the one nearer to it (higher rank) is
        # the one of the earlier event: what it processed came before the other's failure.
        if self.error is None or rank > self._rank:
            self.error, self._rank = error, rank

    async def _run_async_stage(
        self,
        rank: int,
        node: tuple[str, Any],
        receive: Batches,
        send: MemoryObjectSendStream[list[Any]],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        name, logic = node
        task_status.started()
        try:
            async with receive, send:
                await logic.run(receive, send)
        except anyio.BrokenResourceError:
            pass
        except Exception as exc:
            error = StageError(name, exc)
            error.__cause__ = exc
            self._failed(rank, error)
