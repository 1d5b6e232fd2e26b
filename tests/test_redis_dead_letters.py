"""``RedisQueue.dead_letters()`` lists each job once, whatever entries the dead-letter stream holds.

The entries and results are written here as the worker writes them (XADD ``id``, ``attempts``,
``error``; the result through the real FINISH script), at the moments a killed worker leaves
them, so that each case is exact and needs no process to die.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

pytest.importorskip("coredis")

import pipeline  # noqa: E402
from pipeline.redis_jobs import JobError, RedisQueue, open_queue  # noqa: E402
from pipeline.redis_jobs.codec import BEGIN, FAIL, FINISH  # noqa: E402
from tests.redis_server import RedisServer, needs_redis, queue_name_fixture, redis_server_fixture  # noqa: E402, F401

pytestmark = needs_redis

MAXLEN = 1000


def error(message: str, kind: str = "OverloadedError") -> dict[str, Any]:
    return {"type": kind, "message": message}


def request(job_id: str) -> pipeline.JobRequest:
    return pipeline.JobRequest(id=job_id, model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}])


async def dead_letter(queue: RedisQueue, job_id: str, attempt: int, info: dict[str, Any]) -> None:
    """The worker's dead-letter write (``_dead_letter``), without the result that follows it."""
    entry = {"id": job_id, "attempts": str(attempt), "error": msgspec.json.encode(info)}
    await queue._redis.xadd(queue._keys.dead, entry)  # type: ignore[arg-type]


async def finish(queue: RedisQueue, job_id: str, attempt: int, info: dict[str, Any] | None) -> None:
    """The worker's result write: the FINISH script, with a result shaped as ``_finish`` makes it."""
    keys = queue._keys
    payload = msgspec.json.encode({
        "attempt": attempt, "message": None if info else {"content": []}, "error": info,
        "dead_lettered": info is not None, "worker": "w", "finished": 1.0,
    })  # fmt: skip
    script = queue._redis.register_script(FINISH)
    assert await script(keys=[keys.job(job_id), keys.events(job_id)], args=[attempt, payload, MAXLEN, 0]) == 1


async def begin(queue: RedisQueue, job_id: str, *, reclaimed: bool, max_attempts: int) -> tuple[str, int]:
    keys = queue._keys
    script = queue._redis.register_script(BEGIN)
    reply: Any = await script(
        keys=[keys.job(job_id), keys.events(job_id)], args=[max_attempts, int(reclaimed), "w", MAXLEN, "1-0"]
    )
    return reply[0].decode(), int(reply[1])


async def set_attempt(queue: RedisQueue, job_id: str, attempt: int) -> None:
    """Make *attempt* the job's current one, as BEGIN does (FINISH writes only the current attempt)."""
    await queue._redis.hset(queue._keys.job(job_id), {"attempt": attempt})


def listing(*pairs: tuple[str, dict[str, Any]]) -> list[tuple[str, JobError]]:
    return [(job_id, msgspec.convert(info, JobError)) for job_id, info in pairs]


async def test_killed_between_dead_letter_and_result(redis_server: RedisServer, queue_name: str) -> None:
    """A job dead-lettered twice (the first worker died before its result) is listed once,
    with the entry of the attempt its result names."""
    async with open_queue(redis_server.url, name=queue_name) as queue:
        await queue.submit(request("twice"))
        await set_attempt(queue, "twice", 2)
        await dead_letter(queue, "twice", 2, error("attempt 2 overloaded"))  # then killed: no result
        await set_attempt(queue, "twice", 3)  # reclaimed, dead at once
        await dead_letter(queue, "twice", 3, error("worker w stopped during attempt 2", "WorkerLostError"))
        await finish(queue, "twice", 3, error("worker w stopped during attempt 2", "WorkerLostError"))
        assert await queue.dead_letters() == listing(
            ("twice", error("worker w stopped during attempt 2", "WorkerLostError"))
        )


async def test_the_results_attempt_wins_over_a_later_entry(redis_server: RedisServer, queue_name: str) -> None:
    """The listed entry is the one of the result's attempt, even when a stale attempt's entry
    was written after it."""
    async with open_queue(redis_server.url, name=queue_name) as queue:
        await queue.submit(request("stale"))
        await set_attempt(queue, "stale", 2)
        await dead_letter(queue, "stale", 2, error("current"))
        await finish(queue, "stale", 2, error("current"))
        await dead_letter(queue, "stale", 1, error("a woken worker's old attempt"))
        assert await queue.dead_letters() == listing(("stale", error("current")))


