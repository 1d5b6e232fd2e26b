"""The submitting side of the fleet: ``RedisQueue`` (submit, follow, result) and ``open_queue``."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Final, final

import msgspec

from ..core.message import Message, block_from_dict
from ..worker.jobs import JobRequest
from .codec import DEFAULT_QUEUE, SUBMIT, Keys, decode, encode_request, parse_id
from .conn import CONNECT_TIMEOUT, Redis, RedisJobsError, RedisUnavailableError, check_url, connect, retrying
from .worker import RedisWorker, RedisWorkerStatistics

__all__ = [
    "AttemptStarted", "DEFAULT_QUEUE", "DuplicateJobError", "JobError", "JobEvent", "JobFinished", "JobUpdate",
    "RedisJobsError", "RedisQueue", "RedisUnavailableError", "RedisWorker", "RedisWorkerStatistics",
    "UnknownJobError", "open_queue",
]  # fmt: skip

_BATCH: Final = 256  # events entries read per XREAD
_DEAD_PAGE: Final = 512  # dead-letter entries read per XRANGE


class UnknownJobError(RedisJobsError):
    """No job with this id was submitted to the queue (or its result expired).

    Attributes:
        job_id: The id asked for.
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id!r} in the queue (never submitted, or expired)")


class DuplicateJobError(RedisJobsError):
    """A job with this id but another request was already submitted.

    Attributes:
        job_id: The id.
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"a different job with id {job_id!r} was already submitted")


@final
class JobError(msgspec.Struct, frozen=True, kw_only=True):
    """The error a job ended with, as plain data (it crossed processes).

    Attributes:
        type: The exception's class name, e.g. ``"OverloadedError"``, ``"WorkerLostError"``.
        message: Its message.
        error_type: The API's error type for an ``APIError``.
        status_code: The HTTP status of an API error answer.
        request_id: The API's ``request-id``, when known.
        partial_message: What the stream accumulated before it failed (``to_dict()`` form).
    """

    type: str
    message: str
    error_type: str | None = None
    status_code: int | None = None
    request_id: str | None = None
    partial_message: dict[str, Any] | None = None


@final
class AttemptStarted(msgspec.Struct, frozen=True, kw_only=True):
    """A worker started attempt number ``attempt`` of the job. When ``attempt > 1``, every
    event of the earlier attempts is abandoned: discard what you showed of them."""

    job_id: str
    attempt: int
    worker: str


@final
class JobEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One derived event of the job's current attempt.

    Attributes:
        job_id: The job.
        attempt: The attempt that produced it.
        event: The event's ``to_dict()`` (as the official SDK gives it), without the
            ``snapshot`` of ``text``, ``thinking``, ``input_json`` and ``citation`` events.
    """

    job_id: str
    attempt: int
    event: dict[str, Any]

    @property
    def type(self) -> str:
        """The event's type, e.g. ``"text"``."""
        return str(self.event["type"])


@final
class JobFinished(msgspec.Struct, frozen=True, kw_only=True):
    """How the job ended: the last update :meth:`RedisQueue.follow` yields.

    Attributes:
        job_id: The job.
        attempt: The attempt whose result this is (authoritative, whatever was streamed).
        message: The final message, or ``None`` when the job failed.
        error: The error, or ``None``.
        dead_lettered: Whether the job failed ``max_attempts`` times and went to the
            dead-letter stream.
        worker: The worker that wrote the result.
        finished: When (``time.time()``).
    """

    job_id: str
    attempt: int
    message: Message | None
    error: JobError | None
    dead_lettered: bool
    worker: str
    finished: float

    @property
    def ok(self) -> bool:
        """Whether the job ended with its final message."""
        return self.error is None


JobUpdate = AttemptStarted | JobEvent | JobFinished
"""What :meth:`RedisQueue.follow` yields."""


