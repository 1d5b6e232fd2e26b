"""The Redis scale-out in one process: submit, follow, results, attempts, dead letters, errors.

Workers run in-process here (``RedisWorker.run`` in a task) against the embedded fake
server and a private redis-server; tests/test_redis_processes.py runs real worker
processes. Every wait is on an update, a result or a poll with a deadline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

pytest.importorskip("coredis")

import pipeline  # noqa: E402
from pipeline.client import RetryPolicy  # noqa: E402
from pipeline.core.encode import encode_derived as wire_events  # noqa: E402
from pipeline.fake_server import FakeServer, ReceivedRequest, Script  # noqa: E402
from pipeline.redis_jobs import (  # noqa: E402
    AttemptStarted,
    DuplicateJobError,
    JobEvent,
    JobFinished,
    RedisQueue,
    RedisUnavailableError,
    RedisWorker,
    UnknownJobError,
    open_queue,
)
from pipeline.redis_jobs.codec import decode, encode  # noqa: E402
from pipeline.testing import aiter_chunks, chunk_events, text_builder  # noqa: E402
from tests.redis_server import (  # noqa: E402, F401
    RedisServer,
    eventually,
    needs_redis,
    queue_name_fixture,
    redis_server_fixture,
)

pytestmark = needs_redis

FAST = RetryPolicy(max_retries=1, initial_delay=0.0, max_delay=0.0)


def body_for(seed: int, deltas: int = 20) -> bytes:
    return text_builder(deltas, seed=seed).build()


async def expected(body: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The wire events and the final message the in-process pipeline gives for *body*."""
    async with pipeline.open_stream(aiter_chunks(chunk_events(body))) as stream:
        events = [event async for event in stream]
        message = await stream.get_final_message()
    return decode(wire_events(events)), decode(pipeline_json(message.to_dict()))


def pipeline_json(value: Any) -> bytes:
    """JSON, as the worker writes it (datetimes as strings)."""
    return bytes(encode(value))


def request(job_id: str, prompt: str = "hello") -> pipeline.JobRequest:
    messages = [{"role": "user", "content": prompt}]
    return pipeline.JobRequest(id=job_id, model="claude-test", max_tokens=64, messages=messages)


def by_prompt(make: Callable[[str], Script]) -> Callable[[ReceivedRequest], Script]:
    """A fake server script chosen by the request's prompt."""
    return lambda received: make(received.json["messages"][-1]["content"])


@asynccontextmanager
async def worker_running(url: str, server_url: str, queue: str, **options: Any) -> AsyncIterator[RedisWorker]:
    """A RedisWorker running in a task; stopped gracefully when the block ends."""
    options = {"concurrency": 4, "claim_idle": 0.5, "retry": FAST, "drain_timeout": 5.0, **options}
    client = pipeline.MessagesClient(api_key="k", base_url=server_url, retry=FAST)
    worker = RedisWorker(url, client=client, queue=queue, **options)
    async with client, anyio.create_task_group() as tg:
        await tg.start(worker.run)
        yield worker
        worker.stop()


async def updates(queue: RedisQueue, job_id: str) -> list[Any]:
    with anyio.fail_after(20):
        return [update async for update in queue.follow(job_id)]


async def test_submit_follow_round_trip(redis_server: RedisServer, queue_name: str) -> None:
    """follow() yields the attempt, every event in order, then the same final message as
    the in-process pipeline on the same body."""
    body = body_for(1)
    events, message = await expected(body)
    async with FakeServer([Script(body=body)]) as server, open_queue(redis_server.url, name=queue_name) as queue:
        assert await queue.submit(request("job-1")) == "job-1"
        async with worker_running(redis_server.url, server.url, queue_name) as worker:
            got = await updates(queue, "job-1")
        assert worker.statistics().done == 1
    first, *middle, last = got
    assert first == AttemptStarted(job_id="job-1", attempt=1, worker=worker.name)
    assert all(isinstance(u, JobEvent) and u.attempt == 1 for u in middle)
    assert [u.event for u in middle] == events
    assert isinstance(last, JobFinished) and last.ok and last.attempt == 1 and not last.dead_lettered
    assert last.message is not None and decode(pipeline_json(last.message.to_dict())) == message


