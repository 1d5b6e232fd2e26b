"""``Worker``: many streams at once, with a capacity limit, isolation, live metrics and a
graceful shutdown.

::

    async with pipeline.MessagesClient() as client, pipeline.Worker(client=client, concurrency=200) as worker:
        results = await worker.run(
            pipeline.JobRequest(id=str(i), model="claude-sonnet-4-5", max_tokens=1024,
                                messages=[{"role": "user", "content": prompt}])
            for i, prompt in enumerate(prompts)
        )

A job is a :class:`JobRequest` (a Messages request the worker sends with its
:class:`~pipeline.MessagesClient`) or a :class:`JobSource` (a factory of an SSE body, any
``AsyncIterable[bytes]`` or ``httpx.Response``, called when the job starts). Either runs
through the worker's :class:`~pipeline.Pipeline` (stages, shared subscribers, options) plus
the job's own subscribers, and ends as a :class:`JobResult`.

How jobs run
------------
Submitted jobs wait in a bounded FIFO queue (``max_queued``, default ``concurrency``):
``submit`` waits for room, ``submit_nowait`` raises ``anyio.WouldBlock``. A dispatcher task
starts the next job, in its own task of the worker's task group, whenever fewer than
``concurrency`` jobs run. Each job runs in its own cancel scope with ``job_id`` (and
``request_id`` once the response arrived) bound in structlog's context variables, so its
subscribers and stages log with them. Whatever a job raises becomes its ``JobResult.error``:
a failing or cancelled stream never affects another stream, nor the worker.

Results of jobs given to :meth:`Worker.run` are returned by it; results of jobs given to
``submit`` are yielded by ``async for result in worker.results()``, in completion order, until
the worker has stopped (they are kept until read). :meth:`Worker.shutdown` (also run when the
``async with`` block ends normally) stops taking jobs, lets queued and running jobs finish
until its deadline, then cancels the rest. Leaving the block by an exception or a
cancellation cancels every job at once.

For the layers above (the Redis fleet), besides the names below: :mod:`pipeline.worker.jobs`
(the job and result types) and :class:`pipeline.worker.wakeup.Signal` (the reusable wake-up
call the worker's tasks share). ``bookkeeping`` is private to this layer; whether a failed
job may run again is a retry rule, :func:`pipeline.client.retry.transient`.

Rule: imports ``client``, ``runtime``, ``core``, ``errors`` and ``logs``; anyio and structlog from outside.
"""

from __future__ import annotations

from .worker import (
    Job,
    JobRequest,
    JobResult,
    JobSource,
    ShutdownReport,
    Worker,
    WorkerStatistics,
)

__all__ = [
    "Job",
    "JobRequest",
    "JobResult",
    "JobSource",
    "ShutdownReport",
    "Worker",
    "WorkerStatistics",
]
