"""The worker: capacity, isolation, cancellation, shutdown, retries, metrics and logs.

Every wait is on an event or on ``wait_all_tasks_blocked()``; the only sleeps are the fake
server's pacing and the shutdown deadline under test.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog
from structlog.testing import capture_logs

import pipeline
from pipeline.client import RetryPolicy
from pipeline.fake_server import ERROR_EVENT, FakeServer, ReceivedRequest, Script, split_events
from pipeline.testing import aiter_chunks, chunk_events, chunk_random, text_builder
from tests.helpers import GatedSubscriber

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EVENTS = 45  # derived events of a case body: 2 starts, 20 x (delta, text), block stop, message delta, stop
FAST = RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.01)
NO_WAIT = RetryPolicy(max_retries=2, initial_delay=0.0, max_delay=0.0)
Source = Callable[[], AsyncIterator[bytes]]


@functools.cache
def case(seed: int) -> tuple[bytes, dict[str, Any]]:
    """A small text body (20 deltas) and the final message it gives."""
    builder = text_builder(20, seed=seed)
    return builder.build(), builder.expected_message()


def as_dict(message: pipeline.Message | None) -> dict[str, Any]:
    """``message.to_dict()`` of a message that must exist."""
    assert message is not None
    return message.to_dict()


def source(body: bytes, seed: int = 0) -> Source:
    """Random chunks of at most 512 bytes, with a checkpoint between two chunks."""
    return lambda: aiter_chunks(chunk_random(body, seed=seed, max_size=512), checkpoint=True)


def gated(body: bytes, gate: anyio.Event, after: int = 3) -> Source:
    """One event per chunk; waits for *gate* before chunk number *after*."""

    async def chunks() -> AsyncIterator[bytes]:
        for i, chunk in enumerate(chunk_events(body)):
            if i == after:
                await gate.wait()
            yield chunk

    return chunks


def failing(body: bytes, after: int) -> Source:
    """One event per chunk; the connection resets after *after* chunks."""

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in chunk_events(body)[:after]:
            yield chunk
        raise ConnectionResetError("connection reset by peer")

    return chunks


def task_ids() -> set[int]:
    return {task.id for task in anyio.get_running_tasks()}


class Tracker:
    """How many streams are open at once (from their first event to ``on_end``)."""

    def __init__(self, wanted: int = -1) -> None:
        self.open = self.peak = 0
        self.wanted = wanted
        self.all_open = anyio.Event()  # set when `wanted` streams are open


class Probe:
    """A job's subscriber: reports to a tracker; can cancel its job at its first text."""

    def __init__(self, tracker: Tracker, cancel: Callable[[], bool] | None = None) -> None:
        self.tracker = tracker
        self.cancel = cancel
        self.seen = False

    def on_event(self, event: Any) -> None:
        if not self.seen:
            self.seen = True
            tracker = self.tracker
            tracker.open += 1
            tracker.peak = max(tracker.peak, tracker.open)
            if tracker.open == tracker.wanted:
                tracker.all_open.set()

    def on_text(self, event: pipeline.TextEvent) -> None:
        if self.cancel is not None:
            assert self.cancel()
            self.cancel = None

    def on_end(self) -> None:
        if self.seen:
            self.tracker.open -= 1


def kind(i: int) -> str:
    if i % 10 == 3:
        return "cancel"
    return {7: "truncated", 17: "error"}.get(i % 20, "ok")


