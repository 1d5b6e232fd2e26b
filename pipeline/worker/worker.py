"""The ``Worker`` class: the dispatcher, the per-job cancel scopes and the shutdown."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from types import TracebackType
from typing import final

import anyio
import anyio.lowlevel
import structlog
from anyio.abc import TaskGroup

from ..client.messages import MessagesClient
from ..client.retry import RetryPolicy, transient
from ..core.message import Message
from ..errors import JobCancelledError, WorkerClosedError
from ..runtime.open import Pipeline
from ..runtime.subscription import Subscription
from .bookkeeping import Collector, Counters, Entry, Results, open_request
from .jobs import Job, JobRequest, JobResult, JobSource, ShutdownReport, WorkerStatistics
from .wakeup import Signal

__all__ = ["Job", "JobRequest", "JobResult", "JobSource", "ShutdownReport", "Worker", "WorkerStatistics"]

_log = structlog.get_logger("pipeline.worker")


@final
class Worker:
    """Runs many jobs concurrently; use it as an async context manager.

    Args:
        pipeline: Stages, shared subscribers and options of every stream (default:
            ``Pipeline()``). Its subscribers see the events of all jobs.
        concurrency: The most jobs running at once.
        client: The client that sends :class:`JobRequest` jobs (not closed by the worker).
        name: Names the worker in logs and statistics.
        max_queued: The most jobs waiting for a slot (default: ``concurrency``).
        retry: Run a job again when it failed before its first event with a transient
            error (connection, 408/409/429/5xx/529 answer, overloaded/rate limit/api error
            event, cut or truncated body), with this policy's backoff. ``None``: never. For
            a :class:`JobRequest` the client's own retries come first.
        shutdown_deadline: The deadline of the shutdown when the ``async with`` block ends.
    """

    __slots__ = (
        "_pipeline", "_concurrency", "_client", "name", "_max_queued", "_retry", "_shutdown_deadline", "_tg",
        "_queue", "_queued", "_running", "_results", "_room", "_work", "_idle", "_ready", "_dispatched",
        "_closing", "_stopped", "_report", "_drained", "_dropped", "_counters",
    )  # fmt: skip

    def __init__(
        self,
        pipeline: Pipeline | None = None,
        *,
        concurrency: int = 100,
        client: MessagesClient | None = None,
        name: str = "worker",
        max_queued: int | None = None,
        retry: RetryPolicy | None = None,
        shutdown_deadline: float = 10.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_queued is not None and max_queued < 1:
            raise ValueError(f"max_queued must be >= 1, got {max_queued}")
        self._pipeline = pipeline or Pipeline()
        self._concurrency = concurrency
        self._client = client
        self.name = name
        self._max_queued = max_queued or concurrency
        self._retry = retry
        self._shutdown_deadline = shutdown_deadline
        self._tg: TaskGroup | None = None
        self._queue: deque[Entry] = deque()  # FIFO; entries cancelled while queued are skipped
        self._queued: dict[str, Entry] = {}
        self._running: dict[str, Entry] = {}
        self._results: deque[JobResult] = deque()
        self._room, self._work, self._idle, self._ready = Signal(), Signal(), Signal(), Signal()
        self._closing = self._stopped = self._dispatched = False  # _dispatched: the dispatcher returned
        self._report: ShutdownReport | None = None
        self._drained: list[str] = []
        self._dropped: list[str] = []
        self._counters = Counters()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Worker:
        if self._tg is not None:
            raise RuntimeError("a Worker can be entered only once")
        tg = self._tg = anyio.create_task_group()
        await tg.__aenter__()
        self._counters.started = time.perf_counter()
        tg.start_soon(self._dispatch, name=f"{self.name} dispatcher")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        try:
            if exc_type is None:
                await self.shutdown(deadline=self._shutdown_deadline)
        finally:
            if self._report is None:  # left by an exception, or the shutdown was cancelled
                self._abort()
            try:
                suppress = await self._tg.__aexit__(exc_type, exc, tb)
            except BaseExceptionGroup as group:  # jobs raise nothing: the block's own error
                if exc is None or group.exceptions != (exc,):
                    raise
                suppress = False  # ... propagates as itself
            finally:
                self._stop()
        return suppress

    async def shutdown(self, *, deadline: float = 10.0, drain_queue: bool = True) -> ShutdownReport:
        """Stop taking jobs, let queued and running jobs finish until *deadline* seconds
        have passed, then cancel the rest and wait for them to end.

        Calling it again returns the first report. Blocked ``submit`` calls, and every
        later one, raise :class:`~pipeline.errors.WorkerClosedError`.

        Args:
            deadline: Seconds granted to the jobs (``math.inf``: as long as they need).
            drain_queue: ``False`` cancels the queued jobs at once instead of running them.

        Cancellation: cancelling the call leaves the jobs running; leaving the worker's
        ``async with`` block then cancels them.
        """
        if self._tg is None:
            raise RuntimeError("use the worker inside `async with`")
        if self._report is not None:
            return self._report
        self._closing = True
        self._room.set()
        self._work.set()
        if not drain_queue:
            self._cancel_queued("shutdown")
        with anyio.move_on_after(deadline):
            await self._until_idle()
        if self._queued or self._running:
            _log.warning("shutdown_deadline", worker=self.name, cancelled=len(self._queued) + len(self._running))
            self._cancel_queued("shutdown")
            for entry in list(self._running.values()):
                self._cancel_running(entry, "shutdown")
            await self._until_idle()
        while not self._dispatched:
            await self._idle.wait()
        if self._report is None:
            self._report = ShutdownReport(tuple(self._drained), tuple(self._dropped))
            self._stop()
        return self._report

    def _abort(self) -> None:
        self._closing = True
        self._cancel_queued("aborted")
        for entry in self._running.values():
            entry.reason = entry.reason or "aborted"
        assert self._tg is not None
        self._tg.cancel_scope.cancel()

    def _stop(self) -> None:
        if not self._stopped:
            self._stopped, self._counters.stopped = True, time.perf_counter()
            self._ready.set()

    async def _until_idle(self) -> None:
        """Wait until no job is queued or running. Cancellation: nothing to undo."""
        while self._queued or self._running:
            await self._idle.wait()

    # ------------------------------------------------------------------ submitting

    async def submit(self, job: Job) -> None:
        """Queue *job*, waiting for room in the queue; its result comes from ``results()``.

        Cancellation: cancelling the wait leaves the job unsubmitted.

        Raises:
            WorkerClosedError: The worker's shutdown began (also while waiting).
            ValueError: A job with this id is queued or running, or a ``JobRequest`` was
                given to a worker without a client.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        await self._put(job, None)

    def submit_nowait(self, job: Job) -> None:
        """Queue *job* now, or raise ``anyio.WouldBlock`` when the queue is full.

        Raises:
            anyio.WouldBlock: The queue is full.
            WorkerClosedError: The worker's shutdown began.
        """
        self._check(job)
        if len(self._queued) >= self._max_queued:
            raise anyio.WouldBlock
        self._enqueue(job, None)

    async def run(self, jobs: AsyncIterable[Job] | Iterable[Job]) -> list[JobResult]:
        """Submit *jobs* (waiting for room as needed), wait for all of them, and return
        their results in completion order. They do not appear in ``results()``.

        Cancellation: cancelling the call (or any error, e.g. ``WorkerClosedError`` or a
        failing iterator) cancels those of its jobs that have not ended, then propagates.
        """
        collector = Collector()
        try:
            if isinstance(jobs, AsyncIterable):
                async for job in jobs:
                    await self._put(job, collector)
            else:
                for job in jobs:
                    await self._put(job, collector)
            if collector.outstanding:
                await collector.idle.wait()
        except BaseException:
            for job_id in list(collector.outstanding):
                self.cancel(job_id)
            raise
        return collector.results

    def results(self) -> AsyncIterator[JobResult]:
        """Results of submitted jobs, in completion order, until the worker has stopped.

        Each result is yielded once, to one reader; unread results are kept.
        """
        return Results(self._next_result)

    async def _next_result(self) -> JobResult:
        """The next result; ``StopAsyncIteration`` once stopped. Cancellation: nothing lost."""
        while not self._results:
            if self._stopped:
                raise StopAsyncIteration
            await self._ready.wait()
        return self._results.popleft()

    def _check(self, job: Job) -> None:
        if self._tg is None:
            raise RuntimeError("use the worker inside `async with`")
        if self._closing:
            raise WorkerClosedError(self.name)
        if not isinstance(job, JobRequest | JobSource):
            raise TypeError(f"a job is a JobRequest or a JobSource, got {type(job).__name__}")
        if isinstance(job, JobRequest) and self._client is None:
            raise ValueError("a JobRequest needs a worker with a client: Worker(client=...)")
        if job.id in self._queued or job.id in self._running:
            raise ValueError(f"a job with id {job.id!r} is already queued or running")

    async def _put(self, job: Job, sink: Collector | None) -> None:
        """Queue *job* once there is room. Cancellation: the job is not queued."""
        while True:
            self._check(job)
            if len(self._queued) < self._max_queued:
                self._enqueue(job, sink)
                return
            await self._room.wait()

    def _enqueue(self, job: Job, sink: Collector | None) -> None:
        entry = Entry(job, sink)
        self._queue.append(entry)
        self._queued[job.id] = entry
        self._counters.submitted += 1
        if sink is not None:
            sink.outstanding.add(job.id)
        self._work.set()

    # ------------------------------------------------------------------ cancelling

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; its result's error is a ``JobCancelledError``.

        Returns:
            Whether the job was queued or running (then it will end cancelled, even if it
            was about to finish).
        """
        entry = self._running.get(job_id)
        if entry is not None:
            self._cancel_running(entry, "cancelled")
            return True
        entry = self._queued.pop(job_id, None)
        if entry is None:
            return False
        entry.reason = "cancelled"
        self._finish(entry, None, None)
        return True

    def _cancel_running(self, entry: Entry, reason: str) -> None:
        entry.reason = entry.reason or reason
        entry.scope.cancel()

    def _cancel_queued(self, reason: str) -> None:
        queued, self._queued = self._queued, {}
        self._queue.clear()
        for entry in queued.values():
            entry.reason = reason
            self._finish(entry, None, None)

    # ------------------------------------------------------------------ running

    async def _dispatch(self) -> None:
        """Start queued jobs while slots are free. Cancelled with the worker."""
        assert self._tg is not None
        try:
            while True:
                while not self._queued or len(self._running) >= self._concurrency:
                    if self._closing and not self._queued:
                        return
                    await self._work.wait()
                entry = self._queue.popleft()
                if self._queued.get(entry.job.id) is not entry:
                    continue  # cancelled while queued
                del self._queued[entry.job.id]
                self._running[entry.job.id] = entry
                self._tg.start_soon(self._run, entry, name=f"{self.name} job {entry.job.id}")
                self._room.set()
        finally:
            self._dispatched = True
            self._idle.set()

    async def _run(self, entry: Entry) -> None:
        """Run one job in its own task and cancel scope; never raises but cancellation."""
        message: Message | None = None
        error: BaseException | None = None
        entry.start()
        try:
            with structlog.contextvars.bound_contextvars(job_id=entry.job.id), entry.scope:
                message, error = await self._attempts(entry)
        finally:  # also when an outer cancellation (the worker aborting) goes through
            self._finish(entry, message, error)

    async def _attempts(self, entry: Entry) -> tuple[Message | None, BaseException | None]:
        """Attempt the job, again while it fails transiently before its first event.

        Cancellation: propagates (the caller's cancel scope turns it into the result).
        """
        retry = self._retry
        while True:
            entry.attempts += 1
            try:
                return await self._attempt(entry), None
            except Exception as exc:
                if retry is None or entry.attempts > retry.max_retries or entry.events or not transient(exc):
                    return None, exc
                delay = retry.delay(entry.attempts - 1, None)
                _log.info("job_retry", attempt=entry.attempts, delay=round(delay, 3), error=repr(exc))
                await anyio.sleep(delay)

    async def _attempt(self, entry: Entry) -> Message:
        """Open the job's stream once and drive it to its final message.

        Cancellation: the stream closes its source (or response) as it leaves.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()  # do not open a source for a cancelled job
        meter = Subscription(entry, name=f"{self.name}.meter")
        request = await open_request(entry.job, self._pipeline, self._client, meter)
        async with request as stream:
            entry.stream, entry.request_id = stream, stream.request_id
            context = contextlib.nullcontext() if entry.request_id is None else (
                structlog.contextvars.bound_contextvars(request_id=entry.request_id)
            )
            with context:
                return await stream.get_final_message()

    def _finish(self, entry: Entry, message: Message | None, error: BaseException | None) -> None:
        """Record how *entry* ended and deliver its result (synchronous: safe in ``finally``)."""
        job_id = entry.job.id
        if self._running.get(job_id) is entry:
            del self._running[job_id]
        result = entry.result(message, error)
        self._counters.record(result)
        if result.error is not None and not isinstance(result.error, JobCancelledError):
            _log.info("job_failed", job_id=job_id, request_id=result.request_id, error=repr(result.error))
        if self._closing and self._report is None:
            (self._dropped if entry.reason == "shutdown" else self._drained).append(job_id)
        if entry.sink is not None:
            entry.sink.deliver(result)
        else:
            self._results.append(result)
            self._ready.set()
        self._work.set()
        self._room.set()
        if not self._queued and not self._running:
            self._idle.set()

    # ------------------------------------------------------------------ metrics

    def statistics(self) -> WorkerStatistics:
        """Return the worker's live counters."""
        return self._counters.snapshot(self.name, len(self._queued), self._running.values())
