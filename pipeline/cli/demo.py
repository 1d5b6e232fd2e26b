"""``sse-pipeline demo``: many concurrent streams against the embedded fake server.

Everything is real but the model: loopback sockets, chunked HTTP/1.1, paced SSE bodies, the
httpx client, the pipeline and first-party subscribers. One stream's text is printed live;
a progress line follows all of them; a summary ends the run. No key, no network.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import anyio
import httpx

from plugins.console import ConsolePrinter
from plugins.metrics import StreamMetrics, summarize

from ..client import MessagesClient, RetryPolicy
from ..errors import PipelineError
from ..fake_server import FakeServer, ReceivedRequest, Script

__all__ = ["run_demo"]

_PROMPTS = (
    "Tell me about streams.",
    "Use a tool to get the weather.",
    "Think about it first.",
    "Cite your sources.",
    "Mix text and a tool call.",
)


class _Progress:
    def __init__(self, total: int, file: TextIO) -> None:
        self.total = total
        self.file = file
        self.done = self.failed = self.active = 0

    def line(self) -> str:
        return f"[{self.done + self.failed}/{self.total} streams: {self.active} active, {self.failed} failed]"

    async def report_every(self, seconds: float) -> None:
        while True:
            await anyio.sleep(seconds)
            print(self.line(), file=self.file, flush=True)


async def run_demo(*, streams: int = 200, concurrency: int = 200, rate: float = 200.0, seed: int = 0) -> None:
    """Run *streams* streams, at most *concurrency* at once, paced at *rate* events/s."""
    progress = _Progress(streams, sys.stderr)
    metrics: list[StreamMetrics] = []
    limiter = anyio.CapacityLimiter(concurrency)

    def script(request: ReceivedRequest) -> Script:
        return Script(events_per_second=rate)

    cpu, wall = time.process_time(), time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with FakeServer(script, seed=seed) as server, httpx.AsyncClient(limits=limits, timeout=30) as http:
        client = MessagesClient(api_key="demo-key", base_url=server.url, http_client=http, retry=RetryPolicy())

        async def one(index: int) -> None:
            async with limiter:
                progress.active += 1
                meter = StreamMetrics()
                metrics.append(meter)
                subscribers: list[object] = [meter]
                if index == 0:
                    subscribers.append(ConsolePrinter())
                messages = [{"role": "user", "content": _PROMPTS[index % len(_PROMPTS)]}]
                try:
                    async with client.stream(
                        model="claude-demo", max_tokens=1024, messages=messages, subscribers=subscribers
                    ) as stream:
                        await stream.until_done()
                    progress.done += 1
                except PipelineError as exc:
                    progress.failed += 1
                    print(f"stream {index} failed: {exc}", file=sys.stderr)
                finally:
                    progress.active -= 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(progress.report_every, 1.0)
            async with anyio.create_task_group() as streams_tg:
                for index in range(streams):
                    streams_tg.start_soon(one, index)
            tg.cancel_scope.cancel()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    summary = summarize(metrics)
    p50 = f"{summary.ttft_p50 * 1000:.1f} ms" if summary.ttft_p50 is not None else "-"
    p99 = f"{summary.ttft_p99 * 1000:.1f} ms" if summary.ttft_p99 is not None else "-"
    print(progress.line())
    print(f"streams ok: {progress.done}, failed: {progress.failed}")
    print(f"events: {summary.events} ({summary.events / wall:,.0f}/s), output tokens: {summary.output_tokens}")
    print(f"time to first token: p50 {p50}, p99 {p99}")
    print(f"wall {wall:.2f} s, CPU {cpu:.2f} s ({cpu / wall:.0%} of one core, server included)")