async def test_two_thousand_streams_with_faults_and_cancellations() -> None:
    """2,000 in-memory streams, 200 at once: 10% cancelled mid-way, 10% broken. Every other
    stream gives exactly its message, every broken one its typed error; counts are exact."""
    n, concurrency = 2000, 200
    tracker = Tracker()
    before = task_ids()
    async with pipeline.Worker(concurrency=concurrency, name="many") as worker:

        def job(i: int) -> pipeline.JobSource:
            body = case(i)[0]
            if kind(i) == "truncated":
                body = body[: len(body) // 2]
            elif kind(i) == "error":
                body = b"".join(split_events(body)[:8]) + ERROR_EVENT
            cancel = functools.partial(worker.cancel, str(i)) if kind(i) == "cancel" else None
            return pipeline.JobSource(id=str(i), open=source(body, seed=i), subscribers=[Probe(tracker, cancel)])

        results = await worker.run(job(i) for i in range(n))
    assert task_ids() == before
    # never more than `concurrency` streams at once; a few cancelled ones end before the
    # last of the first 200 streams reaches its first event
    assert concurrency - 20 <= tracker.peak <= concurrency and tracker.open == 0
    assert sorted(int(result.id) for result in results) == list(range(n))
    for result in results:
        i = int(result.id)
        assert result.attempts == 1 and result.started is not None and result.started <= result.finished
        if kind(i) == "ok":
            assert result.ok and as_dict(result.message) == case(i)[1]
            assert result.events == EVENTS and result.ttft is not None
            continue
        assert result.message is None
        error = result.error
        assert isinstance(error, pipeline.PipelineError) and error.partial_message is not None
        if kind(i) == "cancel":
            assert isinstance(error, pipeline.JobCancelledError)
            assert (error.job_id, error.reason) == (result.id, "cancelled")
            assert 0 < result.events < EVENTS
        elif kind(i) == "truncated":
            assert isinstance(error, pipeline.IncompleteStreamError)
        else:
            assert isinstance(error, pipeline.OverloadedError) and error.status_code is None
    stats = worker.statistics()
    assert (stats.submitted, stats.finished, stats.active, stats.queued) == (n, n, 0, 0)
    assert (stats.succeeded, stats.failed, stats.cancelled) == (1600, 200, 200)
    assert stats.events == sum(result.events for result in results)
    assert stats.ttft_p50 is not None and stats.ttft_p99 is not None and stats.ttft_p50 <= stats.ttft_p99
    assert stats.events_per_second > 0 and stats.uptime > 0


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts the responses opened through it, and those closed."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.opened = self.closed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.opened += 1
        assert isinstance(response.stream, httpx.AsyncByteStream)
        stream = _Counted(response.stream, self)
        return httpx.Response(response.status_code, headers=response.headers, stream=stream,
                              extensions=response.extensions)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Counted(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, owner: CountingTransport) -> None:
        self.stream = stream
        self.owner = owner

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.stream.__aiter__()

    async def aclose(self) -> None:
        self.owner.closed += 1
        await self.stream.aclose()


async def test_end_to_end_through_the_client_and_the_fake_server() -> None:
    """50 requests over loopback sockets: normal, cut, error event, 529 then retried, and
    cancelled mid-body; every response is closed and the server accounts for every stream."""
    answered: dict[int, int] = {}

    def script(request: ReceivedRequest) -> Script:
        i = int(request.json["messages"][0]["content"].rsplit(" ", 1)[1])
        answered[i] = answered.get(i, 0) + 1
        body = case(i)[0]
        return [
            Script(body=body),
            Script(body=body, cut_after_events=6),
            Script(body=body, error_event_after=6),
            Script(status=529, retry_after=0) if answered[i] == 1 else Script(body=body),
            Script(body=body, events_per_second=50),
        ][i % 5]

    tracker = Tracker()
    transport = CountingTransport()
    before = task_ids()
    async with FakeServer(script) as server:
        http = httpx.AsyncClient(transport=transport, timeout=10)
        async with pipeline.MessagesClient(api_key="k", base_url=server.url, http_client=http, retry=FAST) as client:
            async with pipeline.Worker(client=client, concurrency=20) as worker:

                def job(i: int) -> pipeline.JobRequest:
                    cancel = functools.partial(worker.cancel, f"job-{i}") if i % 5 == 4 else None
                    messages = [{"role": "user", "content": f"job {i}"}]
                    return pipeline.JobRequest(id=f"job-{i}", model="claude-test", max_tokens=64, messages=messages,
                                               subscribers=[Probe(tracker, cancel)])

                results = {result.id: result for result in await worker.run(job(i) for i in range(50))}
            assert (transport.opened, transport.closed) == (60, 60)  # 50 streams, 10 answers 529
        await http.aclose()
        with anyio.fail_after(5):
            await server.wait_client_disconnect(10)
        served = server.statistics()
    assert http.is_closed and task_ids() == before
    assert (served.streams_started, served.streams_completed, served.streams_cut) == (50, 30, 10)
    assert (served.client_disconnects, served.errors_sent) == (10, 20)
    for i in range(50):
        result = results[f"job-{i}"]
        assert result.request_id is not None and result.request_id.startswith("req_")
        if i % 5 in (0, 3):
            assert as_dict(result.message) == case(i)[1]
            assert answered[i] == 1 + (i % 5 == 3)
        elif i % 5 == 1:
            assert isinstance(result.error, pipeline.SourceError) and result.error.partial_message is not None
        elif i % 5 == 2:
            assert isinstance(result.error, pipeline.OverloadedError)
        else:
            assert isinstance(result.error, pipeline.JobCancelledError) and result.error.reason == "cancelled"
    stats = worker.statistics()
    assert (stats.succeeded, stats.failed, stats.cancelled, stats.finished) == (20, 20, 10, 50)


async def test_shutdown_drains_what_it_can_and_cancels_the_rest() -> None:
    gate, never = anyio.Event(), anyio.Event()
    tracker = Tracker(wanted=4)
    reports: list[pipeline.ShutdownReport] = []
    async with pipeline.Worker(concurrency=4, max_queued=2) as worker:
        for i in range(2):
            await worker.submit(pipeline.JobSource(id=f"stuck-{i}", open=gated(case(i)[0], never),
                                                   subscribers=[Probe(tracker)]))
            await worker.submit(pipeline.JobSource(id=f"gated-{i}", open=gated(case(10 + i)[0], gate),
                                                   subscribers=[Probe(tracker)]))
        await tracker.all_open.wait()
        for i in range(2):
            await worker.submit(pipeline.JobSource(id=f"queued-{i}", open=source(case(20 + i)[0])))
        stats = worker.statistics()
        assert (stats.active, stats.queued, stats.submitted) == (4, 2, 6)

        async def shut_down() -> None:
            reports.append(await worker.shutdown(deadline=0.5))

        async with anyio.create_task_group() as tg:
            tg.start_soon(shut_down)
            await anyio.wait_all_tasks_blocked()
            late = pipeline.JobSource(id="late", open=source(case(30)[0]))
            with pytest.raises(pipeline.WorkerClosedError, match=r"^worker 'worker' is shutting down"):
                await worker.submit(late)
            with pytest.raises(pipeline.WorkerClosedError):
                worker.submit_nowait(late)
            gate.set()
        (report,) = reports
        assert sorted(report.drained) == ["gated-0", "gated-1", "queued-0", "queued-1"]
        assert sorted(report.cancelled) == ["stuck-0", "stuck-1"]
        assert await worker.shutdown() is report
    with pytest.raises(pipeline.WorkerClosedError):
        await worker.run([late])
    results = {result.id: result async for result in worker.results()}
    assert sorted(results) == sorted(report.drained + report.cancelled)
    for job_id, result in results.items():
        if job_id.startswith("stuck"):
            assert isinstance(result.error, pipeline.JobCancelledError) and result.error.reason == "shutdown"
            assert result.error.partial_message is not None and 0 < result.events < EVENTS
        else:
            assert result.message is not None
    stats = worker.statistics()
    assert (stats.succeeded, stats.cancelled, stats.active, stats.queued) == (4, 2, 0, 0)


async def test_shutdown_without_draining_the_queue() -> None:
    """``drain_queue=False`` drops the queued jobs at once; a blocked ``submit`` fails."""
    gate = anyio.Event()
    reports: list[pipeline.ShutdownReport] = []
    errors: list[BaseException] = []
    async with pipeline.Worker(concurrency=2, max_queued=2) as worker:
        for i in range(2):
            worker.submit_nowait(pipeline.JobSource(id=f"running-{i}", open=gated(case(i)[0], gate)))
        await anyio.wait_all_tasks_blocked()
        for i in range(2):
            worker.submit_nowait(pipeline.JobSource(id=f"queued-{i}", open=source(case(i)[0])))

        async def blocked_submit() -> None:
            try:
                await worker.submit(pipeline.JobSource(id="blocked", open=source(case(9)[0])))
            except pipeline.WorkerClosedError as exc:
                errors.append(exc)

        async def shut_down() -> None:
            reports.append(await worker.shutdown(deadline=math.inf, drain_queue=False))

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked_submit)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(shut_down)
            await anyio.wait_all_tasks_blocked()
            stats = worker.statistics()
            assert (stats.active, stats.queued, stats.cancelled) == (2, 0, 2)
            gate.set()
    assert len(errors) == 1
    assert sorted(reports[0].drained) == ["running-0", "running-1"]
    assert sorted(reports[0].cancelled) == ["queued-0", "queued-1"]
    results = {result.id: result async for result in worker.results()}
    for i in range(2):
        dropped = results[f"queued-{i}"]
        assert isinstance(dropped.error, pipeline.JobCancelledError) and dropped.error.reason == "shutdown"
        assert (dropped.attempts, dropped.started, dropped.events, dropped.error.partial_message) == (0, None, 0, None)
        assert results[f"running-{i}"].ok