async def test_events_are_batched_per_chunk(redis_server: RedisServer, queue_name: str) -> None:
    """Events go to Redis in batches: far fewer entries than events, complete and in order."""
    body = body_for(2, deltas=200)
    events, _ = await expected(body)
    async with FakeServer([Script(body=body)]) as server, open_queue(redis_server.url, name=queue_name) as queue:
        await queue.submit(request("big"))
        async with worker_running(redis_server.url, server.url, queue_name):
            finished = await queue.result("big")
        entries = await queue._redis.xrange(queue._keys.events("big"))
    assert finished.ok
    kinds = [entry.field_values[b"k"] for entry in entries]
    assert kinds[0] == b"a" and kinds[-1] == b"f" and set(kinds[1:-1]) == {b"e"}
    batches = [decode(entry.field_values[b"d"]) for entry in entries[1:-1]]
    assert [event for batch in batches for event in batch] == events
    assert len(batches) * 10 < len(events)


async def test_result_is_written_once_and_resubmitting_is_harmless(redis_server: RedisServer, queue_name: str) -> None:
    async with FakeServer() as server, open_queue(redis_server.url, name=queue_name) as queue:
        await queue.submit(request("same"))
        await queue.submit(request("same"))  # the same request again: a retried submit
        with pytest.raises(DuplicateJobError, match=r"^a different job with id 'same' was already submitted$"):
            await queue.submit(request("same", prompt="something else"))
        async with worker_running(redis_server.url, server.url, queue_name) as worker:
            finished = await queue.result("same")

            async def no_entry_left() -> bool:  # the duplicate entry is acknowledged, not run
                return await queue._redis.xlen(queue._keys.jobs) == 0

            await eventually(no_entry_left)
        assert finished.ok and finished.attempt == 1
        assert server.statistics().streams_completed == 1
        assert worker.statistics().done == 1


async def test_typed_error_is_the_result(redis_server: RedisServer, queue_name: str) -> None:
    """A job the API rejects ends with its typed error, once, without retries."""
    async with FakeServer([Script(status=400)]) as server, open_queue(redis_server.url, name=queue_name) as queue:
        await queue.submit(request("bad"))
        async with worker_running(redis_server.url, server.url, queue_name) as worker:
            finished = await queue.result("bad")
        assert await queue.dead_letters() == []
    assert finished.error is not None and not finished.dead_lettered
    assert (finished.error.type, finished.error.error_type, finished.error.status_code) == (
        "InvalidRequestError", "invalid_request_error", 400,
    )  # fmt: skip
    assert finished.message is None and worker.statistics().failed == 1


async def test_dead_letter_after_max_attempts(redis_server: RedisServer, queue_name: str) -> None:
    """A job that fails transiently max_attempts times is dead-lettered with its last error,
    which becomes its result; each attempt is announced to followers."""
    async with FakeServer([Script(status=529)]) as server, open_queue(redis_server.url, name=queue_name) as queue:
        await queue.submit(request("doomed"))
        async with worker_running(redis_server.url, server.url, queue_name, max_attempts=2) as worker:
            got = await updates(queue, "doomed")
            dead = await queue.dead_letters()
    *_, finished = got
    assert isinstance(finished, JobFinished) and finished.dead_lettered
    assert finished.error is not None and finished.error.type == "OverloadedError"
    assert [(job_id, error.type) for job_id, error in dead] == [("doomed", "OverloadedError")]
    stats = worker.statistics()
    assert (stats.retried, stats.dead_lettered, stats.failed) == (1, 1, 1)


