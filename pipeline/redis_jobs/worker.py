"""``RedisWorker``: one worker process of a Redis-backed fleet (see :mod:`pipeline.redis_jobs`).

Four loops share one coredis client: *read* (XREADGROUP of new jobs while slots are
free), *reclaim* (XAUTOCLAIM of jobs pending longer than ``claim_idle`` on a dead worker),
*heartbeat* (XCLAIM of our own running jobs, so that a long job is never taken from a live
worker) and *metrics*. Each job runs in its own task: begin the attempt (Lua: number it,
mark the events stream), run it with the in-process :class:`~pipeline.Worker` while a
:class:`~pipeline.redis_jobs.publish.Publisher` writes its events, then write the result
(Lua, exactly once, only if this attempt is still the job's current one) and XACK.

``stop()`` stops reading, lets running jobs finish for ``drain_timeout`` seconds, then
hands the rest back to the queue (a fresh jobs entry; this attempt is abandoned).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import Any, Final, TypeVar, final

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus

from ..client.messages import MessagesClient
from ..client.retry import RetryPolicy, transient
from ..errors import JobCancelledError
from ..runtime.open import Pipeline
from ..worker.jobs import JobResult
from ..worker.wakeup import Signal
from ..worker.worker import Worker
from .codec import (
    ACK,
    BEGIN,
    DEFAULT_QUEUE,
    FAIL,
    FINISH,
    HANDBACK,
    HEARTBEAT,
    Keys,
    decode,
    decode_request,
    error_info,
)
from .conn import Redis, connect, retrying, safe_url
from .flight import Flight, RedisWorkerStatistics, flight_of
from .publish import Publisher

try:
    import coredis.exceptions
    from coredis.response.types import StreamPendingExt
except ImportError as exc:  # pragma: no cover
    raise ImportError("the Redis scale-out needs coredis: pip install 'sse-pipeline[redis]'") from exc

__all__ = ["RedisWorker", "RedisWorkerStatistics"]

T = TypeVar("T")
_READ_BLOCK_MS: Final = 1000  # a stop() is noticed within this long
_HANDBACK_GRACE: Final = 10.0  # seconds granted to hand jobs back after the drain deadline
_FLUSH_GRACE: Final = 5.0  # seconds granted to write a finished body's last events after a cancel
_log = structlog.get_logger("pipeline.redis")


@final
class RedisWorker:
    """Runs jobs from a Redis queue until :meth:`stop` (``sse-pipeline worker``).

    Args:
        url: The Redis URL (``redis://HOST:PORT``, ``rediss://...``, ``unix://PATH``).
        concurrency: The most jobs running at once in this process.
        base_url: The Messages API base URL (default: ``ANTHROPIC_BASE_URL`` or the real API).
        api_key: The API key (default: ``ANTHROPIC_API_KEY``).
        client: A client to use instead (not closed by the worker).
        pipeline: Stages, subscribers and options of every stream. Subscribers with side
            effects may see a job twice: jobs run at least once.
        queue: The queue's name.
        name: The consumer name (default: ``HOST-PID-RANDOM``); unique per process.
        claim_idle: Seconds a job may stay unacknowledged on a silent worker before live
            workers take it over. Longer delays recovery; shorter risks taking jobs from a
            worker whose event loop stalled (harmless, but wasted work). When unsure, 60.
        max_attempts: Transient failures after which a job is dead-lettered.
        drain_timeout: Seconds ``stop()`` lets running jobs finish before handing them back.
        metrics_interval: Seconds between two metrics log lines (``redis_worker_metrics``).
        events_maxlen: The approximate cap of each job's events stream (entries, each one
            received chunk); when unsure, keep 10,000.
        retention: Seconds a finished job's hash and events stream are kept (0: for ever).
        retry: The in-process worker's retries of a stream that failed transiently before
            its first event (after the client's own retries).
    """

    def __init__(
        self,
        url: str,
        *,
        concurrency: int = 100,
        base_url: str | None = None,
        api_key: str | None = None,
        client: MessagesClient | None = None,
        pipeline: Pipeline | None = None,
        queue: str = DEFAULT_QUEUE,
        name: str | None = None,
        claim_idle: float = 60.0,
        max_attempts: int = 3,
        drain_timeout: float = 30.0,
        metrics_interval: float = 10.0,
        events_maxlen: int = 10_000,
        retention: float = 86_400.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        for label, value in (("concurrency", concurrency), ("max_attempts", max_attempts)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        if claim_idle <= 0:
            raise ValueError(f"claim_idle must be > 0, got {claim_idle}")
        self._url, self._concurrency, self._keys = url, concurrency, Keys(queue)
        self._client, self._base_url, self._api_key = client, base_url, api_key
        self._pipeline = pipeline
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._claim_idle, self._max_attempts, self._drain_timeout = claim_idle, max_attempts, drain_timeout
        self._metrics_interval, self._maxlen, self._retention = metrics_interval, events_maxlen, int(retention)
        self._retry = retry
        self._redis: Redis | None = None
        self._worker: Worker | None = None
        self._scripts: dict[str, Any] = {}
        self._inflight: dict[bytes, Flight] = {}
        self._changed = Signal()  # a slot was freed, or stop() was called
        self._stopping = False
        self._read_scope: anyio.CancelScope | None = None  # around a blocking XREADGROUP
        self._counts = dict.fromkeys(
            ("done", "failed", "reclaimed", "retried", "dead_lettered", "handed_back", "superseded", "events"), 0
        )
        self._started: float | None = None

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> RedisWorkerStatistics:
        """Connect, take and run jobs until :meth:`stop`, then drain; return the counters.

        Redis being unreachable (at start or later) is retried with backoff for ever.

        Args:
            task_status: Started once the consumer group exists and reading begins.

        Cancellation: running jobs are cancelled and left pending: live workers reclaim
        them after ``claim_idle``. Use :meth:`stop` for a graceful end.
        """
        self._started = time.perf_counter()
        async with AsyncExitStack() as stack:
            redis = self._redis = await stack.enter_async_context(connect(self._url))
            scripts = (("begin", BEGIN), ("finish", FINISH), ("fail", FAIL), ("handback", HANDBACK), ("ack", ACK),
                       ("heartbeat", HEARTBEAT))  # fmt: skip
            for label, source in scripts:
                self._scripts[label] = redis.register_script(source)
            await self._call(self._create_group, "create_group")
            self._worker = await stack.enter_async_context(
                Worker(self._pipeline, concurrency=self._concurrency, client=await self._open_client(stack),
                       name=self.name, retry=self._retry)
            )  # fmt: skip
            _log.info("redis_worker_started", worker=self.name, redis=safe_url(self._url), queue=self._keys.name,
                      concurrency=self._concurrency)  # fmt: skip
            await self._serve(task_status)
        stats = self.statistics()
        _log.info("redis_worker_stopped", **msgspec.structs.asdict(stats))
        return stats

    async def _open_client(self, stack: AsyncExitStack) -> MessagesClient:
        if self._client is not None:
            return self._client
        client = MessagesClient(api_key=self._api_key, base_url=self._base_url, max_connections=self._concurrency)
        return await stack.enter_async_context(client)

    async def _serve(self, task_status: TaskStatus[None]) -> None:
        async with anyio.create_task_group() as background:
            background.start_soon(self._heartbeat_loop, name=f"{self.name} heartbeat")
            background.start_soon(self._metrics_loop, name=f"{self.name} metrics")
            async with anyio.create_task_group() as jobs:
                async with anyio.create_task_group() as intake:
                    intake.start_soon(self._intake_loop, jobs, name=f"{self.name} intake")
                    task_status.started()
                await self._return_orphans()
                await self._drain(jobs)
            background.cancel_scope.cancel()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopping

    def stop(self) -> None:
        """Stop taking jobs; running ones get ``drain_timeout`` seconds, then go back to
        the queue, and :meth:`run` returns. Safe to call at any time, more than once."""
        self._stopping = True
        if self._read_scope is not None:
            self._read_scope.cancel()  # what it was delivered meanwhile: see _return_orphans()
        self._changed.set()

    async def _drain(self, jobs: TaskGroup) -> None:
        """Wait for running jobs until the drain deadline, then hand the rest back."""
        with anyio.move_on_after(self._drain_timeout):
            while self._inflight:
                await self._changed.wait()
        if not self._inflight:
            return
        _log.warning("redis_worker_handback", worker=self.name, jobs=len(self._inflight))
        for flight in self._inflight.values():
            flight.handback = True
            if flight.run_scope is not None:
                flight.run_scope.cancel()
        with anyio.move_on_after(_HANDBACK_GRACE):
            while self._inflight:
                await self._changed.wait()
        jobs.cancel_scope.cancel()  # Redis is away: what is left stays pending, to be reclaimed

    def statistics(self) -> RedisWorkerStatistics:
        """Return the worker's live counters."""
        uptime = time.perf_counter() - self._started if self._started is not None else 0.0
        events = self._counts["events"]
        counts = self._counts
        return RedisWorkerStatistics(
            name=self.name, in_flight=len(self._inflight), done=counts["done"], failed=counts["failed"],
            reclaimed=counts["reclaimed"], retried=counts["retried"], dead_lettered=counts["dead_lettered"],
            handed_back=counts["handed_back"], superseded=counts["superseded"], events=events,
            events_per_second=events / uptime if uptime > 0 else 0.0, uptime=uptime,
        )  # fmt: skip

    # ------------------------------------------------------------------ loops

    async def _call(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        while True:
            try:
                return await retrying(operation, what=what, url=self._url, worker=self.name)
            except coredis.exceptions.StreamConsumerGroupError:  # a Redis without persistence restarted
                _log.warning("redis_group_lost", worker=self.name, queue=self._keys.name)
                await retrying(self._create_group, what="create_group", url=self._url, worker=self.name)

    async def _create_group(self) -> None:
        assert self._redis is not None
        try:  # from the stream's start: jobs submitted before any worker ran are read too
            await self._redis.xgroup_create(self._keys.jobs, self._keys.group, identifier="0", mkstream=True)
        except coredis.exceptions.StreamDuplicateConsumerGroupError:
            pass

    def _free(self) -> int:
        return 0 if self._stopping else max(0, self._concurrency - len(self._inflight))

    async def _intake_loop(self, jobs: TaskGroup) -> None:
        """Fill free slots: with a dead worker's jobs first (reclaimed every ``claim_idle / 2``
        seconds, before any new job), then with new ones. A backlog of new jobs therefore
        never delays a reclaimed job by more than the time until a slot frees."""
        interval = max(0.05, self._claim_idle / 2)
        due = 0.0  # the next reclaim pass: at once, then every interval
        while not self._stopping:
            if not self._free():
                await self._changed.wait()
                continue
            now = anyio.current_time()
            if now >= due:
                await self._reclaim(jobs)
                due = anyio.current_time() + interval
                continue
            await self._read(jobs, block_ms=max(1, min(_READ_BLOCK_MS, int((due - now) * 1000))))

    async def _read(self, jobs: TaskGroup, *, block_ms: int) -> None:
        """Start the new jobs one XREADGROUP gives (waiting up to *block_ms* for some)."""
        redis, keys = self._redis, self._keys
        assert redis is not None
        reply = None
        with anyio.CancelScope() as self._read_scope:
            read = partial(redis.xreadgroup, keys.group, self.name, {keys.jobs: ">"}, count=self._free(),
                           block=block_ms)  # fmt: skip
            reply = await self._call(read, "read")
        for entry in (reply or {}).get(keys.jobs.encode(), ()):
            self._start(jobs, entry, reclaimed=False)

    async def _reclaim(self, jobs: TaskGroup) -> None:
        """Start the jobs pending for longer than ``claim_idle`` (their worker is gone), as
        many as there are free slots."""
        redis, keys, idle_ms = self._redis, self._keys, int(self._claim_idle * 1000)
        assert redis is not None
        cursor = b"0-0"
        while self._free():
            claimed = await self._call(
                partial(redis.xautoclaim, keys.jobs, keys.group, self.name, idle_ms, cursor, count=self._free()),
                "reclaim",
            )
            cursor, entries = claimed[0], claimed[1]
            for entry in entries:
                self._counts["reclaimed"] += 1
                self._start(jobs, entry, reclaimed=True)
            if cursor in (b"0-0", "0-0"):
                break

    async def _return_orphans(self) -> None:
        """Queue again the jobs delivered to us that we never started (a read cancelled by
        ``stop()`` may have been delivered), so that nobody waits ``claim_idle`` for them."""
        redis, keys = self._redis, self._keys
        assert redis is not None
        pending = await self._call(
            partial(redis.xpending, keys.jobs, keys.group, "-", "+", 10_000, consumer=self.name), "orphans"
        )
        known = self._inflight
        ids = [p.identifier for p in pending if isinstance(p, StreamPendingExt) and p.identifier not in known]
        for entry_id in ids:  # each queued again and acked, if it is still ours (see codec.ACK)
            await self._ack_entry(entry_id, requeue=True)

    async def _heartbeat_loop(self) -> None:
        while True:
            await anyio.sleep(self._claim_idle / 3)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        """Reset the idle time of our running jobs' entries, so that nobody reclaims a live
        worker's jobs; an entry that another worker reclaimed meanwhile (we were frozen, or
        our link stalled) stays theirs, and our attempt of it is stopped."""
        ids = list(self._inflight)
        if not ids:
            return
        heartbeat, keys = self._scripts["heartbeat"], self._keys
        lost = await self._call(
            lambda: heartbeat(keys=[keys.jobs], args=[keys.group, self.name, *ids]), "heartbeat"
        )
        for entry_id in lost:
            flight = self._inflight.get(entry_id if isinstance(entry_id, bytes) else entry_id.encode())
            if flight is not None and flight.run_scope is not None:
                _log.info("job_taken_over", job_id=flight.job_id, attempt=flight.attempt)
                flight.run_scope.cancel()

    async def _metrics_loop(self) -> None:
        last, then = 0, time.perf_counter()
        while True:
            await anyio.sleep(self._metrics_interval)
            now, events = time.perf_counter(), self._counts["events"]
            stats = self.statistics()
            _log.info("redis_worker_metrics", worker=self.name, in_flight=stats.in_flight, done=stats.done,
                      failed=stats.failed, reclaimed=stats.reclaimed, retried=stats.retried,
                      dead_lettered=stats.dead_lettered, events=events,
                      events_per_second=round((events - last) / (now - then), 1))  # fmt: skip
            last, then = events, now

    # ------------------------------------------------------------------ one job

    def _start(self, jobs: TaskGroup, entry: Any, *, reclaimed: bool) -> None:
        if entry.identifier in self._inflight:  # reclaimed from ourselves while we run it
            return
        flight = flight_of(entry, reclaimed=reclaimed)
        self._inflight[entry.identifier] = flight
        jobs.start_soon(self._settle, flight, name=f"{self.name} job {flight.job_id}")

    async def _settle(self, flight: Flight) -> None:
        try:
            with structlog.contextvars.bound_contextvars(job_id=flight.job_id):
                await self._process(flight)
        finally:
            del self._inflight[flight.entry_id]
            self._changed.set()

    async def _process(self, flight: Flight) -> None:
        if not flight.job_id:  # not ours: an entry without a job id
            await self._ack(flight)
            return
        keys = self._keys
        args = [self._max_attempts, int(flight.reclaimed), self.name, self._maxlen, flight.entry_id]
        begin = self._scripts["begin"]
        status, attempt, data = await self._call(
            lambda: begin(keys=[keys.job(flight.job_id), keys.events(flight.job_id)], args=args), "begin"
        )
        flight.attempt = int(attempt)
        if status == b"run":
            await self._attempt(flight, data)
        elif status == b"dead":
            await self._dead_letter(flight, decode(data))
        else:  # missing, done, or busy: a duplicate entry of a job another worker runs
            await self._ack(flight)

    async def _attempt(self, flight: Flight, request_data: bytes) -> None:
        assert self._redis is not None and self._worker is not None
        scope = flight.run_scope = anyio.CancelScope()
        publisher = Publisher(self._redis, self._url, self._keys.events(flight.job_id), flight.attempt, self._maxlen,
                              scope)  # fmt: skip
        try:
            request = decode_request(f"{flight.job_id}#{flight.attempt}", request_data, (publisher,))
        except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
            await self._finish(flight, None, {"type": "InvalidJobError", "message": f"cannot decode the job: {exc}"})
            return
        result: JobResult | None = None
        with scope:
            if flight.handback:
                scope.cancel()
            async with anyio.create_task_group() as tg:
                tg.start_soon(publisher.run)
                (result,) = await self._worker.run([request])
                publisher.close()
        if result is not None and result.error is None and not publisher.flushed and not publisher.failed:
            # The body ended but its events were still being written when the attempt was
            # cancelled (a drain deadline): the result may be written only after them.
            with anyio.move_on_after(_FLUSH_GRACE, shield=True):
                await publisher.flush()
        self._counts["events"] += publisher.published
        await self._outcome(flight, result, publisher)

    async def _outcome(self, flight: Flight, result: JobResult | None, publisher: Publisher) -> None:
        if publisher.superseded:
            self._counts["superseded"] += 1
            _log.info("attempt_superseded", attempt=flight.attempt)
        elif publisher.error is not None:
            await self._fail(flight, publisher.error)
        elif result is None or isinstance(result.error, JobCancelledError):
            await self._hand_back(flight)
        elif result.error is None and not publisher.flushed:  # events lost: never a result beside them
            await self._hand_back(flight)
        elif result.error is None:
            assert result.message is not None
            await self._finish(flight, result.message.to_dict(), None)
        elif transient(result.error):
            await self._fail(flight, result.error)
        else:
            await self._finish(flight, None, error_info(result.error))

    # ------------------------------------------------------------------ settling

    async def _finish(
        self, flight: Flight, message: dict[str, Any] | None, error: dict[str, Any] | None, *, dead: bool = False
    ) -> None:
        """Write the job's result, once, if this attempt is still current; then XACK."""
        payload = msgspec.json.encode({
            "attempt": flight.attempt, "message": message, "error": error, "dead_lettered": dead,
            "worker": self.name, "finished": time.time(),
        })  # fmt: skip
        keys, finish = self._keys, self._scripts["finish"]
        args = [flight.attempt, payload, self._maxlen, self._retention]
        written = await self._call(
            lambda: finish(keys=[keys.job(flight.job_id), keys.events(flight.job_id)], args=args), "finish"
        )
        if not written:
            self._counts["superseded"] += 1
            return
        self._counts["failed" if error is not None else "done"] += 1
        await self._ack(flight)

    async def _fail(self, flight: Flight, error: BaseException) -> None:
        """Count a transient failure: queue the job again, or dead-letter it."""
        info = error_info(error)
        fail = self._scripts["fail"]
        failures = await self._call(
            lambda: fail(keys=[self._keys.job(flight.job_id)], args=[flight.attempt, msgspec.json.encode(info)]),
            "fail",
        )
        _log.info("attempt_failed", attempt=flight.attempt, failures=failures, error=info["message"])
        if failures < 0:
            self._counts["superseded"] += 1
        elif failures >= self._max_attempts:
            await self._dead_letter(flight, info)
        else:
            self._counts["retried"] += 1
            await self._ack(flight, requeue=True)

    async def _dead_letter(self, flight: Flight, error: dict[str, Any]) -> None:
        redis = self._redis
        assert redis is not None
        entry: dict[str, str | bytes] = {
            "id": flight.job_id, "attempts": str(flight.attempt), "error": msgspec.json.encode(error)
        }
        # the dead-letter entry first: a crash before the result repeats it (at least once)
        await self._call(lambda: redis.xadd(self._keys.dead, entry), "dead_letter")
        self._counts["dead_lettered"] += 1
        _log.warning("job_dead_lettered", attempts=flight.attempt, error=error.get("message"))
        await self._finish(flight, None, error, dead=True)

    async def _hand_back(self, flight: Flight) -> None:
        handback = self._scripts["handback"]
        mine = await self._call(
            lambda: handback(keys=[self._keys.job(flight.job_id)], args=[flight.attempt]), "handback"
        )
        if mine:
            self._counts["handed_back"] += 1
            await self._ack(flight, requeue=True)
        else:
            self._counts["superseded"] += 1

    async def _ack(self, flight: Flight, *, requeue: bool = False) -> None:
        """XACK (and XDEL) the job's entry if it is still ours; with *requeue*, add a fresh
        entry for the job first. An entry another worker reclaimed is left to it."""
        await self._ack_entry(flight.entry_id, requeue=requeue and bool(flight.job_id))

    async def _ack_entry(self, entry_id: bytes | str, *, requeue: bool) -> None:
        ack, keys = self._scripts["ack"], self._keys
        args = [keys.group, self.name, entry_id, "1" if requeue else "0"]
        if not await self._call(lambda: ack(keys=[keys.jobs], args=args), "ack"):
            _log.info("entry_not_ours", entry=entry_id if isinstance(entry_id, str) else entry_id.decode())
