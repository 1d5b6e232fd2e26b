"""Chunkers: one body cut into the chunks a transport might deliver.

Whole, one SSE event per chunk, fixed sizes, or seeded random sizes cut anywhere (inside
UTF-8 sequences and CRLF pairs too); :func:`aiter_chunks` serves any of them as the
async byte source a pipeline reads. It is the only async helper of :mod:`pipeline.testing`.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable

import anyio.lowlevel

__all__ = ["aiter_chunks", "chunk_bytes", "chunk_events", "chunk_random", "chunk_whole"]


def chunk_whole(data: bytes) -> list[bytes]:
    """The whole body as one chunk."""
    return [data]


def chunk_events(data: bytes) -> list[bytes]:
    """One SSE event per chunk: split after each ``\\n\\n`` (any remainder is the last chunk)."""
    parts = data.split(b"\n\n")
    chunks = [p + b"\n\n" for p in parts[:-1]]
    return chunks + [parts[-1]] if parts[-1] else chunks


def chunk_bytes(data: bytes, size: int = 1) -> list[bytes]:
    """Fixed-size chunks of ``size`` bytes (the last may be shorter)."""
    size = max(1, size)
    return [data[i:i + size] for i in range(0, len(data), size)]


def chunk_random(data: bytes, seed: int, max_size: int = 64) -> list[bytes]:
    """Chunks of random sizes in ``[1, max_size]``, cut anywhere (inside UTF-8 sequences too)."""
    rng, out, pos = random.Random(seed), list[bytes](), 0
    while pos < len(data):
        size = rng.randint(1, max(1, max_size))
        out.append(data[pos:pos + size])
        pos += size
    return out


async def aiter_chunks(chunks: Iterable[bytes], *, checkpoint: bool = False) -> AsyncIterator[bytes]:
    """Yield each chunk; with ``checkpoint=True``, ``await anyio.lowlevel.checkpoint()`` between chunks."""
    for i, chunk in enumerate(chunks):
        if checkpoint and i:
            await anyio.lowlevel.checkpoint()
        yield chunk