async def test_without_a_result_the_latest_attempt(redis_server: RedisServer, queue_name: str) -> None:
    """Before its result is written (or after it expired), a job is listed with its latest attempt."""
    async with open_queue(redis_server.url, name=queue_name) as queue:
        await dead_letter(queue, "pending", 1, error("first"))
        await dead_letter(queue, "pending", 2, error("second"))
        await dead_letter(queue, "pending", 2, error("second"))  # a retried XADD repeats the entry
        assert await queue.dead_letters() == listing(("pending", error("second")))


async def test_a_job_that_ended_otherwise_is_not_listed(redis_server: RedisServer, queue_name: str) -> None:
    """A dead-letter entry of an attempt that was superseded by a successful one lists nothing."""
    async with open_queue(redis_server.url, name=queue_name) as queue:
        await queue.submit(request("saved"))
        await dead_letter(queue, "saved", 1, error("stale"))
        await set_attempt(queue, "saved", 2)
        await finish(queue, "saved", 2, None)
        assert await queue.dead_letters() == []


async def test_count_counts_jobs_in_order_of_first_entry(redis_server: RedisServer, queue_name: str) -> None:
    """*count* is a number of jobs, not of entries; jobs come oldest first."""
    async with open_queue(redis_server.url, name=queue_name) as queue:
        for job_id in ("a", "b", "c"):
            await dead_letter(queue, job_id, 1, error(f"{job_id} 1"))
        await dead_letter(queue, "a", 2, error("a 2"))
        assert await queue.dead_letters(count=2) == listing(("a", error("a 2")), ("b", error("b 1")))
        everyone = listing(("a", error("a 2")), ("b", error("b 1")), ("c", error("c 1")))
        assert await queue.dead_letters(count=3) == await queue.dead_letters(count=10) == everyone
        assert await queue.dead_letters(count=0) == []


async def test_reads_past_a_page_for_the_results_entry(redis_server: RedisServer, queue_name: str) -> None:
    """The entry of a job's result is found however many entries of other jobs lie before it."""
    async with open_queue(redis_server.url, name=queue_name) as queue:
        await queue.submit(request("far"))
        await set_attempt(queue, "far", 1)
        await dead_letter(queue, "far", 1, error("early"))
        other = msgspec.json.encode(error("other"))
        async with queue._redis.pipeline(transaction=False) as pipe:
            for n in range(1200):  # over two pages of other jobs
                pipe.xadd(queue._keys.dead, {"id": f"other-{n}", "attempts": "1", "error": other})
        await set_attempt(queue, "far", 2)
        await dead_letter(queue, "far", 2, error("final"))
        await finish(queue, "far", 2, error("final"))
        assert await queue.dead_letters(count=1) == listing(("far", error("final")))
        listed = await queue.dead_letters(count=1000)
        assert len(listed) == 1000 and listed[0] == ("far", msgspec.convert(error("final"), JobError))
        assert len({job_id for job_id, _ in await queue.dead_letters(count=5000)}) == 1201


async def test_the_scripts_kill_sequence(redis_server: RedisServer, queue_name: str) -> None:
    """The real scripts in the order a kill leaves them (FAIL dead-letters, the worker dies
    before FINISH, the reclaim's BEGIN answers dead): one listing, of the final attempt."""
    async with open_queue(redis_server.url, name=queue_name) as queue:
        keys = queue._keys
        await queue.submit(request("real"))
        assert await begin(queue, "real", reclaimed=False, max_attempts=1) == ("run", 1)
        fail = queue._redis.register_script(FAIL)
        assert await fail(keys=[keys.job("real")], args=[1, msgspec.json.encode(error("overloaded"))]) == 1
        await dead_letter(queue, "real", 1, error("overloaded"))  # killed here
        assert await begin(queue, "real", reclaimed=True, max_attempts=1) == ("dead", 2)
        await dead_letter(queue, "real", 2, error("overloaded"))
        await finish(queue, "real", 2, error("overloaded"))
        assert await queue.dead_letters() == listing(("real", error("overloaded")))
        assert len(await queue._redis.xrange(keys.dead)) == 2