async def test_abandoned_attempt_is_marked_and_discarded(redis_server: RedisServer, queue_name: str) -> None:
    """A worker dies mid-job: another reclaims it; a live follower is told the first attempt
    was abandoned; a later follower never sees its events; the result is written once."""
    body = body_for(3, deltas=60)
    events, message = await expected(body)
    first_started = anyio.Event()

    def script(received: ReceivedRequest) -> Script:
        if not first_started.is_set():  # the first attempt drips, so that it dies mid-stream
            first_started.set()
            return Script(body=body, events_per_second=100)
        return Script(body=body)

    async with FakeServer(script) as server, open_queue(redis_server.url, name=queue_name) as queue:
        await queue.submit(request("phoenix"))
        live: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def follow() -> None:
                with anyio.fail_after(20):
                    async for update in queue.follow("phoenix"):
                        live.append(update)

            tg.start_soon(follow)
            with anyio.CancelScope() as dying:  # worker A: cancelled as if killed, jobs left pending
                async with worker_running(redis_server.url, server.url, queue_name, name="A", claim_idle=60):
                    await eventually(lambda: any(isinstance(u, JobEvent) for u in live))
                    dying.cancel()
            async with worker_running(redis_server.url, server.url, queue_name, name="B", claim_idle=0.3) as b:
                finished = await queue.result("phoenix")
        later = await updates(queue, "phoenix")
    assert finished.ok and finished.attempt == 2 and finished.worker == "B" and b.statistics().reclaimed == 1
    assert decode(pipeline_json(finished.message.to_dict())) == message  # type: ignore[union-attr]
    starts = [u for u in live if isinstance(u, AttemptStarted)]
    assert [(u.attempt, u.worker) for u in starts] == [(1, "A"), (2, "B")]
    after_restart = live[live.index(starts[1]) + 1 : -1]
    assert [u.event for u in after_restart] == events
    assert later[0] == starts[1] and [u.event for u in later[1:-1]] == events


async def test_graceful_stop_hands_jobs_back(redis_server: RedisServer, queue_name: str) -> None:
    """stop() with a short drain hands a running job back; another worker completes it."""
    body = body_for(4, deltas=40)
    async with FakeServer([Script(body=body, events_per_second=50), Script(body=body)]) as server:
        async with open_queue(redis_server.url, name=queue_name) as queue:
            await queue.submit(request("relay"))
            async with worker_running(redis_server.url, server.url, queue_name, name="A", drain_timeout=0.01) as a:
                await eventually(lambda: a.statistics().in_flight > 0)
            assert a.statistics().handed_back == 1
            async with worker_running(redis_server.url, server.url, queue_name, name="B"):
                finished = await queue.result("relay")
    assert finished.ok and finished.attempt == 2 and finished.worker == "B"


async def test_unknown_job(redis_server: RedisServer, queue_name: str) -> None:
    async with open_queue(redis_server.url, name=queue_name) as queue:
        with pytest.raises(UnknownJobError, match=r"^no job 'nope' in the queue \(never submitted, or expired\)$"):
            await queue.result("nope")


async def test_clear_errors(queue_name: str) -> None:
    with pytest.raises(ValueError, match=r"^expected a redis://HOST:PORT, rediss:// or unix:// URL, got 'http://x'$"):
        open_queue("http://x")
    with pytest.raises(ValueError, match=r"^a job sent through Redis cannot carry subscribers"):
        async with open_queue("redis://127.0.0.1:1", timeout=0.2) as queue:
            job = pipeline.JobRequest(id="j", model="m", max_tokens=1, messages=[], subscribers=[object()])
            await queue.submit(job)
    with pytest.raises(RedisUnavailableError, match=r"^cannot reach Redis at redis://:\*\*\*@127\.0\.0\.1:1: "):
        async with open_queue("redis://:secret@127.0.0.1:1", timeout=0.2) as queue:
            await queue.submit(request("j"))
