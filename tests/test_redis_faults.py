"""The fleet under the faults of a real cluster, each reproduced deterministically (issue 19).

A worker's link to Redis goes through a proxy the test pauses (a frozen worker, or a
stalled link: the server sees nothing from it, it sees nothing from the server); a worker
"dies" when its task is cancelled (its entries stay pending, as after SIGKILL). Every test
checks what a user would: the job's result is written, its text is exact, and nothing is
left pending.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

pytest.importorskip("coredis")

import coredis  # noqa: E402
import structlog  # noqa: E402

import pipeline.redis_jobs.worker as redis_worker  # noqa: E402
from pipeline.fake_server import FakeServer, Script  # noqa: E402
from pipeline.redis_jobs import AttemptStarted, JobEvent, JobFinished, RedisQueue, open_queue  # noqa: E402
from pipeline.redis_jobs.codec import Keys  # noqa: E402
from tests.redis_server import (  # noqa: E402, F401
    RedisServer,
    eventually,
    needs_redis,
    queue_name_fixture,
    redis_server_fixture,
)
from tests.tcp_proxy import PausableProxy, pausable_proxy  # noqa: E402
from tests.test_redis_jobs import body_for, request, worker_running  # noqa: E402

pytestmark = needs_redis


@asynccontextmanager
async def raw_redis(server: RedisServer) -> AsyncIterator[Any]:
    client = coredis.Redis(host="127.0.0.1", port=server.port, decode_responses=False)
    async with client:
        yield client


async def pending(redis: Any, queue: str) -> dict[str, int]:
    """Consumer -> its pending entries in the jobs stream."""
    keys = Keys(queue)
    consumers = (await redis.xpending(keys.jobs, keys.group)).consumers or {}
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in consumers.items()}


async def replayed_text(queue: RedisQueue, job_id: str) -> tuple[str, JobFinished]:
    """The text a late follower sees for the winning attempt, and the result."""
    with anyio.fail_after(20):
        updates = [update async for update in queue.follow(job_id)]
    last = updates[-1]
    assert isinstance(last, JobFinished)
    texts = [u.event["text"] for u in updates if isinstance(u, JobEvent) and u.event["type"] == "text"]
    return "".join(texts), last


def final_text(finished: JobFinished) -> str:
    assert finished.ok and finished.message is not None
    return "".join(block.text for block in finished.message.content if block.type == "text")  # type: ignore[attr-defined]


def proxied(proxy: PausableProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}"


async def test_a_woken_worker_does_not_take_back_a_reclaimed_job(redis_server: RedisServer, queue_name: str) -> None:
    """A worker frozen past claim_idle wakes after another reclaimed its job: its heartbeat
    must not take the job's entry back, nor its stop hand it back, so that when the second
    worker dies too the job is still reclaimed and finished."""
    body = body_for(21, deltas=60)
    async with (
        FakeServer(lambda _: Script(body=body, events_per_second=40)) as server,
        open_queue(redis_server.url, name=queue_name) as queue,
        raw_redis(redis_server) as redis,
        pausable_proxy("127.0.0.1", redis_server.port) as proxy,
    ):
        await queue.submit(request("sleeper"))
        async with worker_running(proxied(proxy), server.url, queue_name, name="A", claim_idle=0.6) as a:
            await eventually(lambda: a.statistics().in_flight == 1)
            proxy.pause()  # A freezes mid-job
            with anyio.CancelScope() as dying:
                async with worker_running(redis_server.url, server.url, queue_name, name="B", claim_idle=0.3):
                    await started_by(queue, "sleeper", "B")
                    dying.cancel()  # B dies holding the job
            proxy.resume()  # A wakes: its held heartbeat and writes go through
            await eventually(lambda: a.statistics().in_flight == 0)
        # A stopped gracefully; B's entry must still be pending, for B
        assert await pending(redis, queue_name) == {"B": 1}
        async with worker_running(redis_server.url, server.url, queue_name, name="C", claim_idle=0.3):
            with anyio.fail_after(20):
                finished = await queue.result("sleeper")
        text, last = await replayed_text(queue, "sleeper")
        assert finished.worker == "C" and text == final_text(finished) and last == finished
        assert await pending(redis, queue_name) == {}


async def test_a_busy_answer_leaves_the_other_workers_delivery(
    redis_server: RedisServer, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose link stalls between reading a job and BEGIN finds it busy (another
    worker reclaimed it): it must not ack the entry, which is that worker's delivery now."""
    monkeypatch.setattr(redis_worker, "_READ_BLOCK_MS", 30_000)  # A's read stays blocked at the server
    body = body_for(22, deltas=60)
    refused = anyio.Event()

    def watch(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("event") == "entry_not_ours":
            refused.set()
        return event

    previous = structlog.get_config()["processors"]
    structlog.configure(processors=[watch, *previous])
    try:
        async with (
            FakeServer(lambda _: Script(body=body, events_per_second=40)) as server,
            open_queue(redis_server.url, name=queue_name) as queue,
            raw_redis(redis_server) as redis,
            pausable_proxy("127.0.0.1", redis_server.port) as proxy,
        ):
            # A never reclaims on its own (claim_idle 60): C recovers the job at the end
            async with worker_running(proxied(proxy), server.url, queue_name, name="A", claim_idle=60):
                await eventually(lambda: blocked_reading(redis))
                proxy.pause()
                await queue.submit(request("contested"))
                await eventually(lambda: has_pending(redis, queue_name, "A"))  # delivered; reply held
                with anyio.CancelScope() as dying:
                    async with worker_running(redis_server.url, server.url, queue_name, name="B", claim_idle=0.3):
                        await started_by(queue, "contested", "B")
                        dying.cancel()
                proxy.resume()  # A's BEGIN: busy (B holds the job)
                with anyio.fail_after(10):
                    await refused.wait()
                assert await pending(redis, queue_name) == {"B": 1}
            async with worker_running(redis_server.url, server.url, queue_name, name="C", claim_idle=0.3):
                with anyio.fail_after(20):
                    finished = await queue.result("contested")
            text, _ = await replayed_text(queue, "contested")
            assert finished.worker == "C" and text == final_text(finished)
            assert await pending(redis, queue_name) == {}
    finally:
        structlog.configure(processors=previous)


async def started_by(queue: RedisQueue, job_id: str, worker: str) -> None:
    """Wait until *worker* began an attempt of the job (its BEGIN went through)."""
    with anyio.fail_after(10):
        async for update in queue.follow(job_id):
            if isinstance(update, AttemptStarted) and update.worker == worker:
                return


async def blocked_reading(redis: Any) -> bool:
    clients = await redis.client_list()
    return any(c.get("cmd") == "xreadgroup" and "b" in str(c.get("flags", "")) for c in clients)


async def has_pending(redis: Any, queue: str, consumer: str) -> bool:
    return (await pending(redis, queue)).get(consumer, 0) > 0


async def test_a_dead_workers_job_is_reclaimed_ahead_of_a_backlog(redis_server: RedisServer, queue_name: str) -> None:
    """A job left pending by a dead worker is picked up at the next free slot once it is
    claim_idle old, not after every newer job of a backlog."""
    body = body_for(24, deltas=15)
    keys = Keys(queue_name)
    async with (
        FakeServer(lambda _: Script(body=body, events_per_second=50)) as server,
        open_queue(redis_server.url, name=queue_name) as queue,
        raw_redis(redis_server) as redis,
    ):
        await redis.xgroup_create(keys.jobs, keys.group, identifier="0", mkstream=True)
        await queue.submit(request("orphan", prompt="orphan"))
        await redis.xreadgroup(keys.group, "ghost", {keys.jobs: ">"}, count=1)  # delivered to a worker that died
        backlog = [f"new-{i}" for i in range(20)]
        for job_id in backlog:
            await queue.submit(request(job_id, prompt=job_id))
        async with worker_running(redis_server.url, server.url, queue_name, concurrency=2, claim_idle=0.3):
            with anyio.fail_after(30):
                for job_id in ["orphan", *backlog]:
                    assert (await queue.result(job_id)).ok
        order = [received.json["messages"][-1]["content"] for received in server.requests]
        assert sorted(order) == sorted(["orphan", *backlog])
        assert order.index("orphan") < len(order) // 2, order
        assert await pending(redis, queue_name) == {}
