"""The Redis scale-out: jobs/s and events/s for 1, 2 and 4 worker processes, and what
publishing to Redis costs per event.

Setup: a private redis-server (loopback, ``appendonly yes``, ``appendfsync everysec``: the
production setting; the tests use ``always``), the fake Messages API server in its own
process (``sse-pipeline serve-fake``, unpaced, every job the generated ``text`` body:
200 text deltas, 405 derived events). Fleet runs: JOBS jobs are submitted, then N
``sse-pipeline worker --concurrency 50`` processes start; the clock runs from the workers'
start to the last result. Overhead run: the same JOBS jobs in this process, once with a
plain :class:`~pipeline.Worker` and once with a :class:`~pipeline.redis_jobs.RedisWorker`
(one process each, concurrency 50); the difference of their CPU time
(``time.process_time()``, this process only: the fake server and Redis run elsewhere)
over the events is the per-event cost of publishing, writing the result and acking.

Usage: ``python bench/redis_bench.py [--jobs 400] [--workers 1 2 4]`` (prints a table and
one JSON line).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import anyio
import coredis

import pipeline
from pipeline.redis_jobs import RedisWorker, open_queue

CONCURRENCY = 50
EVENTS_PER_JOB = 405  # derived events of the generated "text" body


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--appendonly", "yes",
            "--appendfsync", "everysec", "--save", "", "--logfile", "redis.log"]  # fmt: skip
    process = subprocess.Popen(args)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return process, f"redis://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    sys.exit("redis-server did not start")


def start_fake() -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "serve-fake", "--port", "0"], stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    return process, line.split()[4]


def job(i: int) -> pipeline.JobRequest:
    return pipeline.JobRequest(id=f"job-{i}", model="m", max_tokens=64, messages=[{"role": "user", "content": "hi"}])


async def submit(url: str, queue: str, jobs: int) -> None:
    async with open_queue(url, name=queue) as q:
        for i in range(jobs):
            await q.submit(job(i))


async def wait_done(url: str, queue: str, jobs: int) -> int:
    """Wait until every job is acknowledged (cheap polling: following every job's events
    here would take CPU from the workers); check the results; return the events."""
    async with open_queue(url, name=queue) as q:
        redis, keys = q._redis, q._keys
        for _ in itertools.count():  # a poll: the state lives in Redis
            if not (await redis.xlen(keys.jobs) or (await redis.xpending(keys.jobs, keys.group)).pending):
                break
            await anyio.sleep(0.05)
        finished = [await redis.hget(keys.job(f"job-{i}"), "result") for i in range(jobs)]
    assert all(f is not None and b'"error":null' in f for f in finished)
    return jobs * EVENTS_PER_JOB


def fleet(url: str, fake: str, workers: int, jobs: int) -> dict[str, Any]:
    queue = f"bench-fleet-{workers}"
    anyio.run(submit, url, queue, jobs)
    env = {**os.environ, "ANTHROPIC_API_KEY": "k"}
    started = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-m", "pipeline", "worker", "--redis", url, "--queue", queue,
                          "--concurrency", str(CONCURRENCY), "--base-url", fake, "--metrics-interval", "60"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers)
    ]  # fmt: skip
    try:
        events = anyio.run(wait_done, url, queue, jobs)
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait()
    return {"workers": workers, "jobs": jobs, "seconds": round(elapsed, 3), "jobs_per_s": round(jobs / elapsed, 1),
            "events_per_s": round(events / elapsed)}  # fmt: skip


async def in_process(url: str, fake: str, jobs: int, with_redis: bool) -> dict[str, Any]:
    client = pipeline.MessagesClient(api_key="k", base_url=fake, max_connections=CONCURRENCY)
    async with client:
        if not with_redis:
            cpu, wall = time.process_time(), time.perf_counter()
            async with pipeline.Worker(client=client, concurrency=CONCURRENCY) as worker:
                results = await worker.run(job(i) for i in range(jobs))
            assert all(r.ok for r in results)
            events = sum(r.events for r in results)
        else:
            queue = "bench-overhead"
            await submit(url, queue, jobs)
            redis_worker = RedisWorker(url, client=client, queue=queue, concurrency=CONCURRENCY)
            cpu, wall = time.process_time(), time.perf_counter()
            async with anyio.create_task_group() as tg:
                await tg.start(redis_worker.run)
                await wait_done(url, queue, jobs)
                redis_worker.stop()
            events = redis_worker.statistics().events
    return {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall, "events": events}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory() as tmp:
        redis, url = start_redis(Path(tmp))
        fake, fake_url = start_fake()
        try:
            rows = [fleet(url, fake_url, n, args.jobs) for n in args.workers]
            plain = anyio.run(in_process, url, fake_url, args.jobs, False)
            published = anyio.run(in_process, url, fake_url, args.jobs, True)
        finally:
            fake.terminate()
            redis.terminate()
            fake.wait()
            redis.wait()
    per_event = (published["cpu"] - plain["cpu"]) / published["events"] * 1e6
    print(f"{'workers':>7} {'jobs':>5} {'seconds':>8} {'jobs/s':>8} {'events/s':>9}")
    for row in rows:
        cells = (row["workers"], row["jobs"], row["seconds"], row["jobs_per_s"], row["events_per_s"])
        print("{:>7} {:>5} {:>8} {:>8} {:>9}".format(*cells))
    print(f"in-process Worker: {plain['cpu'] / plain['events'] * 1e6:.2f} us CPU/event; "
          f"RedisWorker: {published['cpu'] / published['events'] * 1e6:.2f} us CPU/event; "
          f"overhead of Redis: {per_event:.2f} us/event")  # fmt: skip
    print(json.dumps({
        "fleet": rows, "plain": plain, "redis": published, "overhead_us_per_event": round(per_event, 3),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "coredis": coredis.__version__,
                    "platform": platform.platform()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
