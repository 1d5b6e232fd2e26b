"""The stream builder: Anthropic Messages streaming bodies in the exact wire format.

:class:`StreamBuilder` composes one message block by block and encodes it as server-sent
events (:func:`encode_events`); :func:`json_text`, :func:`random_json_value`,
:func:`citation` and the word list draw the seeded content the blocks carry. Ready-made
bodies are in :mod:`.workloads`, ways to cut a body into chunks in :mod:`.chunkers`.
"""

from __future__ import annotations

import copy
import json
import random
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

__all__ = [
    "CITATION_KINDS", "PING", "PING_DATA", "WORDS", "Event", "StreamBuilder", "citation", "encode_events", "json_text",
    "random_id", "random_json_value", "random_words",
]  # fmt: skip

Event = tuple[str | None, dict[str, Any]]
"""One SSE event: ``(event name, data payload)``; a ``None`` name omits the ``event:`` line."""

PING: dict[str, Any] = {"type": "ping"}
PING_DATA = b'{"type": "ping"}'
CITATION_KINDS = ("char_location", "page_location", "content_block_location", "web_search_result_location")

WORDS: tuple[str, ...] = (
    "the", "a", "stream", "of", "events", "token", "model", "JSON", "delta", "block",
    "café", "naïve", "Zürich", "日本語", "Привет", "مرحبا", "🙂", "👩‍💻", "🚀",
    '"quoted"', "it's", "back\\slash", "tab\there", "\n", "\n\n", "{braces}", "[x]",
    "data:", "event:", "\\n", "1.5e3", "null", "100%", "<tag/>", "é", "ﬁ",
)
"""What generated text is made of: non-ASCII, emoji, quotes, escapes, newlines, SSE field names."""


