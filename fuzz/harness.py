"""The check that the fuzz target runs on each input; also run on every saved crash by
tests/test_fuzz.py (no atheris needed)."""

from __future__ import annotations

from typing import Any

import anyio

import pipeline
from pipeline.testing import aiter_chunks

STAGED = (pipeline.parse(), pipeline.boundary(), pipeline.accumulate(), pipeline.boundary(), pipeline.derive())


def cut(body: bytes, size: int) -> list[bytes]:
    """*body* in chunks of *size* bytes (0: one chunk)."""
    if size == 0:
        return [body] if body else []
    return [body[i : i + size] for i in range(0, len(body), size)]


async def outcome(chunks: list[bytes], stages: Any) -> tuple[list[dict[str, Any]], Any]:
    """The events delivered, then the final message or the error's type name.

    Raises:
        AssertionError: An error after ``message_start`` came without a partial message.
        Exception: Anything but a :class:`pipeline.PipelineError` (a bug).
    """
    events: list[dict[str, Any]] = []
    try:
        async with pipeline.open_stream(aiter_chunks(chunks), stages=stages) as stream:
            async for event in stream:
                events.append(event.to_dict())
            return events, (await stream.get_final_message()).to_dict()
    except pipeline.PipelineError as exc:
        if any(e["type"] == "message_start" for e in events) and exc.partial_message is None:
            raise AssertionError(f"{type(exc).__name__} after message_start without a partial message") from exc
        return events, type(exc).__name__


def check_input(data: bytes, backend: str = "asyncio") -> None:
    """Two bytes choose the chunk size (mod 300; 0: one chunk), the rest is the body; both
    chains must agree and fail only with typed errors."""
    if len(data) < 2:
        return
    chunks = cut(data[2:], int.from_bytes(data[:2], "little") % 300)
    fused = anyio.run(outcome, chunks, (), backend=backend)
    staged = anyio.run(outcome, chunks, STAGED, backend=backend)
    if fused != staged:
        raise AssertionError(f"the fused and the staged chains disagree:\n{fused!r}\n{staged!r}")
