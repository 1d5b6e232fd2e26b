"""Real worker processes (``sse-pipeline worker``) sharing jobs through a private Redis.

The fake Messages API server runs in this process (in a thread, through an anyio blocking
portal) and answers each job with a body chosen by its prompt, so every job's final message
and events are known in advance. The fleet mixes backends: workers run on asyncio and trio.
These tests are synchronous (the async parts run in the portal), so each runs once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

pytest.importorskip("coredis")

from coredis.exceptions import StreamConsumerGroupError  # noqa: E402

import pipeline  # noqa: E402
from pipeline.core.encode import encode_derived as wire_events  # noqa: E402
from pipeline.fake_server import FakeServer, ReceivedRequest, Script  # noqa: E402
from pipeline.redis_jobs import JobFinished, RedisQueue, open_queue  # noqa: E402
from pipeline.redis_jobs.codec import decode, encode, parse_id  # noqa: E402
from pipeline.testing import (  # noqa: E402
    aiter_chunks,
    chunk_events,
    citations_builder,
    mixed_builder,
    text_builder,
    thinking_builder,
    tool_builder,
)
from tests.redis_server import (  # noqa: E402, F401
    RedisServer,
    eventually,
    needs_redis,
    own_redis_server_fixture,
    queue_name_fixture,
    redis_server_fixture,
)

pytestmark = needs_redis
ENV = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")}
BUILDERS: list[Callable[[int], Any]] = [
    lambda seed: text_builder(30, seed),
    lambda seed: tool_builder(300, seed),
    lambda seed: thinking_builder(20, seed),
    lambda seed: citations_builder(3, seed),
    lambda seed: mixed_builder(10, 128, seed),
]
STOP = {0: "end_turn", 1: "tool_use", 2: "end_turn", 3: "end_turn", 4: "tool_use"}


def body_of(index: int) -> bytes:
    return bytes(BUILDERS[index % 5](index).build(stop_reason=STOP[index % 5]))


async def expected_of(index: int) -> tuple[list[Any], Any]:
    """What the in-process pipeline gives for job *index*'s body: wire events, message."""
    async with pipeline.open_stream(aiter_chunks(chunk_events(body_of(index)))) as stream:
        events = [event async for event in stream]
        message = await stream.get_final_message()
    return decode(wire_events(events)), decode(encode(message.to_dict()))


def by_prompt(events_per_second: float | None) -> Callable[[ReceivedRequest], Script]:
    def script(request: ReceivedRequest) -> Script:
        index = int(request.json["messages"][-1]["content"].split("-")[1])
        return Script(body=body_of(index), events_per_second=events_per_second)

    return script


class Fleet:
    """Worker processes, their output files, and the portal that runs everything async."""

    def __init__(self, portal: BlockingPortal, queue: RedisQueue, redis_url: str, fake_url: str, tmp: Path) -> None:
        self.portal, self.queue, self.redis_url, self.fake_url, self.tmp = portal, queue, redis_url, fake_url, tmp
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, backend: str, concurrency: int = 16) -> None:
        args = [
            sys.executable, "-m", "pipeline", "--backend", backend, "worker", "--redis", self.redis_url,
            "--queue", self.queue._keys.name, "--concurrency", str(concurrency), "--base-url", self.fake_url,
            "--api-key", "sk-test", "--name", name, "--claim-idle", "1", "--metrics-interval", "1",
            "--drain-timeout", "20",
        ]  # fmt: skip
        with open(self.tmp / f"{name}.out", "wb") as out, open(self.tmp / f"{name}.err", "wb") as err:
            self.processes[name] = subprocess.Popen(args, stdout=out, stderr=err, env=ENV)

    def submit(self, indices: range) -> None:
        async def submit_all() -> None:
            for i in indices:
                messages = [{"role": "user", "content": f"job-{i}"}]
                await self.queue.submit(pipeline.JobRequest(id=f"job-{i}", model="m", max_tokens=64, messages=messages))

        self.portal.call(submit_all)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.portal.call(fn, *args)

    def stop_all(self) -> dict[str, str]:
        """SIGTERM every live worker; return each one's stdout (they must exit 0)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        outputs = {}
        for name, process in self.processes.items():
            status = process.wait(timeout=30)
            if status != -signal.SIGKILL:
                assert status == 0, (self.tmp / f"{name}.err").read_text()[-3000:]
                outputs[name] = (self.tmp / f"{name}.out").read_text()
        return outputs

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.kill()
        process.wait()


@contextlib.contextmanager
def fleet(redis: RedisServer, queue_name: str, tmp: Path, events_per_second: float | None) -> Iterator[Fleet]:
    with start_blocking_portal("asyncio") as portal:
        with portal.wrap_async_context_manager(FakeServer(by_prompt(events_per_second))) as server:
            with portal.wrap_async_context_manager(open_queue(redis.url, name=queue_name, timeout=30)) as queue:
                crew = Fleet(portal, queue, redis.url, server.url, tmp)
                try:
                    yield crew
                finally:  # reap every worker, whatever happened
                    for process in crew.processes.values():
                        if process.poll() is None:
                            process.kill()
                        process.wait()


async def outcome(queue: RedisQueue, count: int) -> dict[str, tuple[JobFinished, list[Any]]]:
    """Every job's result and events stream entries (waiting for the results)."""
    with anyio.fail_after(60):
        results = {f"job-{i}": await queue.result(f"job-{i}") for i in range(count)}
    return {job: (res, list(await queue._redis.xrange(queue._keys.events(job)))) for job, res in results.items()}