def random_id(rng: random.Random, prefix: str, n: int = 22) -> str:
    """*prefix* and *n* random letters and digits, like the API's ids (``msg_01...``)."""
    return prefix + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def random_words(rng: random.Random, lo: int = 1, hi: int = 6) -> str:
    """*lo* to *hi* words of :data:`WORDS`, joined by spaces."""
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _json_str(s: str, rng: random.Random | None) -> str:
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\n\t\r\b\f":
            out.append(json.dumps(ch)[1:-1])
        elif code < 0x20 or (rng is not None and code > 0x7E and rng.random() < 0.5):
            units = [code] if code <= 0xFFFF else [0xD800 + ((code - 0x10000) >> 10), 0xDC00 + (code & 0x3FF)]
            out.extend(f"\\u{u:04x}" if rng is None or rng.random() < 0.5 else f"\\u{u:04X}" for u in units)
        elif ch == "/" and rng is not None and rng.random() < 0.5:
            out.append("\\/")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def json_text(obj: Any, rng: random.Random | None = None) -> str:
    """Serialise ``obj`` as compact JSON text; ``json.loads`` of the result equals ``obj``.

    Args:
        obj: A JSON-compatible value (dict, list, str, int, float, bool, None).
        rng: If given, non-ASCII characters are randomly written raw or ``\\uXXXX``-escaped
            (surrogate pairs above U+FFFF), in either hex case, and ``/`` sometimes as ``\\/``.
    """
    if obj is None or isinstance(obj, bool):
        return {None: "null", True: "true", False: "false"}[obj]
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, str):
        return _json_str(obj, rng)
    if isinstance(obj, list | tuple):
        return "[" + ",".join(json_text(v, rng) for v in obj) + "]"
    if isinstance(obj, Mapping):
        return "{" + ",".join(f"{_json_str(k, rng)}:{json_text(v, rng)}" for k, v in obj.items()) + "}"
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def random_json_value(rng: random.Random, depth: int = 3) -> Any:
    """Return a random JSON value: nested objects/arrays, escaped strings, numbers, literals."""
    kind = rng.randrange(8 if depth > 0 else 6)
    if kind == 0:
        return rng.choice([True, False, None])
    if kind == 1:
        return rng.randint(-(10**12), 10**12)
    if kind == 2:
        return round(rng.uniform(-1e4, 1e4), rng.randint(0, 6))
    if kind in (3, 4, 5):
        return random_words(rng, 0, 8) + rng.choice(["", '"', "\\", "\n", "é", "\u2028", "\x01", "/"])
    if kind == 6:
        return [random_json_value(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    return {random_words(rng, 1, 2): random_json_value(rng, depth - 1) for _ in range(rng.randint(0, 4))}


def citation(kind: str, rng: random.Random, cited_text: str = "cited text") -> dict[str, Any]:
    """Build one citation dict, as it appears in a ``citations_delta``.

    Args:
        kind: One of :data:`CITATION_KINDS`.
        rng: Source of the random indices, titles and URLs.
        cited_text: The ``cited_text`` field.
    """
    if kind == "web_search_result_location":
        return {"type": kind, "cited_text": cited_text, "url": f"https://example.com/{rng.randrange(999)}",
                "title": random_words(rng, 1, 3), "encrypted_index": random_id(rng, "Eo", 30)}
    start = rng.randrange(100)
    unit = {"char_location": "char_index", "page_location": "page_number"}.get(kind, "block_index")
    return {"type": kind, "cited_text": cited_text, "document_index": rng.randrange(3),
            "document_title": rng.choice([None, random_words(rng, 1, 3)]),
            f"start_{unit}": start, f"end_{unit}": start + rng.randint(1, 40)}


class StreamBuilder:
    """Composable builder of one streamed message.

    Block methods append a content block (start, deltas, stop) with the next
    index and return ``self``; all randomness is drawn when a method is called,
    so :meth:`events` and :meth:`build` are repeatable.

    Args:
        seed: Seed of the builder's ``random.Random``.
        model: The ``model`` of the message.
        message_id: The message id; random ``msg_01...`` if ``None``.
        input_tokens: ``usage.input_tokens`` in ``message_start``.
        pings: Whether to interleave ``ping`` events.
        ping_every: A ping follows ``message_start`` and then every this many events.
        usage_extra: Extra keys merged into ``message_start``'s usage.
        message_extra: Extra keys merged into ``message_start``'s message.
    """

    def __init__(self, *, seed: int = 0, model: str = "claude-sonnet-4-5", message_id: str | None = None,
                 input_tokens: int = 10, pings: bool = True, ping_every: int = 5,
                 usage_extra: Mapping[str, Any] | None = None,
                 message_extra: Mapping[str, Any] | None = None) -> None:
        self.rng = random.Random(seed)
        usage = {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0, "output_tokens": 1, **(usage_extra or {})}
        self.message: dict[str, Any] = {
            "id": message_id or random_id(self.rng, "msg_01"), "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage,
            **(message_extra or {})}
        self.pings, self.ping_every = pings, max(1, ping_every)
        self._body: list[Event] = []
        self._expected: list[dict[str, Any]] = []

    def _block(self, start: dict[str, Any], deltas: Iterable[dict[str, Any]],
               expected: dict[str, Any]) -> StreamBuilder:
        index = len(self._expected)
        self._body.append(("content_block_start",
                           {"type": "content_block_start", "index": index, "content_block": start}))
        self._body.extend(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
                          for d in deltas)
        self._body.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        self._expected.append(expected)
        return self

    def text_block(self, pieces: Sequence[str], *,
                   citations: Mapping[int, Sequence[dict[str, Any]]] | None = None) -> StreamBuilder:
        """Add a text block with one ``text_delta`` per piece.

        Args:
            pieces: The text deltas.
            citations: Maps a piece index to the citations emitted (as
                ``citations_delta`` events) right after that piece; ``-1``
                means before the first piece.
        """
        cites = citations or {}
        deltas: list[dict[str, Any]] = [{"type": "citations_delta", "citation": c} for c in cites.get(-1, ())]
        for i, piece in enumerate(pieces):
            deltas.append({"type": "text_delta", "text": piece})
            deltas.extend({"type": "citations_delta", "citation": c} for c in cites.get(i, ()))
        expected: dict[str, Any] = {"type": "text", "text": "".join(pieces)}
        if any(d["type"] == "citations_delta" for d in deltas):
            expected["citations"] = [d["citation"] for d in deltas if d["type"] == "citations_delta"]
        return self._block({"type": "text", "text": ""}, deltas, expected)

    def tool_use_block(self, input_obj: Any = None, *, raw_json: str | None = None, name: str = "get_weather",
                       tool_id: str | None = None, piece_size: tuple[int, int] = (4, 16), server: bool = False,
                       empty_delta: bool = True) -> StreamBuilder:
        """Add a ``tool_use`` (or ``server_tool_use``) block streaming its input JSON text.

        Args:
            input_obj: The tool input; ``None`` or ``{}`` means empty input.
            raw_json: Exact JSON text to stream instead of encoding ``input_obj``.
            name: The tool name.
            tool_id: The block id; random ``toolu_01...`` / ``srvtoolu_01...`` if ``None``.
            piece_size: Bounds of the random piece lengths, in characters; cuts fall
                anywhere (inside escapes, numbers, keys), never inside a code point.
            server: Emit a ``server_tool_use`` block instead of ``tool_use``.
            empty_delta: For empty input, emit one ``input_json_delta`` with
                ``partial_json: ""`` (like the API) rather than none.
        """
        kind = "server_tool_use" if server else "tool_use"
        block_id = tool_id or random_id(self.rng, "srvtoolu_01" if server else "toolu_01")
        text = raw_json if raw_json is not None else ("" if input_obj in (None, {}) else json_text(input_obj))
        pieces: list[str] = [] if text or not empty_delta else [""]
        pos = 0
        while pos < len(text):
            size = self.rng.randint(*piece_size)
            pieces.append(text[pos:pos + size])
            pos += size
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        block = {"type": kind, "id": block_id, "name": name, "input": {}}
        return self._block(block, deltas, {**block, "input": json.loads(text) if text else {}})

    def thinking_block(self, pieces: Sequence[str], signature: str) -> StreamBuilder:
        """Add a thinking block: one ``thinking_delta`` per piece, then a ``signature_delta``."""
        deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces]
        deltas.append({"type": "signature_delta", "signature": signature})
        expected = {"type": "thinking", "thinking": "".join(pieces), "signature": signature}
        return self._block({"type": "thinking", "thinking": "", "signature": ""}, deltas, expected)

    def redacted_thinking_block(self, data: str) -> StreamBuilder:
        """Add a ``redacted_thinking`` block (no deltas)."""
        block = {"type": "redacted_thinking", "data": data}
        return self._block(block, (), dict(block))

    def raw_block(self, block: dict[str, Any], deltas: Sequence[dict[str, Any]] = (),
                  *, expected: dict[str, Any] | None = None) -> StreamBuilder:
        """Add any block dict with arbitrary delta dicts (server tools, unknown types).

        Args:
            block: The ``content_block`` of ``content_block_start``.
            deltas: The ``delta`` of each ``content_block_delta``.
            expected: The block in the final message; defaults to ``block``.
        """
        return self._block(block, deltas, dict(block) if expected is None else expected)

    def raw_event(self, name: str | None, payload: dict[str, Any]) -> StreamBuilder:
        """Inject an arbitrary event at this point (``name=None``: no ``event:`` line)."""
        self._body.append((name, payload))
        return self

    def expected_content(self) -> list[dict[str, Any]]:
        """The content blocks a correct accumulator ends with (raw blocks: as given)."""
        return copy.deepcopy(self._expected)

    def _message_delta(self, stop_reason: str | None, stop_sequence: str | None, output_tokens: int | None,
                       usage: Mapping[str, Any] | None, delta_extra: Mapping[str, Any] | None) -> Event:
        if output_tokens is None:
            output_tokens = max(1, sum(name == "content_block_delta" for name, _ in self._body))
        return ("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence, **(delta_extra or {})},
            "usage": {"output_tokens": output_tokens, **(usage or {})}})

    def events(self, *, stop_reason: str | None = "end_turn", stop_sequence: str | None = None,
               output_tokens: int | None = None, message_delta_usage: Mapping[str, Any] | None = None,
               delta_extra: Mapping[str, Any] | None = None, end: bool = True) -> list[Event]:
        """Return the full event list (a fresh deep copy), pings included.

        Args:
            stop_reason: ``delta.stop_reason`` of ``message_delta``.
            stop_sequence: ``delta.stop_sequence``.
            output_tokens: ``usage.output_tokens`` (default: the number of content deltas).
            message_delta_usage: Extra usage keys (``input_tokens``, ``cache_*``, ``server_tool_use``...).
            delta_extra: Extra ``delta`` keys (``container``, ``stop_details``...).
            end: Whether to end with ``message_stop``.
        """
        body = [("message_start", {"type": "message_start", "message": self.message}), *self._body,
                self._message_delta(stop_reason, stop_sequence, output_tokens, message_delta_usage, delta_extra)]
        if end:
            body.append(("message_stop", {"type": "message_stop"}))
        out: list[Event] = []
        for i, ev in enumerate(body):
            out.append(ev)
            if self.pings and i % self.ping_every == 0 and i < len(body) - 1:
                out.append(("ping", dict(PING)))
        return copy.deepcopy(out)

    def expected_message(self, **end: Any) -> dict[str, Any]:
        """The final message for :meth:`events` called with the same keyword arguments.

        That is ``message_start``'s message with the expected content and the
        ``message_delta`` applied as the SDK applies it: stop fields set, ``container``
        when not null, ``output_tokens`` and the cumulative usage totals overwritten.
        """
        delta = next(p for name, p in self.events(**end) if name == "message_delta")
        changes, totals = delta["delta"], delta["usage"]
        message = copy.deepcopy(self.message)
        for key in ("stop_reason", "stop_sequence", "stop_details"):
            message[key] = copy.deepcopy(changes.get(key))
        if changes.get("container") is not None:
            message["container"] = copy.deepcopy(changes["container"])
        usage = message["usage"]
        usage["output_tokens"] = totals.get("output_tokens")
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                    "server_tool_use", "output_tokens_details"):
            if totals.get(key) is not None:
                usage[key] = copy.deepcopy(totals[key])
        return {**message, "content": self.expected_content()}

    def build(self, **end: Any) -> bytes:
        """Return the encoded body; takes the same keyword arguments as :meth:`events`."""
        return encode_events(self.events(**end))


def encode_events(events: Iterable[Event]) -> bytes:
    """Encode events as ``event: NAME\\ndata: {compact JSON}\\n\\n`` (pings: :data:`PING_DATA`)."""
    parts: list[bytes] = []
    for name, payload in events:
        if name is not None:
            parts.append(b"event: " + name.encode() + b"\n")
        data = PING_DATA if name == "ping" and payload == PING else msgspec.json.encode(payload)
        parts.append(b"data: " + data + b"\n\n")
    return b"".join(parts)