async def test_the_queue_is_bounded_and_queued_jobs_can_be_cancelled() -> None:
    gate = anyio.Event()
    submitted = anyio.Event()
    async with pipeline.Worker(concurrency=2, max_queued=2) as worker:
        for i in range(2):
            worker.submit_nowait(pipeline.JobSource(id=f"running-{i}", open=gated(case(i)[0], gate)))
        await anyio.wait_all_tasks_blocked()
        for i in range(2):
            worker.submit_nowait(pipeline.JobSource(id=f"queued-{i}", open=source(case(2 + i)[0])))
        extra = pipeline.JobSource(id="extra", open=source(case(4)[0]))
        with pytest.raises(anyio.WouldBlock):
            worker.submit_nowait(extra)
        with pytest.raises(ValueError, match=r"^a job with id 'queued-0' is already queued or running$"):
            worker.submit_nowait(pipeline.JobSource(id="queued-0", open=source(b"")))
        with pytest.raises(ValueError, match=r"needs a worker with a client"):
            worker.submit_nowait(pipeline.JobRequest(id="request", model="m", max_tokens=1, messages=[]))

        async def submit_extra() -> None:
            await worker.submit(extra)
            submitted.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_extra)
            await anyio.wait_all_tasks_blocked()
            assert not submitted.is_set()  # parked: the queue is full
            stats = worker.statistics()
            assert (stats.active, stats.queued, stats.submitted) == (2, 2, 4)
            assert worker.cancel("queued-0") is True  # makes room
        assert worker.cancel("queued-0") is False and worker.cancel("unknown") is False
        results = worker.results()
        dropped = await results.__anext__()
        assert dropped.id == "queued-0" and isinstance(dropped.error, pipeline.JobCancelledError)
        assert (dropped.attempts, dropped.started) == (0, None)
        stats = worker.statistics()
        assert (stats.active, stats.queued, stats.cancelled) == (2, 2, 1)
        gate.set()
    rest = {result.id: result async for result in results}
    assert sorted(rest) == ["extra", "queued-1", "running-0", "running-1"]
    assert all(result.ok for result in rest.values())


