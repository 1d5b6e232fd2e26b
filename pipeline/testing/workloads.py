"""Ready-made workloads: seeded bodies of each shape, and the named cases every test runs.

The ``*_builder`` functions return a :class:`~.bodies.StreamBuilder` (to extend or end as
a test likes), the ``*_body`` functions its encoded body; :func:`all_cases` names small
versions of every workload plus the edge cases (server tools, unknown blocks and events,
cumulative usage, stop sequences, no pings).
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .bodies import CITATION_KINDS, StreamBuilder, citation, json_text, random_id, random_json_value, random_words

__all__ = [
    "Case", "all_bodies", "all_cases", "citations_body", "citations_builder", "mixed_body", "mixed_builder",
    "text_body", "text_builder", "thinking_body", "thinking_builder", "tool_body", "tool_builder",
]  # fmt: skip


def text_builder(n_deltas: int = 1000, seed: int = 0) -> StreamBuilder:
    """One text block of ``n_deltas`` deltas of 1-6 words (non-ASCII, quotes, newlines, emoji)."""
    b = StreamBuilder(seed=seed)
    return b.text_block([random_words(b.rng) + " " for _ in range(n_deltas)])


def _object_text(rng: random.Random, input_bytes: int) -> str:
    parts: list[str] = []
    size = 2
    while size < input_bytes:
        part = f"{json_text(f'{random_words(rng, 1, 2)} {len(parts)}', rng)}:{json_text(random_json_value(rng), rng)}"
        parts.append(part)
        size += len(part.encode()) + 1
    return "{" + ",".join(parts) + "}"


def tool_builder(input_bytes: int = 4096, seed: int = 0) -> StreamBuilder:
    """One tool_use block whose input JSON text is about ``input_bytes`` bytes long."""
    b = StreamBuilder(seed=seed)
    return b.tool_use_block(raw_json=_object_text(b.rng, input_bytes))


def thinking_builder(n_deltas: int = 200, seed: int = 0) -> StreamBuilder:
    """A thinking block (deltas + signature_delta), then a short text block."""
    b = StreamBuilder(seed=seed)
    signature = "".join(b.rng.choice(string.ascii_letters + string.digits + "+/") for _ in range(344)) + "=="
    b.thinking_block([random_words(b.rng) + " " for _ in range(n_deltas)], signature)
    return b.text_block([random_words(b.rng) + " " for _ in range(max(1, n_deltas // 10))])


def citations_builder(n_blocks: int = 50, seed: int = 0) -> StreamBuilder:
    """Many short text blocks; half of them carry 1-2 citations of random kinds."""
    b = StreamBuilder(seed=seed)
    for i in range(n_blocks):
        pieces = [random_words(b.rng) for _ in range(b.rng.randint(1, 5))]
        cites: dict[int, list[dict[str, Any]]] = {}
        if i % 2:
            for _ in range(b.rng.randint(1, 2)):
                where = b.rng.randrange(-1, len(pieces))
                cites.setdefault(where, []).append(
                    citation(b.rng.choice(CITATION_KINDS), b.rng, random_words(b.rng)))
        b.text_block(pieces, citations=cites)
    return b


def mixed_builder(n_deltas: int = 50, input_bytes: int = 512, seed: int = 0) -> StreamBuilder:
    """text -> tool_use -> text."""
    b = StreamBuilder(seed=seed)
    b.text_block([random_words(b.rng) + " " for _ in range(n_deltas)])
    b.tool_use_block(raw_json=_object_text(b.rng, input_bytes))
    return b.text_block([random_words(b.rng) + " " for _ in range(n_deltas)])


def text_body(n_deltas: int = 1000, seed: int = 0) -> bytes:
    """Encoded :func:`text_builder` body."""
    return text_builder(n_deltas, seed).build()


def tool_body(input_bytes: int = 4096, seed: int = 0) -> bytes:
    """Encoded :func:`tool_builder` body (``stop_reason: tool_use``)."""
    return tool_builder(input_bytes, seed).build(stop_reason="tool_use")


def thinking_body(n_deltas: int = 200, seed: int = 0) -> bytes:
    """Encoded :func:`thinking_builder` body."""
    return thinking_builder(n_deltas, seed).build()


def citations_body(n_blocks: int = 50, seed: int = 0) -> bytes:
    """Encoded :func:`citations_builder` body."""
    return citations_builder(n_blocks, seed).build()


def mixed_body(n_deltas: int = 50, input_bytes: int = 512, seed: int = 0) -> bytes:
    """Encoded :func:`mixed_builder` body (``stop_reason: tool_use``)."""
    return mixed_builder(n_deltas, input_bytes, seed).build(stop_reason="tool_use")


@dataclass(frozen=True)
class Case:
    """A named test body: a builder plus the keyword arguments for its ending."""

    builder: StreamBuilder
    end: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> bytes:
        """The encoded body."""
        return self.builder.build(**self.end)

    def expected_message(self) -> dict[str, Any]:
        """The final message a correct accumulator builds."""
        return self.builder.expected_message(**self.end)


def all_cases(seed: int = 0) -> dict[str, Case]:
    """Small versions of every workload plus edge cases, by name."""
    r = random.Random(seed)
    tool_end = {"stop_reason": "tool_use"}

    def sb(**kwargs: Any) -> StreamBuilder:
        return StreamBuilder(seed=seed, **kwargs)

    server = sb().tool_use_block({"query": "weather in Zürich"}, name="web_search", server=True)
    results = [{"type": "web_search_result", "url": f"https://example.com/{i}", "title": random_words(r),
                "encrypted_content": random_id(r, "Eq", 40), "page_age": None} for i in range(2)]
    server.raw_block({"type": "web_search_tool_result", "tool_use_id": server.expected_content()[0]["id"],
                      "content": results})
    server.text_block(["It is ", "sunny."], citations={1: [citation("web_search_result_location", r, "sunny")]})
    multi = sb().text_block(["Calling tools."])
    for i in range(3):
        multi.tool_use_block({"city": random_words(r, 1, 2), "n": i}, name=f"tool_{i}")
    cumulative = {"input_tokens": 42, "cache_creation_input_tokens": 7, "cache_read_input_tokens": 5,
                  "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 0}}
    mystery = ({"type": "mystery_block", "foo": 1}, [{"type": "mystery_delta", "bar": "x"}])
    return {
        "text": Case(text_builder(20, seed)),
        "tool": Case(tool_builder(300, seed), tool_end),
        "thinking": Case(thinking_builder(10, seed)),
        "citations": Case(citations_builder(6, seed)),
        "mixed": Case(mixed_builder(5, 200, seed), tool_end),
        "server_tool": Case(server, {"message_delta_usage": {"server_tool_use": {"web_search_requests": 1}}}),
        "redacted_thinking": Case(sb().thinking_block(["Hmm"], "c2ln")
                                  .redacted_thinking_block(random_id(r, "EmwKAhgB", 60)).text_block(["Done."])),
        "empty_tool_input": Case(sb().tool_use_block(name="get_time"), tool_end),
        "empty_tool_no_delta": Case(sb().tool_use_block(name="get_time", empty_delta=False), tool_end),
        "multi_tool": Case(multi, tool_end),
        "unknown_block": Case(sb().text_block(["before"]).raw_block(*mystery).text_block(["after"])),
        "unknown_event": Case(sb().text_block(["a", "b"])
                              .raw_event("mystery_event", {"type": "mystery_event", "x": 1}).text_block(["c"])),
        "cumulative_usage": Case(sb().text_block(["usage"]), {"message_delta_usage": cumulative}),
        "stop_sequence": Case(sb().text_block(["Hello", "!"]),
                              {"stop_reason": "stop_sequence", "stop_sequence": "\n\nHuman:"}),
        "no_pings": Case(sb(pings=False).text_block(["quiet"]), {"stop_reason": "max_tokens"}),
    }


def all_bodies(seed: int = 0) -> dict[str, bytes]:
    """Encoded bodies of :func:`all_cases`, by name."""
    return {name: case.body() for name, case in all_cases(seed).items()}