def _message(data: dict[str, Any] | None) -> Message | None:
    if data is None:
        return None
    content = data.pop("content", [])
    return Message(data, [block_from_dict(block) for block in content])


def finished_from(job_id: str, data: bytes) -> JobFinished:
    """Decode a result written by a worker."""
    fields = decode(data)
    error = fields.get("error")
    return JobFinished(
        job_id=job_id, attempt=fields["attempt"], message=_message(fields.get("message")),
        error=msgspec.convert(error, JobError) if error is not None else None,
        dead_lettered=fields.get("dead_lettered", False), worker=fields.get("worker", ""),
        finished=fields.get("finished", 0.0),
    )  # fmt: skip


@final
class RedisQueue:
    """The client side of a queue: submit jobs, follow them. Made by :func:`open_queue`.

    Args:
        redis: An open coredis client (``decode_responses=False``).
        url: The Redis URL, for errors.
        name: The queue's name: the prefix of its keys; workers must use the same.
        timeout: Seconds a call keeps retrying while Redis is unreachable before it
            raises :class:`RedisUnavailableError`.
    """

    __slots__ = ("_redis", "_url", "_keys", "_timeout", "_submit")

    def __init__(self, redis: Redis, *, url: str, name: str = DEFAULT_QUEUE, timeout: float = 10.0) -> None:
        self._redis = redis
        self._url = url
        self._keys = Keys(name)
        self._timeout = timeout
        self._submit = redis.register_script(SUBMIT)

    async def _call(self, operation: Callable[[], Any], what: str) -> Any:
        return await retrying(operation, what=what, url=self._url, deadline=self._timeout)

    async def submit(self, job: JobRequest) -> str:
        """Store *job* and queue it for the workers; return its id.

        Submitting the same request under the same id again is harmless (the job runs
        once); it is how to retry a submit that failed with a connection error.

        Cancellation: the job may or may not have been queued.

        Raises:
            DuplicateJobError: Another request was submitted under this id.
            ValueError: The job carries subscribers, or its id is empty.
            RedisUnavailableError: Redis was unreachable for ``timeout`` seconds.
        """
        request, keys = encode_request(job), self._keys
        created = await self._call(
            lambda: self._submit(keys=[keys.job(job.id)], args=[request, repr(time.time())]), "submit"
        )
        if created == 0:
            raise DuplicateJobError(job.id)
        await self._call(lambda: self._redis.xadd(keys.jobs, {"id": job.id}), "submit")
        return job.id

    def follow(self, job_id: str, *, poll: float = 1.0) -> _Follower:
        """Tail the job's updates live: :class:`AttemptStarted`, :class:`JobEvent` (of the
        current attempt only) and, last, :class:`JobFinished`. Starts from the job's first
        event, whenever you call it (events capped away by MAXLEN are skipped).

        Args:
            job_id: The job.
            poll: Seconds one XREAD BLOCK waits before checking that the job still exists.

        Raises (while iterating):
            UnknownJobError: The job was never submitted, or expired.
            RedisUnavailableError: Redis was unreachable for ``timeout`` seconds.
        """
        return _Follower(self, job_id, poll)

    async def result(self, job_id: str) -> JobFinished:
        """Wait for the job's result and return it (events are read and dropped).

        Cancellation: nothing to undo.
        """
        async for update in self.follow(job_id):
            if isinstance(update, JobFinished):
                return update
        raise AssertionError("unreachable")  # pragma: no cover

    async def exists(self, job_id: str) -> bool:
        """Whether a job with this id is known to the queue."""
        return bool(await self._call(lambda: self._redis.exists([self._keys.job(job_id)]), "exists"))

    async def dead_letters(self, count: int = 100) -> list[tuple[str, JobError]]:
        """The oldest *count* dead-lettered jobs, each once: (job id, the error it ended with).

        A job can have several entries in the dead-letter stream: a worker killed between
        its dead-letter write and its result write (two keys in different Redis Cluster
        slots: no script can make them one write) leaves an entry of an attempt that did not
        end the job, which then runs again and is dead-lettered again; a retried write
        repeats an entry. Of a job's entries this lists the one of the attempt its result
        names; while the job has no result (not written yet, or expired), the one of its
        latest attempt; none when the result says the job ended otherwise. Jobs come in the
        order of their first entry.

        Reads entries until the first *count* jobs are settled: to the end of the stream
        when one of them has no result yet.

        Cancellation: nothing to undo.
        """
        dead = _DeadLetters(self)
        while not await dead.settle(count):
            await dead.read()
        return dead.listed

