"""Scale-out through Redis Streams: submit jobs anywhere, run them on many worker processes,
follow any job's events live from any process. Needs ``pip install 'sse-pipeline[redis]'``.

::

    async with pipeline.redis_jobs.open_queue("redis://localhost:6379") as queue:
        await queue.submit(pipeline.JobRequest(id="job-1", model="claude-sonnet-4-5", max_tokens=1024,
                                               messages=[{"role": "user", "content": "Hello"}]))
        async for update in queue.follow("job-1"):
            if isinstance(update, AttemptStarted) and update.attempt > 1:
                ...  # a worker died: forget what earlier attempts sent
            elif isinstance(update, JobEvent) and update.type == "text":
                print(update.event["text"], end="")
            elif isinstance(update, JobFinished):
                print(update.message.stop_reason if update.ok else update.error)

    # on each worker machine (or: sse-pipeline worker --redis URL --concurrency 200)
    await RedisWorker("redis://localhost:6379", concurrency=200).run()

How it works
------------
``submit`` stores the request in the job's hash and adds the job id to the jobs stream
(XADD). Workers read the stream in one consumer group (XREADGROUP) and run each job with
a :class:`~pipeline.Worker` and its :class:`~pipeline.MessagesClient`. A job's derived
events go to its own events stream as they arrive: at most one XADD per received chunk
(all the events of the chunks that arrived since the last write, in one round trip),
never one per event; the stream is capped (MAXLEN ~). The final message, or the typed
error, is written exactly once (HSETNX, in a Lua script with the final events entry), then
the job is acknowledged (XACK).

Delivery is at least once. A worker that dies leaves its jobs pending; after
``claim_idle`` seconds live workers take them over (XAUTOCLAIM) and run them again.
Every run of a job is a numbered attempt; starting one writes an ``attempt`` marker in the
events stream, and :meth:`RedisQueue.follow` then yields :class:`AttemptStarted`: what
earlier attempts sent is abandoned, and their late events are dropped (Redis rejects
them: entry ids start with the attempt number). Only the current attempt can write the
result. Transient failures (the worker died, the API was overloaded or unreachable, the
body was cut) count; a job that failed ``max_attempts`` times goes to the dead-letter
stream with its last error, which becomes its result. Redis errors are retried with
backoff; every write is safe to repeat, so a Redis restart loses nothing (with
``appendonly yes``) and completes nothing twice.

Rule: the only layer that imports coredis; it imports ``worker``, ``client``, ``runtime``,
``core``, ``errors`` and ``logs`` (tests/test_layers.py).
"""

from __future__ import annotations

from .queue import (
    DEFAULT_QUEUE,
    AttemptStarted,
    DuplicateJobError,
    JobError,
    JobEvent,
    JobFinished,
    JobUpdate,
    RedisJobsError,
    RedisQueue,
    RedisUnavailableError,
    RedisWorker,
    RedisWorkerStatistics,
    UnknownJobError,
    open_queue,
)

__all__ = [
    "AttemptStarted",
    "DEFAULT_QUEUE",
    "DuplicateJobError",
    "JobError",
    "JobEvent",
    "JobFinished",
    "JobUpdate",
    "RedisJobsError",
    "RedisQueue",
    "RedisUnavailableError",
    "RedisWorker",
    "RedisWorkerStatistics",
    "UnknownJobError",
    "open_queue",
]
