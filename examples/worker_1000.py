"""Run 1,000 streams through a ``Worker``, against the embedded fake Messages API server.

Every stream is a real streaming request (loopback socket, chunked HTTP/1.1) sent by
``MessagesClient`` and paced by the server at 100 events per second; at most 100 run at
once. A live metrics line is printed every second, a summary at the end (no API key, no
network)::

    python examples/worker_1000.py
"""

from __future__ import annotations

import anyio

import pipeline
from pipeline.fake_server import FakeServer, ReceivedRequest, Script
from pipeline.testing import text_body

RATE = 100.0  # events per second, per stream
BODIES = [text_body(10, seed=seed) for seed in range(10)]  # 25 events each


def script(request: ReceivedRequest) -> Script:
    """The fake server's answer: the body the prompt names, paced."""
    prompt = request.json["messages"][-1]["content"]
    return Script(body=BODIES[int(prompt.rsplit(" ", 1)[1]) % len(BODIES)], events_per_second=RATE)


def line(stats: pipeline.WorkerStatistics) -> str:
    ttft = f"{stats.ttft_p50 * 1000:.0f} ms" if stats.ttft_p50 is not None else "-"
    return (
        f"[{stats.finished}/{stats.submitted} done, {stats.active} active, {stats.queued} queued, "
        f"{stats.failed} failed] {stats.events_per_second:,.0f} events/s, TTFT p50 {ttft}"
    )


async def report_every(worker: pipeline.Worker, seconds: float) -> None:
    while True:
        await anyio.sleep(seconds)
        print(line(worker.statistics()), flush=True)


async def main(streams: int = 1000, *, concurrency: int = 100) -> pipeline.WorkerStatistics:
    # MessagesClient's own httpx client pools up to 100 connections: keep concurrency <= 100
    async with (
        FakeServer(script) as server,
        pipeline.MessagesClient(api_key="example-key", base_url=server.url) as client,
        pipeline.Worker(client=client, concurrency=concurrency) as worker,
    ):
        jobs = (
            pipeline.JobRequest(
                id=f"stream-{i}", model="claude-example", max_tokens=1024,
                messages=[{"role": "user", "content": f"Tell me about streams, number {i}"}],
            )
            for i in range(streams)
        )  # fmt: skip
        async with anyio.create_task_group() as tg:
            tg.start_soon(report_every, worker, 1.0)
            results = await worker.run(jobs)
            tg.cancel_scope.cancel()
    stats = worker.statistics()
    ok = sum(result.ok for result in results)
    p50, p99 = (f"{t * 1000:.1f} ms" if t is not None else "-" for t in (stats.ttft_p50, stats.ttft_p99))
    print(line(stats))
    print(f"streams ok: {ok}, failed: {len(results) - ok}")
    print(f"events: {stats.events} in {stats.uptime:.2f} s ({stats.events_per_second:,.0f}/s)")
    print(f"time to first token: p50 {p50}, p99 {p99}")
    return stats


if __name__ == "__main__":
    anyio.run(main)
