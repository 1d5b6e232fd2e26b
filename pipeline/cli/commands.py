"""The ``sse-pipeline`` command (also ``python -m pipeline``).

Subcommands: ``demo`` (many concurrent streams against the embedded fake server: no key,
no network), ``replay FILE.sse``, ``run PROMPT`` (a real request), ``serve-fake``; and, with
``pip install 'sse-pipeline[redis]'``, ``worker`` / ``submit`` / ``follow JOB_ID`` (a fleet of
worker processes sharing jobs through Redis, see :mod:`pipeline.redis_jobs`).
Bad arguments, a missing key, an unreachable server or a malformed file end with a
one-line error on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import anyio

from .. import __version__
from ..client import MessagesClient, RetryPolicy
from ..errors import PipelineError
from ..logs import configure_logging
from ..runtime.open import open_stream

__all__ = ["main"]

_WORKLOADS = ("text", "tool", "thinking", "citations", "mixed")


class CLIError(Exception):
    """A user-facing error: printed on one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"sse-pipeline: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sse-pipeline", description="LLM SSE streams -> typed events.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio", help="the event loop")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    demo = commands.add_parser("demo", help="run many streams against the embedded fake server")
    demo.add_argument("--streams", type=_positive, default=200, help="streams to run (default 200)")
    demo.add_argument("--concurrency", type=_positive, default=200, help="streams at once (default 200)")
    demo.add_argument("--rate", type=float, default=200.0, help="events per second per stream (default 200)")
    demo.add_argument("--seed", type=int, default=0)

    replay = commands.add_parser("replay", help="run a recorded .sse file through the pipeline")
    replay.add_argument("file", type=Path)
    shape = replay.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print the final message as JSON")
    shape.add_argument("--events", action="store_true", help="print every derived event as a JSON line")
    replay.add_argument("--allow-incomplete", action="store_true", help="accept a stream without message_stop")

    run = commands.add_parser("run", help="send a real request (ANTHROPIC_API_KEY) and stream the text")
    run.add_argument("prompt")
    run.add_argument("--model", default="claude-sonnet-4-5")
    run.add_argument("--max-tokens", type=_positive, default=1024)
    run.add_argument("--base-url", default=None, help="default: ANTHROPIC_BASE_URL or the real API")
    run.add_argument("--api-key", default=None, help="default: ANTHROPIC_API_KEY")

    serve = commands.add_parser("serve-fake", help="run the fake Messages API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--script", choices=_WORKLOADS, default=None, help="always answer with this workload")
    serve.add_argument("--rate", type=float, default=None, help="events per second (default: unpaced)")
    _redis_parsers(commands)
    return parser


_REDIS_URL = os.environ.get("SSE_PIPELINE_REDIS_URL", "redis://localhost:6379")
# A person at a terminal learns of a wrong URL or a down Redis within seconds, and a blip
# (a restart from a small AOF, a dropped connection: about a second) still passes; a script
# that must ride out a failover passes more. The worker has no such option: it retries for ever.
_REDIS_TIMEOUT = 3.0


def _redis_parsers(commands: Any) -> None:
    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--redis", default=_REDIS_URL, metavar="URL",
                            help="the Redis URL (default: SSE_PIPELINE_REDIS_URL or redis://localhost:6379)")
        parser.add_argument("--queue", default="sse-pipeline", help="the queue's name (default sse-pipeline)")

    def client(parser: argparse.ArgumentParser) -> None:
        common(parser)
        parser.add_argument("--redis-timeout", type=_seconds, default=_REDIS_TIMEOUT, metavar="SECONDS",
                            help=f"give up after Redis is unreachable for this long (default {_REDIS_TIMEOUT:g})")

    worker = commands.add_parser("worker", help="run jobs from a Redis queue until SIGTERM/SIGINT")
    common(worker)
    worker.add_argument("--concurrency", type=_positive, default=100, help="jobs at once (default 100)")
    worker.add_argument("--base-url", default=None, help="default: ANTHROPIC_BASE_URL or the real API")
    worker.add_argument("--api-key", default=None, help="default: ANTHROPIC_API_KEY")
    worker.add_argument("--name", default=None, help="the consumer name (default: HOST-PID-RANDOM)")
    worker.add_argument("--claim-idle", type=_seconds, default=60.0, help="reclaim a dead worker's jobs after (60)")
    worker.add_argument("--max-attempts", type=_positive, default=3, help="dead-letter after this many failures")
    worker.add_argument("--drain-timeout", type=_seconds, default=30.0, help="on SIGTERM, finish jobs for (30)")
    worker.add_argument("--metrics-interval", type=_seconds, default=10.0, help="seconds between metrics lines")

    submit = commands.add_parser("submit", help="queue a Messages request; print its job id")
    client(submit)
    submit.add_argument("prompt")
    submit.add_argument("--id", default=None, help="the job id (default: a random one)")
    submit.add_argument("--model", default="claude-sonnet-4-5")
    submit.add_argument("--max-tokens", type=_positive, default=1024)
    submit.add_argument("--system", default=None)

    follow = commands.add_parser("follow", help="tail a job's events live, then its final message")
    client(follow)
    follow.add_argument("job_id")
    shape = follow.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print only the final message as JSON")
    shape.add_argument("--events", action="store_true", help="print every update as a JSON line")


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {value!r}")
    return number


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_jsonable)


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as file:
        while chunk := await file.read(65536):
            yield chunk