@pytest.mark.parametrize("policy", ["block", "drop_oldest", "drop_newest", "error"])
async def test_a_slow_subscriber_affects_only_its_own_stream(policy: pipeline.runtime.subscription.Overflow) -> None:
    slow = GatedSubscriber()
    fast = {f"fast-{i}" for i in range(1, 4)}
    results: dict[str, pipeline.JobResult] = {}
    async with pipeline.Worker(concurrency=4) as worker:
        subscription = pipeline.Subscription(slow, overflow=policy, buffer=1)
        worker.submit_nowait(pipeline.JobSource(id="slow", open=source(case(0)[0]), subscribers=[subscription]))
        for job_id in sorted(fast):
            worker.submit_nowait(pipeline.JobSource(id=job_id, open=source(case(int(job_id[-1]))[0])))
        async for result in worker.results():
            results[result.id] = result
            if fast <= results.keys():
                break
        if policy != "error":  # the slow stream is still waiting for its subscriber
            assert "slow" not in results and worker.statistics().active == 1
            slow.gate.set()
            results["slow"] = await worker.results().__anext__()
    for job_id in fast:
        assert as_dict(results[job_id].message) == case(int(job_id[-1]))[1]
    outcome = results["slow"]
    if policy == "error":
        assert isinstance(outcome.error, pipeline.SubscriberOverflowError)
        return
    assert as_dict(outcome.message) == case(0)[1]
    if policy == "block":
        assert "".join(slow.texts) == case(0)[1]["content"][0]["text"]
    else:
        assert 0 < len(slow.texts) < 20