class _ResultHead(msgspec.Struct):
    """The fields of a stored result that :meth:`RedisQueue.dead_letters` reads."""

    attempt: int
    dead_lettered: bool = False


_result_head: Final = msgspec.json.Decoder(_ResultHead).decode


@final
class _DeadLetters:
    """One :meth:`RedisQueue.dead_letters` call: the entries read so far, grouped by job, and
    the jobs settled so far, in the order of their first entry."""

    __slots__ = ("_queue", "_errors", "_heads", "_order", "_next", "_start", "_ended", "listed")

    def __init__(self, queue: RedisQueue) -> None:
        self._queue = queue
        self._errors: dict[str, dict[int, bytes]] = {}  # job -> attempt -> error JSON
        self._heads: dict[str, _ResultHead | None] = {}  # job -> its result, as read once
        self._order: list[str] = []  # jobs by first entry
        self._next = 0  # the first job of _order not settled yet
        self._start = "-"
        self._ended = False
        self.listed: list[tuple[str, JobError]] = []

    async def read(self) -> None:
        """Read the next page of entries."""
        redis, key, start = self._queue._redis, self._queue._keys.dead, self._start
        page = await self._queue._call(lambda: redis.xrange(key, start, "+", count=_DEAD_PAGE), "dead_letters")
        self._ended = len(page) < _DEAD_PAGE
        for entry in page:
            fields = entry.field_values
            job_id = fields[b"id"].decode()
            if job_id not in self._errors:
                self._errors[job_id] = {}
                self._order.append(job_id)
            self._errors[job_id][int(fields[b"attempts"])] = fields[b"error"]
        if page:
            last = page[-1].identifier
            self._start = "(" + (last.decode() if isinstance(last, bytes) else last)

    async def settle(self, count: int) -> bool:
        """List the jobs that can be settled from what was read; whether *count* are listed
        (or the stream is read to its end)."""
        while len(self.listed) < count and self._next < len(self._order):
            job_id = self._order[self._next]
            errors = self._errors[job_id]
            head = await self._result(job_id)
            attempt: int | None = None
            if head is not None and head.attempt in errors:
                attempt = head.attempt
            elif head is not None and not head.dead_lettered:
                pass  # its result is final and not a dead letter: its entries are stale
            elif not self._ended:
                return False  # the entry of its result, or a later attempt, may come next
            else:
                attempt = max(errors)
            if attempt is not None:
                self.listed.append((job_id, msgspec.convert(decode(errors[attempt]), JobError)))
            self._next += 1
        return len(self.listed) >= count or self._ended

    async def _result(self, job_id: str) -> _ResultHead | None:
        # read once per job and call: a job with no result yet is asked about again after
        # every page until the stream ends, which would be a round trip per page
        if job_id not in self._heads:
            redis, key = self._queue._redis, self._queue._keys.job(job_id)
            data = await self._queue._call(lambda: redis.hget(key, "result"), "dead_letters")
            self._heads[job_id] = _result_head(data) if data is not None else None
        return self._heads[job_id]


