"""Benchmark workloads: deterministic Anthropic Messages SSE bodies, and chunk shapes.

Every body is in the exact wire format (``event: X\\ndata: {compact json}\\n\\n``, pings
included) and seeded, so the same name always gives the same bytes. The named workloads
follow ``/work/shared/BASELINE.md``; the ``pipeline.testing`` builders are reused where they
fit, with one ping after ``message_start`` and then one every 1,000 events (which is what
gives BASELINE.md's event counts, e.g. 20,026 for ``text``).

Names: ``text``, ``tool_10k``, ``tool_100k``, ``tool_1m``, ``thinking``, ``citations``,
``mixed``, and the parameterised ``text:N`` (N text deltas) and ``tool:BYTES`` (tool input
JSON of about BYTES bytes).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cache
from typing import Any

import pipeline.testing as t
from pipeline.testing.bodies import random_words

__all__ = ["BULK_CHUNK", "NAMED", "SHAPES", "Workload", "chunks", "make", "parse_names"]

PING_EVERY = 1000
KIB = 1024
BULK_CHUNK = 16 * KIB
SEED = 0
# The SDK re-parses the whole partial tool input on every delta (quadratic): ~8 s per stream at
# 300 KB, ~200 s at 1 MiB. Above this size the SDK is skipped unless --with-slow-sdk.
SDK_SLOW_TOOL_BYTES = 400_000

NAMED: tuple[str, ...] = ("text", "tool_10k", "tool_100k", "tool_1m", "thinking", "citations", "mixed")
SHAPES: tuple[str, ...] = ("live", "bulk")

# --quick: tiny stand-ins with the same structure (tool_1m keeps its "SDK skipped" path).
QUICK: dict[str, str] = {
    "text": "text:200",
    "tool_10k": "tool:1000",
    "tool_100k": "tool:4000",
    "tool_1m": "tool:16000",
    "thinking": "thinking:80",
    "citations": "citations:10",
    "mixed": "mixed:20",
}


@dataclass(frozen=True)
class Workload:
    """One benchmark body and what a correct consumer must produce from it.

    Attributes:
        name: The name it was made from (``text``, ``tool:30000``...).
        body: The SSE body, exact wire format.
        expected: The final message's ``to_dict()`` as the SDK returns it.
        derived_events: Events the SDK yields (every raw non-ping event, plus one
            derived event per content delta); our ``on_event`` count must equal it.
        wire_events: SSE events on the wire, pings included (the us/event unit).
        sdk_slow: The SDK would take minutes: skipped unless ``--with-slow-sdk``.
        note: What a ``--quick`` stand-in replaces, if anything.
    """

    name: str
    body: bytes
    expected: dict[str, Any]
    derived_events: int
    wire_events: int
    sdk_slow: bool
    note: str = ""


def _thinking_builder(n_thinking: int, n_text: int, seed: int) -> t.StreamBuilder:
    """A thinking block of ``n_thinking`` deltas + ``signature_delta``, then ``n_text`` text deltas."""
    b = t.StreamBuilder(seed=seed)
    signature = "".join(b.rng.choice(string.ascii_letters + string.digits + "+/") for _ in range(344)) + "=="
    b.thinking_block([random_words(b.rng) + " " for _ in range(n_thinking)], signature)
    return b.text_block([random_words(b.rng) + " " for _ in range(n_text)])


def _citations_builder(n_blocks: int, seed: int) -> t.StreamBuilder:
    """``n_blocks`` text blocks of 8-24 deltas; every other one with 1-2 ``char_location`` citations."""
    b = t.StreamBuilder(seed=seed)
    for i in range(n_blocks):
        pieces = [random_words(b.rng) + " " for _ in range(b.rng.randint(8, 24))]
        cites: dict[int, list[dict[str, Any]]] = {}
        if i % 2:
            for _ in range(b.rng.randint(1, 2)):
                where = b.rng.randrange(-1, len(pieces))
                cites.setdefault(where, []).append(t.citation("char_location", b.rng, random_words(b.rng)))
        b.text_block(pieces, citations=cites)
    return b


def _builder(kind: str, param: int) -> tuple[t.StreamBuilder, dict[str, Any]]:
    tool_end = {"stop_reason": "tool_use"}
    if kind == "text":
        return t.text_builder(param, SEED), {}
    if kind == "tool":
        return t.tool_builder(param, SEED), tool_end
    if kind == "thinking":  # param: thinking deltas; text deltas are a quarter of that
        return _thinking_builder(param, max(1, param // 4), SEED), {}
    if kind == "citations":
        return _citations_builder(param, SEED), {}
    if kind == "mixed":  # param: text deltas per text block; tool input ~40 bytes per text delta
        return t.mixed_builder(param, param * 40 + 512, SEED), tool_end
    raise ValueError(f"unknown workload kind {kind!r}")


_SPECS: dict[str, tuple[str, int]] = {
    "text": ("text", 20_000),
    "tool_10k": ("tool", 10 * KIB),
    "tool_100k": ("tool", 100 * KIB),
    "tool_1m": ("tool", KIB * KIB),
    "thinking": ("thinking", 8_000),
    "citations": ("citations", 200),
    "mixed": ("mixed", 500),
}


def _spec(name: str) -> tuple[str, int]:
    if name in _SPECS:
        return _SPECS[name]
    kind, sep, param = name.partition(":")
    if sep and kind in ("text", "tool", "thinking", "citations", "mixed") and param.isdigit() and int(param) > 0:
        return kind, int(param)
    raise ValueError(f"unknown workload {name!r}: use one of {', '.join(NAMED)}, text:N or tool:BYTES")


def parse_names(value: str) -> list[str]:
    """Split a comma-separated ``--only`` value and validate every name."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        _spec(name)
    return names


@cache
def make(name: str, *, quick: bool = False) -> Workload:
    """Build (once per process) the workload called *name*; ``quick`` swaps in a tiny stand-in."""
    real = QUICK.get(name, name) if quick else name
    kind, param = _spec(real)
    builder, end = _builder(kind, param)
    builder.ping_every = PING_EVERY
    events = builder.events(**end)
    deltas = sum(1 for ev, _ in events if ev == "content_block_delta")
    return Workload(
        name=name,
        body=t.encode_events(events),
        expected={**builder.expected_message(**end), "stop_details": None},
        derived_events=sum(1 for ev, _ in events if ev != "ping") + deltas,
        wire_events=len(events),
        sdk_slow=name == "tool_1m" or (kind == "tool" and param > SDK_SLOW_TOOL_BYTES),
        note=f"quick: {real}" if real != name else "",
    )


def chunks(body: bytes, shape: str) -> list[bytes]:
    """Cut *body*: ``live`` = one SSE event per chunk, ``bulk`` = 16 KiB chunks cut anywhere."""
    if shape == "live":
        return t.chunk_events(body)
    if shape == "bulk":
        return t.chunk_bytes(body, BULK_CHUNK)
    raise ValueError(f"unknown chunk shape {shape!r}: use live or bulk")