class LogFirstText:
    def __init__(self) -> None:
        self.logged = False

    def on_text(self, event: pipeline.TextEvent) -> None:
        if not self.logged:
            self.logged = True
            structlog.get_logger("tests.worker").info("first_text")


class LogMessage:
    async def on_message(self, message: pipeline.Message) -> None:
        structlog.get_logger("tests.worker").info("message_seen")


async def test_logs_carry_the_job_id_and_request_id() -> None:
    """A subscriber's log lines carry ``job_id`` (and ``request_id``), sync or async."""
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        async with FakeServer([Script(body=case(0)[0], request_id="req_worker_test")]) as server:
            async with (
                pipeline.MessagesClient(api_key="k", base_url=server.url) as client,
                pipeline.Worker(client=client) as worker,
            ):
                messages = [{"role": "user", "content": "Hi"}]
                results = await worker.run([
                    *(pipeline.JobSource(id=f"source-{i}", open=source(case(1 + i)[0]),
                                         subscribers=[LogFirstText(), LogMessage()]) for i in range(2)),
                    pipeline.JobSource(id="broken", open=source(case(3)[0][:300])),
                    pipeline.JobRequest(id="request", model="m", max_tokens=8, messages=messages,
                                        subscribers=[LogFirstText()]),
                ])  # fmt: skip
    first = {entry["job_id"]: entry.get("request_id") for entry in logs if entry["event"] == "first_text"}
    assert first == {"source-0": None, "source-1": None, "request": "req_worker_test"}
    assert sorted(entry["job_id"] for entry in logs if entry["event"] == "message_seen") == ["source-0", "source-1"]
    (failed,) = [entry for entry in logs if entry["event"] == "job_failed"]
    assert (failed["job_id"], failed["log_level"]) == ("broken", "info")
    assert "IncompleteStreamError" in failed["error"]
    assert {result.id: result.request_id for result in results}["request"] == "req_worker_test"
    assert structlog.contextvars.get_contextvars() == {}


