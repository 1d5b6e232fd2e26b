"""The bookkeeping of :class:`~pipeline.worker.Worker`: one entry per job, counters, results.

Private to the worker layer. Everything here is synchronous but :func:`open_request` and
``Results.__anext__``; the worker calls them from its tasks.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Final, final

import anyio

from ..client.messages import MessagesClient
from ..core.events import TextEvent, ThinkingEvent
from ..core.message import Message
from ..errors import APIError, JobCancelledError, PipelineError
from ..runtime.open import Pipeline
from ..runtime.stream import MessageStream
from ..runtime.subscription import Subscription
from .jobs import Job, JobRequest, JobResult, JobSource, WorkerStatistics

__all__ = ["Collector", "Counters", "Entry", "Results", "open_request"]

_TTFT_WINDOW: Final = 10_000  # percentiles are over the last this many streams
_TOKENS: Final = (TextEvent, ThinkingEvent)


async def open_request(
    job: Job, config: Pipeline, client: MessagesClient | None, meter: Subscription
) -> AbstractAsyncContextManager[MessageStream]:
    """What ``async with`` opens for one attempt of *job*: the client's request, or a
    stream over the job's own source, with the pipeline's and the job's subscribers.

    Cancellation: only an awaitable returned by ``job.open()`` is awaited; what it opens
    is its own affair.
    """
    subscribers = (meter, *job.subscribers)
    if isinstance(job, JobRequest):
        assert client is not None
        return client.stream(
            model=job.model, max_tokens=job.max_tokens, messages=job.messages,
            subscribers=(*config.subscribers, *subscribers), stages=config.stages,
            allow_incomplete=config.allow_incomplete, idle_timeout=config.idle_timeout, limits=config.limits,
            extra_headers=job.extra_headers, **job.params,
        )  # fmt: skip
    assert isinstance(job, JobSource)
    source = job.open()
    if inspect.isawaitable(source):
        source = await source
    return config.open_stream(source, subscribers=subscribers)


@final
class Collector:
    """Where the results of one ``Worker.run()`` call go."""

    __slots__ = ("results", "outstanding", "idle")

    def __init__(self) -> None:
        self.results: list[JobResult] = []
        self.outstanding: set[str] = set()
        self.idle = anyio.Event()

    def deliver(self, result: JobResult) -> None:
        self.results.append(result)
        self.outstanding.discard(result.id)
        if not self.outstanding:
            self.idle.set()


@final
class Entry:
    """One job, from submission to its result; also the worker's sync subscriber on the
    job's stream (``on_event`` counts events and stamps the first token)."""

    __slots__ = ("job", "sink", "scope", "reason", "stream", "attempts", "started", "clock", "request_id", "events",
                 "first_token")  # fmt: skip

    def __init__(self, job: Job, sink: Collector | None) -> None:
        self.job = job
        self.sink = sink
        self.scope = anyio.CancelScope()
        self.reason: str | None = None  # why it was cancelled
        self.stream: MessageStream | None = None
        self.attempts = self.events = 0
        self.started: float | None = None
        self.clock = 0.0
        self.request_id: str | None = None
        self.first_token: float | None = None

    def on_event(self, event: object) -> None:
        self.events += 1
        if self.first_token is None and isinstance(event, _TOKENS):
            self.first_token = time.perf_counter()

    def start(self) -> None:
        self.started, self.clock = time.time(), time.perf_counter()

    def result(self, message: Message | None, error: BaseException | None) -> JobResult:
        """The job's result. A job with a cancel reason, or that ended with neither a
        message nor an error (an outer cancellation), ends with ``JobCancelledError``."""
        if self.reason is not None or (message is None and error is None):
            partial = error.partial_message if isinstance(error, PipelineError) else None
            if partial is None and self.stream is not None:
                partial = self.stream.current_message_snapshot
            message, error = None, JobCancelledError(self.job.id, self.reason or "aborted", partial)
        if isinstance(error, APIError) and self.request_id is None:
            self.request_id = error.request_id
        ttft = None if self.first_token is None else self.first_token - self.clock
        return JobResult(
            id=self.job.id, message=message, error=error, attempts=self.attempts, started=self.started,
            finished=time.time(), events=self.events, ttft=ttft, request_id=self.request_id,
        )  # fmt: skip


def _percentile(ordered: list[float], q: float) -> float | None:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


@final
class Counters:
    """A worker's counters over its whole life."""

    __slots__ = ("submitted", "succeeded", "failed", "cancelled", "events", "ttfts", "started", "stopped")

    def __init__(self) -> None:
        self.submitted = self.succeeded = self.failed = self.cancelled = self.events = 0
        self.ttfts: deque[float] = deque(maxlen=_TTFT_WINDOW)
        self.started: float | None = None
        self.stopped: float | None = None

    def record(self, result: JobResult) -> None:
        self.events += result.events
        if result.ttft is not None:
            self.ttfts.append(result.ttft)
        if isinstance(result.error, JobCancelledError):
            self.cancelled += 1
        elif result.error is not None:
            self.failed += 1
        else:
            self.succeeded += 1

    def snapshot(self, name: str, queued: int, running: Iterable[Entry]) -> WorkerStatistics:
        running = list(running)
        end = self.stopped if self.stopped is not None else time.perf_counter()
        uptime = end - self.started if self.started is not None else 0.0
        events = self.events + sum(entry.events for entry in running)
        ttfts = sorted(self.ttfts)
        return WorkerStatistics(
            name=name, submitted=self.submitted, queued=queued, active=len(running),
            finished=self.succeeded + self.failed + self.cancelled, succeeded=self.succeeded, failed=self.failed,
            cancelled=self.cancelled, events=events, events_per_second=events / uptime if uptime > 0 else 0.0,
            ttft_p50=_percentile(ttfts, 0.5), ttft_p99=_percentile(ttfts, 0.99), uptime=uptime,
        )  # fmt: skip


@final
class Results:
    """``async for result in worker.results()``."""

    __slots__ = ("_next",)

    def __init__(self, next_result: Callable[[], Awaitable[JobResult]]) -> None:
        self._next = next_result

    def __aiter__(self) -> Results:
        return self

    async def __anext__(self) -> JobResult:
        """The next result. Cancellation: no result is lost."""
        return await self._next()
