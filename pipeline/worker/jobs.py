"""Jobs of a :class:`~pipeline.worker.Worker`, their results and the worker's counters.

A job is a :class:`JobRequest` (a Messages request the worker sends with its
:class:`~pipeline.MessagesClient`) or a :class:`JobSource` (a factory of an SSE body of your
own). Each ends as one :class:`JobResult`, whatever happens to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from typing import Any, final

import msgspec

from ..core.message import Message
from ..logs import redact_secrets

__all__ = ["Job", "JobRequest", "JobResult", "JobSource", "ShutdownReport", "WorkerStatistics"]


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """What every job has; submit a :class:`JobRequest` or a :class:`JobSource`.

    Attributes:
        id: Names the job in its result, in ``cancel()`` and in logs; unique among the
            worker's queued and running jobs.
        subscribers: Subscribers of this job's stream only (after the pipeline's).
    """

    id: str
    subscribers: Sequence[object] = ()


@final
class JobRequest(Job, frozen=True, kw_only=True):
    """A streaming Messages request, sent with the worker's client.

    Attributes:
        model: The model.
        max_tokens: The token limit.
        messages: The conversation.
        params: Other Messages API parameters (``system``, ``tools``, ``temperature``, ...).
        extra_headers: Headers added to the request.
    """

    model: str
    max_tokens: int
    messages: Sequence[Mapping[str, Any]]
    params: Mapping[str, Any] = {}
    extra_headers: Mapping[str, str] | None = None

    def __repr__(self) -> str:  # never an API key given in extra_headers
        fields = redact_secrets(None, "repr", {name: getattr(self, name) for name in self.__struct_fields__})
        return f"JobRequest({', '.join(f'{name}={value!r}' for name, value in fields.items())})"


@final
class JobSource(Job, frozen=True, kw_only=True):
    """An SSE body of your own.

    Attributes:
        open: Called when the job starts (again for each retry); returns the body, an
            ``AsyncIterable[bytes]`` or an ``httpx.Response`` opened with ``stream=True``,
            or an awaitable of one. It is closed when the job ends.
    """

    open: Callable[[], AsyncIterable[bytes] | Awaitable[Any] | Any]


@final
class JobResult(msgspec.Struct, frozen=True, kw_only=True):
    """How one job ended.

    Attributes:
        id: The job's id.
        message: The final message, or ``None`` when the job failed or was cancelled.
        error: ``None``; the stream's typed error (``error.partial_message`` holds what
            arrived), or what the job's ``open()`` raised; or
            :class:`~pipeline.errors.JobCancelledError`.
        attempts: How many times the stream was opened (0: cancelled while queued).
        started: When the job left the queue (``time.time()``), ``None`` if it never did.
        finished: When it ended (``time.time()``).
        events: Derived events its stream published.
        ttft: Seconds from the job's start to its first text or thinking event.
        request_id: The API's ``request-id``, when known.
    """

    id: str
    message: Message | None
    error: BaseException | None
    attempts: int
    started: float | None
    finished: float
    events: int
    ttft: float | None = None
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the job ended with its final message."""
        return self.error is None


@final
class ShutdownReport(msgspec.Struct, frozen=True):
    """What a shutdown did with the jobs queued or running when it began.

    Attributes:
        drained: Jobs that ended before the deadline (whatever their outcome), in order.
        cancelled: Jobs the shutdown cancelled: running at the deadline, or still queued.
    """

    drained: tuple[str, ...]
    cancelled: tuple[str, ...]


@final
class WorkerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Live counters of a worker (``submitted == queued + active + finished``).

    Attributes:
        name: The worker's name.
        submitted: Jobs accepted.
        queued: Jobs waiting for a slot.
        active: Jobs running.
        finished: Jobs ended: ``succeeded + failed + cancelled``.
        succeeded: Jobs ended with their final message.
        failed: Jobs ended with an error other than a cancellation.
        cancelled: Jobs ended with :class:`~pipeline.errors.JobCancelledError`.
        events: Derived events over all streams, running ones included.
        events_per_second: ``events`` over ``uptime``.
        ttft_p50: Median time to first token over the last 10,000 streams, in seconds.
        ttft_p99: 99th percentile of the same.
        uptime: Seconds since the worker started (until it stopped).
    """

    name: str
    submitted: int
    queued: int
    active: int
    finished: int
    succeeded: int
    failed: int
    cancelled: int
    events: int
    events_per_second: float
    ttft_p50: float | None
    ttft_p99: float | None
    uptime: float
