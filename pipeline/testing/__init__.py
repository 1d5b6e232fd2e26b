"""Deterministic generators of Anthropic Messages streaming bodies, and chunkers.

Every body is in the exact wire format of the API: each server-sent event is
``event: NAME\\ndata: {compact JSON}\\n\\n``, with ``ping`` events interleaved
(written ``data: {"type": "ping"}``, with a space, as the API does).
Everything is seeded (``random.Random(seed)``), so the same arguments always
give the same bytes.

Example:
    >>> body = (StreamBuilder(seed=1).text_block(["Hel", "lo"])
    ...         .tool_use_block({"city": "Paris"}).build(stop_reason="tool_use"))
    >>> chunks = chunk_random(body, seed=2, max_size=16)

Rule: imports nothing of the package; msgspec from outside (``anyio.lowlevel`` for the async chunker only).
"""

from __future__ import annotations

from .bodies import (
    CITATION_KINDS,
    PING,
    PING_DATA,
    Event,
    StreamBuilder,
    citation,
    encode_events,
    json_text,
    random_json_value,
)
from .chunkers import aiter_chunks, chunk_bytes, chunk_events, chunk_random, chunk_whole
from .workloads import (
    Case,
    all_bodies,
    all_cases,
    citations_body,
    citations_builder,
    mixed_body,
    mixed_builder,
    text_body,
    text_builder,
    thinking_body,
    thinking_builder,
    tool_body,
    tool_builder,
)

__all__ = [
    "CITATION_KINDS",
    "Case",
    "Event",
    "PING",
    "PING_DATA",
    "StreamBuilder",
    "aiter_chunks",
    "all_bodies",
    "all_cases",
    "chunk_bytes",
    "chunk_events",
    "chunk_random",
    "chunk_whole",
    "citation",
    "citations_body",
    "citations_builder",
    "encode_events",
    "json_text",
    "mixed_body",
    "mixed_builder",
    "random_json_value",
    "text_body",
    "text_builder",
    "thinking_body",
    "thinking_builder",
    "tool_body",
    "tool_builder",
]