@final
class _Follower:
    """``async for update in queue.follow(job_id)``: reads ahead one XREAD at a time."""

    __slots__ = ("_queue", "_job_id", "_poll", "_key", "_last", "_floor", "_current", "_ready", "_done", "_checked")

    def __init__(self, queue: RedisQueue, job_id: str, poll: float) -> None:
        self._queue, self._job_id, self._poll = queue, job_id, poll
        self._key = queue._keys.events(job_id)
        self._last = b"0-0"
        self._floor = 0  # entries of older attempts are abandoned: dropped
        self._current = 0  # the attempt announced last
        self._ready: deque[JobUpdate] = deque()
        self._done = self._checked = False

    def __aiter__(self) -> _Follower:
        return self

    async def __anext__(self) -> JobUpdate:
        """The next update. Cancellation: nothing is lost; iterate again to go on."""
        while not self._ready:
            if self._done:
                raise StopAsyncIteration
            if not self._checked:
                # attempts older than the current one are abandoned already: skip them
                self._floor = await self._current_attempt()
                self._checked = True
            await self._read()
        return self._ready.popleft()

    async def _current_attempt(self) -> int:
        redis, key = self._queue._redis, self._queue._keys.job(self._job_id)
        fields = await self._queue._call(lambda: redis.hmget(key, ["request", "attempt"]), "follow")
        if fields[0] is None:
            raise UnknownJobError(self._job_id)
        return int(fields[1] or 0)

    async def _read(self) -> None:
        redis, key = self._queue._redis, self._key
        reply = await self._queue._call(
            lambda: redis.xread({key: self._last}, count=_BATCH, block=int(self._poll * 1000)), "follow"
        )
        if not reply:
            await self._current_attempt()  # raises once the job is gone
            return
        for entry in reply.get(key.encode(), ()):
            self._last = entry.identifier
            self._take(parse_id(entry.identifier)[0], entry.field_values)

    def _take(self, attempt: int, fields: Any) -> None:
        kind = fields[b"k"]
        if kind == b"f":
            self._ready.append(finished_from(self._job_id, fields[b"d"]))
            self._done = True
            return
        if attempt < max(self._floor, self._current):
            return  # an event of an abandoned attempt
        if attempt > self._current:  # announced by its marker (or its first entry, if capped away)
            self._current = attempt
            worker = fields.get(b"w", b"").decode()
            self._ready.append(AttemptStarted(job_id=self._job_id, attempt=attempt, worker=worker))
        if kind == b"e":
            self._ready.extend(JobEvent(job_id=self._job_id, attempt=attempt, event=e) for e in decode(fields[b"d"]))


@final
class _OpenQueue:
    """``async with open_queue(url) as queue``."""

    __slots__ = ("_url", "_name", "_timeout", "_cm")

    def __init__(self, url: str, name: str, timeout: float) -> None:
        self._url, self._name, self._timeout = url, name, timeout
        self._cm: AbstractAsyncContextManager[Redis] | None = None

    async def __aenter__(self) -> RedisQueue:
        # one connection attempt within the timeout, so that the first call can fail in time
        self._cm = connect(self._url, connect_timeout=min(self._timeout, CONNECT_TIMEOUT))
        redis = await self._cm.__aenter__()
        return RedisQueue(redis, url=self._url, name=self._name, timeout=self._timeout)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._cm is not None
        return await self._cm.__aexit__(exc_type, exc, tb)


def open_queue(url: str, *, name: str = DEFAULT_QUEUE, timeout: float = 10.0) -> _OpenQueue:
    """Connect to the queue *name* on the Redis at *url*; ``async with`` it.

    Args:
        url: ``redis://[[USER]:PASSWORD@]HOST:PORT[/DB]``, ``rediss://...`` or ``unix://PATH``.
        name: The queue's name (workers must use the same).
        timeout: Seconds each call keeps retrying while Redis is unreachable (a connection
            attempt waits at most as long, and at most 5 s). When unsure: the default for a
            service that should ride out a Redis restart; 3 for a person at a terminal.

    Raises:
        ValueError: *url* is not a Redis URL (at once).
    """
    check_url(url)
    Keys(name)
    return _OpenQueue(url, name, timeout)