async def replay(args: argparse.Namespace) -> None:
    """Run a recorded stream through the pipeline and print it."""
    if not args.file.is_file():
        raise CLIError(f"no such file: {args.file}")
    async with open_stream(_file_chunks(args.file), allow_incomplete=args.allow_incomplete) as stream:
        if args.events:
            async for event in stream:
                print(_dumps(event.to_dict()))
        elif not args.json:

            @stream.on_text
            def show(event: Any) -> None:
                sys.stdout.write(event.text)
                sys.stdout.flush()

        message = await stream.get_final_message()
    if args.json:
        print(_dumps(message.to_dict()))
    elif not args.events:
        print()


async def run(args: argparse.Namespace) -> None:
    """Send one real request and print its text live."""
    key = args.api_key or os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        raise CLIError("no API key: set ANTHROPIC_API_KEY or pass --api-key")
    async with MessagesClient(api_key=key, base_url=args.base_url, retry=RetryPolicy(max_retries=2)) as client:
        messages = [{"role": "user", "content": args.prompt}]
        async with client.stream(model=args.model, max_tokens=args.max_tokens, messages=messages) as stream:
            async for text in stream.text_stream:
                sys.stdout.write(text)
                sys.stdout.flush()
            message = await stream.get_final_message()
    print(f"\n[{message.stop_reason}; {message.usage.input_tokens} in, {message.usage.output_tokens} out]")


async def serve_fake(args: argparse.Namespace) -> None:
    """Run the fake server until interrupted."""
    from .. import testing  # noqa: PLC0415
    from ..fake_server import FakeServer, Script  # noqa: PLC0415

    scripts = None
    if args.script or args.rate:
        bodies: dict[str, Callable[[], bytes]] = {
            "text": testing.text_body,
            "tool": testing.tool_body,
            "thinking": testing.thinking_body,
            "citations": testing.citations_body,
            "mixed": testing.mixed_body,
        }
        body = bodies[args.script]() if args.script else None
        scripts = [Script(body=body, events_per_second=args.rate)]
    server = FakeServer(scripts, host=args.host, port=args.port)
    try:
        await server.__aenter__()
    except OSError as exc:
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    try:
        print(f"fake Messages API on {server.url} (POST /v1/messages; any x-api-key); Ctrl-C stops", flush=True)
        await anyio.sleep_forever()
    finally:
        await server.__aexit__(None, None, None)


def freeze_startup_heap() -> None:
    """Move everything allocated so far (modules, classes, constants) out of the garbage
    collector's sight, before serving many streams.

    Every full collection walks every tracked object, a worker's imports included, and
    streams wait while it does (docs/DEPLOYMENT.md, "Garbage collection pauses"). Freezing
    them once leaves only the live streams to walk.
    """
    gc.collect()
    gc.freeze()


async def demo(args: argparse.Namespace) -> None:
    """Many concurrent streams against the embedded fake server, with a summary."""
    from .demo import run_demo  # noqa: PLC0415

    freeze_startup_heap()
    await run_demo(streams=args.streams, concurrency=args.concurrency, rate=args.rate, seed=args.seed)


def _redis_jobs() -> ModuleType:
    try:
        from .. import redis_jobs  # noqa: PLC0415
    except ImportError as exc:
        raise CLIError(f"{exc} (see docs/DEPLOYMENT.md)") from None
    return redis_jobs