async def test_retries_only_before_the_first_event() -> None:
    opened = {"flaky": 0, "always": 0}

    def flaky() -> AsyncIterator[bytes]:
        opened["flaky"] += 1
        return (failing(case(0)[0], after=0) if opened["flaky"] <= 2 else source(case(0)[0]))()

    def always() -> AsyncIterator[bytes]:
        opened["always"] += 1
        return failing(case(1)[0], after=0)()

    no_start = b"".join(split_events(case(3)[0])[1:])  # a block starts before the message
    jobs = [
        pipeline.JobSource(id="flaky", open=flaky),
        pipeline.JobSource(id="always", open=always),
        pipeline.JobSource(id="late", open=failing(case(2)[0], after=5)),
        pipeline.JobSource(id="protocol", open=source(no_start)),
    ]
    async with pipeline.Worker(retry=NO_WAIT) as worker:
        results = {result.id: result for result in await worker.run(jobs)}
    assert as_dict(results["flaky"].message) == case(0)[1]
    assert (results["flaky"].attempts, opened["flaky"]) == (3, 3)
    assert isinstance(results["always"].error, pipeline.SourceError)
    assert (results["always"].attempts, opened["always"]) == (3, 3)
    assert isinstance(results["late"].error, pipeline.SourceError) and results["late"].attempts == 1
    assert isinstance(results["protocol"].error, pipeline.ProtocolError) and results["protocol"].attempts == 1


async def test_leaving_by_an_exception_cancels_every_job() -> None:
    never = anyio.Event()
    before = task_ids()
    with pytest.raises(RuntimeError, match="^boom$"):
        async with pipeline.Worker(concurrency=2) as worker:
            for i in range(2):
                worker.submit_nowait(pipeline.JobSource(id=f"running-{i}", open=gated(case(i)[0], never)))
            await anyio.wait_all_tasks_blocked()
            worker.submit_nowait(pipeline.JobSource(id="queued", open=source(case(2)[0])))
            raise RuntimeError("boom")
    assert task_ids() == before
    results = {result.id: result async for result in worker.results()}
    assert sorted(results) == ["queued", "running-0", "running-1"]
    for result in results.values():
        assert isinstance(result.error, pipeline.JobCancelledError) and result.error.reason == "aborted"
    assert results["running-0"].error.partial_message is not None  # type: ignore[union-attr]
    with pytest.raises(pipeline.WorkerClosedError):
        worker.submit_nowait(pipeline.JobSource(id="late", open=source(b"")))


async def test_cancelling_run_cancels_its_jobs() -> None:
    never = anyio.Event()
    jobs = [pipeline.JobSource(id=f"job-{i}", open=gated(case(i)[0], never)) for i in range(3)]
    async with pipeline.Worker(concurrency=2) as worker:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run, jobs)
            await anyio.wait_all_tasks_blocked()
            assert (worker.statistics().active, worker.statistics().queued) == (2, 1)
            tg.cancel_scope.cancel()
        report = await worker.shutdown(deadline=math.inf)
    assert report.cancelled == ()
    stats = worker.statistics()
    assert (stats.cancelled, stats.finished) == (3, 3)
    assert [result async for result in worker.results()] == []  # run()'s results are run()'s


@pytest.fixture
def idle_worker() -> pipeline.Worker:
    """A worker made outside any event loop."""
    with pytest.raises(ValueError, match=r"^concurrency must be >= 1, got 0$"):
        pipeline.Worker(concurrency=0)
    with pytest.raises(ValueError, match=r"^max_queued must be >= 1, got 0$"):
        pipeline.Worker(max_queued=0)
    return pipeline.Worker(name="idle")


async def test_misuse_is_reported(idle_worker: pipeline.Worker) -> None:
    worker = idle_worker
    assert worker.statistics().uptime == 0.0
    with pytest.raises(RuntimeError, match=r"^use the worker inside `async with`$"):
        await worker.submit(pipeline.JobSource(id="x", open=source(b"")))
    async with worker:
        with pytest.raises(RuntimeError, match=r"^a Worker can be entered only once$"):
            await worker.__aenter__()
        with pytest.raises(TypeError, match=r"^a job is a JobRequest or a JobSource, got Job$"):
            worker.submit_nowait(pipeline.Job(id="x"))
    assert worker.statistics().submitted == 0


async def test_example_worker_1000() -> None:
    spec = importlib.util.spec_from_file_location("worker_1000", EXAMPLES / "worker_1000.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stats = await module.main(streams=50)
    assert (stats.finished, stats.succeeded, stats.failed) == (50, 50, 0)
    assert stats.events == 50 * 25 and stats.ttft_p50 is not None