def check_every_job(fleet: Fleet, count: int) -> dict[str, JobFinished]:
    """Every final message is the expected one and written once; every events stream is
    complete and in order; nothing is left in the queue."""
    expected = anyio.run(lambda: _expected_all(count))
    jobs = fleet.call(outcome, fleet.queue, count)
    for i in range(count):
        finished, entries = jobs[f"job-{i}"]
        events, message = expected[i]
        assert finished.ok, finished.error
        assert decode(encode(finished.message.to_dict())) == message  # type: ignore[union-attr]
        finals = [e for e in entries if e.field_values[b"k"] == b"f"]
        assert len(finals) == 1 and entries[-1] is finals[0]
        mine = [e for e in entries if parse_id(e.identifier)[0] == finished.attempt]
        assert [parse_id(e.identifier)[1] for e in mine[:-1]] == list(range(len(mine) - 1))  # marker, 1, 2, ...
        assert mine[0].field_values[b"k"] == b"a"
        assert [ev for e in mine[1:-1] for ev in decode(e.field_values[b"d"])] == events
    redis, keys = fleet.queue._redis, fleet.queue._keys
    assert fleet.call(redis.xlen, keys.jobs) == 0
    assert fleet.call(redis.xpending, keys.jobs, keys.group).pending == 0
    assert fleet.call(redis.xlen, keys.dead) == 0
    return {job: finished for job, (finished, _) in jobs.items()}


async def _expected_all(count: int) -> list[tuple[list[Any], Any]]:
    return [await expected_of(i) for i in range(count)]


def summary(output: str) -> dict[str, int]:
    """The counters of a worker's last stdout line: ``worker N stopped: done 3, failed 0, ...``."""
    line = output.strip().splitlines()[-1]
    fields = line.split(": ", 1)[1].split(", ")
    return {" ".join(f.split()[:-1]): int(f.split()[-1]) for f in fields}


def done_by(results: dict[str, JobFinished]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for finished in results.values():
        counts[finished.worker] = counts.get(finished.worker, 0) + 1
    return counts


@pytest.mark.timeout(120)
def test_three_workers_500_jobs(redis_server: RedisServer, queue_name: str, tmp_path: Path) -> None:
    """500 jobs over 3 worker processes: every result correct and written exactly once,
    every events stream complete and in order; SIGTERM stops each worker with status 0."""
    with fleet(redis_server, queue_name, tmp_path, events_per_second=None) as crew:
        for name, backend in (("w0", "asyncio"), ("w1", "trio"), ("w2", "asyncio")):
            crew.start(name, backend)
        crew.submit(range(500))
        results = check_every_job(crew, 500)
        outputs = crew.stop_all()
    counters = {name: summary(out) for name, out in outputs.items()}
    assert {name: c["done"] for name, c in counters.items() if c["done"]} == done_by(results)
    assert sum(c["done"] for c in counters.values()) == 500
    assert all(f.attempt == 1 for f in results.values())


@pytest.mark.timeout(120)
def test_kill_9_worker_jobs_are_reclaimed(redis_server: RedisServer, queue_name: str, tmp_path: Path) -> None:
    """A worker killed with SIGKILL mid-run: live workers reclaim its jobs and complete
    them; still exactly one result per job."""
    with fleet(redis_server, queue_name, tmp_path, events_per_second=400) as crew:
        for name, backend in (("victim", "asyncio"), ("w1", "trio"), ("w2", "asyncio")):
            crew.start(name, backend, concurrency=8)
        crew.submit(range(150))
        redis, keys = crew.queue._redis, crew.queue._keys

        async def victim_streaming() -> bool:
            """Whether the victim is streaming a job: its events stream has a batch."""
            try:
                pending = await redis.xpending(keys.jobs, keys.group, "-", "+", 100, consumer="victim")
            except StreamConsumerGroupError:  # no worker created the group yet
                return False
            for info in pending:
                for entry in await redis.xrange(keys.jobs, info.identifier, info.identifier):
                    if await redis.xlen(keys.events(entry.field_values[b"id"].decode())) > 1:
                        return True
            return False

        crew.call(eventually_async, victim_streaming)
        crew.kill("victim")
        results = check_every_job(crew, 150)
        outputs = crew.stop_all()
    assert "victim" not in outputs
    counters = {name: summary(out) for name, out in outputs.items()}
    assert sum(c["reclaimed"] for c in counters.values()) >= 1
    retried = [f for f in results.values() if f.attempt > 1]
    assert retried and all(f.worker != "victim" for f in retried)
    assert {name: c["done"] for name, c in counters.items()} == {
        name: n for name, n in done_by(results).items() if name != "victim"
    }


@pytest.mark.timeout(120)
def test_redis_restart_mid_run(own_redis_server: RedisServer, queue_name: str, tmp_path: Path) -> None:
    """Redis restarts mid-run: workers retry and go on; nothing lost, nothing done twice."""
    with fleet(own_redis_server, queue_name, tmp_path, events_per_second=400) as crew:
        crew.start("w0", "asyncio", concurrency=8)
        crew.start("w1", "trio", concurrency=8)
        crew.submit(range(120))
        redis, keys = crew.queue._redis, crew.queue._keys

        async def some_done() -> bool:
            return 0 < await redis.xlen(keys.jobs) <= 100

        crew.call(eventually_async, some_done)
        own_redis_server.restart()
        results = check_every_job(crew, 120)
        outputs = crew.stop_all()
    counters = {name: summary(out) for name, out in outputs.items()}
    assert sum(c["done"] for c in counters.values()) == 120 == len(results)


async def eventually_async(condition: Callable[[], Any]) -> None:
    await eventually(condition, within=30)