async def worker(args: argparse.Namespace) -> None:
    """Run a Redis worker until SIGTERM or SIGINT (a second one stops at once)."""
    redis_jobs = _redis_jobs()
    key = args.api_key or os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        raise CLIError("no API key: set ANTHROPIC_API_KEY or pass --api-key (any value for a fake server)")
    fleet_worker = redis_jobs.RedisWorker(
        args.redis, concurrency=args.concurrency, base_url=args.base_url, api_key=key, queue=args.queue,
        name=args.name, claim_idle=args.claim_idle, max_attempts=args.max_attempts,
        drain_timeout=args.drain_timeout, metrics_interval=args.metrics_interval,
    )  # fmt: skip
    freeze_startup_heap()
    stats: list[Any] = []
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_on_signals, signals, fleet_worker, tg.cancel_scope)
            async with anyio.create_task_group() as serving:

                async def serve(*, task_status: Any) -> None:
                    stats.append(await fleet_worker.run(task_status=task_status))

                await serving.start(serve)
                print(f"worker {fleet_worker.name}: queue {args.queue!r}, concurrency {args.concurrency}; "
                      "SIGTERM or Ctrl-C stops", flush=True)  # fmt: skip
            tg.cancel_scope.cancel()
    if stats:
        s = stats[0]
        print(f"worker {s.name} stopped: done {s.done}, failed {s.failed}, reclaimed {s.reclaimed}, "
              f"handed back {s.handed_back}, events {s.events}", flush=True)  # fmt: skip


async def _on_signals(signals: AsyncIterator[int], fleet_worker: Any, scope: anyio.CancelScope) -> None:
    """The first signal stops the worker gracefully; a second one cancels it at once
    (its jobs stay pending, and live workers reclaim them)."""
    async for _ in signals:
        if fleet_worker.stopping:
            scope.cancel()
        fleet_worker.stop()


async def submit(args: argparse.Namespace) -> None:
    """Queue one request and print its job id."""
    redis_jobs = _redis_jobs()
    from ..worker.jobs import JobRequest  # noqa: PLC0415

    params = {"system": args.system} if args.system else {}
    job = JobRequest(id=args.id or uuid.uuid4().hex, model=args.model, max_tokens=args.max_tokens,
                     messages=[{"role": "user", "content": args.prompt}], params=params)  # fmt: skip
    async with redis_jobs.open_queue(args.redis, name=args.queue, timeout=args.redis_timeout) as queue:
        print(await queue.submit(job), flush=True)


async def follow(args: argparse.Namespace) -> None:
    """Print a job's text (or updates) live, then how it ended."""
    redis_jobs = _redis_jobs()
    async with redis_jobs.open_queue(args.redis, name=args.queue, timeout=args.redis_timeout) as queue:
        async for update in queue.follow(args.job_id):
            if args.events:
                print(_dumps(_update_dict(update)), flush=True)
            elif isinstance(update, redis_jobs.AttemptStarted) and update.attempt > 1 and not args.json:
                print(f"\n[attempt {update.attempt} on {update.worker}: starting over]", flush=True)
            elif isinstance(update, redis_jobs.JobEvent) and update.type == "text" and not args.json:
                sys.stdout.write(update.event["text"])
                sys.stdout.flush()
    finished = update
    if finished.error is not None:
        raise CLIError(f"job {args.job_id} failed: {finished.error.type}: {finished.error.message}")
    message = finished.message
    if args.json:
        print(_dumps(message.to_dict()))
    elif not args.events:
        print(f"\n[{message.stop_reason}; {message.usage.input_tokens} in, {message.usage.output_tokens} out]")


def _update_dict(update: Any) -> dict[str, Any]:
    import msgspec  # noqa: PLC0415

    fields: dict[str, Any] = msgspec.structs.asdict(update)
    if fields.get("message") is not None:
        fields["message"] = fields["message"].to_dict()
    if fields.get("error") is not None:
        fields["error"] = msgspec.structs.asdict(fields["error"])
    return {"kind": type(update).__name__, **fields}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    args = _parser().parse_args(argv)
    configure_logging(logging.INFO if args.command == "worker" else logging.WARNING)  # stderr, secrets masked
    command = {
        "demo": demo, "replay": replay, "run": run, "serve-fake": serve_fake, "worker": worker, "submit": submit,
        "follow": follow,
    }[args.command]  # fmt: skip
    started = time.perf_counter()
    try:
        anyio.run(command, args, backend=args.backend)
    except KeyboardInterrupt:
        return 130
    except (CLIError, PipelineError, OSError, ValueError) as exc:
        print(f"sse-pipeline: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.command == "demo":
            print(f"done in {time.perf_counter() - started:.2f}s", file=sys.stderr)
    return 0
