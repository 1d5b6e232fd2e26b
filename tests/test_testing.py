"""Self-checks of ``pipeline.testing`` (generators, chunkers) and of the SDK oracle."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import msgspec
import pytest
from oracle import SdkResult, sdk_run, sdk_run_sync, sdk_run_threaded

import pipeline.testing as t

CHUNKERS: dict[str, Callable[[bytes], list[bytes]]] = {
    "whole": t.chunk_whole,
    "events": t.chunk_events,
    "bytes1": t.chunk_bytes,
    "bytes7": lambda d: t.chunk_bytes(d, 7),
    "random": lambda d: t.chunk_random(d, seed=3, max_size=64),
}
WORKLOADS: dict[str, tuple[t.StreamBuilder, dict[str, Any]]] = {
    "text": (t.text_builder(300, seed=1), {}),
    "tool": (t.tool_builder(3000, seed=1), {"stop_reason": "tool_use"}),
    "thinking": (t.thinking_builder(100, seed=1), {}),
    "citations": (t.citations_builder(40, seed=1), {}),
    "mixed": (t.mixed_builder(30, 800, seed=1), {"stop_reason": "tool_use"}),
}
EVENT_RE = re.compile(rb"(?:event: ([a-z_]+)\n)?data: (\{.*\})\n\n", re.S)


def _final_with_stop_details(final: dict[str, Any]) -> dict[str, Any]:
    # The SDK's accumulator always sets stop_details (None unless the API sends one), and
    # so does expected_message()
    assert final["stop_details"] is None
    return final


def _ok(result: SdkResult) -> dict[str, Any]:
    assert result.error is None, repr(result.error)
    assert result.final is not None
    return result.final


# --- generated bodies through the SDK oracle ---------------------------------------


@pytest.mark.parametrize("chunker", ["whole", "events", "bytes1", "random"])
@pytest.mark.parametrize("name", list(t.all_cases()))
async def test_all_cases_match_sdk(name: str, chunker: str) -> None:
    case = t.all_cases()[name]
    final = _ok(await sdk_run(CHUNKERS[chunker](case.body())))
    assert _final_with_stop_details(final) == case.expected_message()


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workloads_match_sdk(name: str) -> None:
    builder, end = WORKLOADS[name]
    body = builder.build(**end)
    final = _ok(sdk_run_sync(t.chunk_random(body, seed=5, max_size=200)))
    assert _final_with_stop_details(final) == builder.expected_message(**end)


def test_workload_contents() -> None:
    """The expected content itself is what each workload promises."""
    b = t.text_builder(50, seed=2)
    text = "".join(e[1]["delta"]["text"] for e in b.events() if e[0] == "content_block_delta")
    assert b.expected_content() == [{"type": "text", "text": text}]
    assert any(ord(c) > 0x7F for c in text) and '"' in text and "\n" in text
    tool = t.tool_builder(2000, seed=2).expected_content()[0]
    raw = "".join(e[1]["delta"]["partial_json"] for e in t.tool_builder(2000, seed=2).events()
                  if e[0] == "content_block_delta")
    assert tool["input"] == json.loads(raw) and tool["type"] == "tool_use" and tool["id"].startswith("toolu_01")
    assert 2000 <= len(raw.encode()) < 2600
    assert all(s in raw for s in ('\\"', "\\\\", "\\n", "\\u", "true", "false", "null", "[", "{", "é"))
    thinking, text_block = t.thinking_builder(20, seed=2).expected_content()
    assert thinking["type"] == "thinking" and thinking["signature"] and thinking["thinking"]
    assert text_block["type"] == "text"
    blocks = t.citations_builder(20, seed=2).expected_content()
    assert [1 <= len(b.get("citations", [])) <= 2 for b in blocks] == [i % 2 == 1 for i in range(20)]
    assert [b["type"] for b in t.mixed_builder(3, 100, seed=2).expected_content()] == ["text", "tool_use", "text"]


def test_tool_pieces_cut_anywhere() -> None:
    pieces = [e[1]["delta"]["partial_json"] for e in t.tool_builder(4000, seed=0).events()
              if e[0] == "content_block_delta"]
    assert all(1 <= len(p) <= 16 for p in pieces)
    assert any(p.endswith("\\") for p in pieces), "no cut right after a backslash"
    assert any(re.search(r"\\u[0-9a-fA-F]{0,3}$", p) for p in pieces), "no cut inside a \\u escape"
    assert any(ord(p[0]) > 0x7F for p in pieces if p), "no cut just before a non-ASCII character"


def test_empty_tool_input() -> None:
    deltas = [e[1]["delta"] for e in t.all_cases()["empty_tool_input"].builder.events()
              if e[0] == "content_block_delta"]
    assert deltas == [{"type": "input_json_delta", "partial_json": ""}]
    assert not [e for e in t.all_cases()["empty_tool_no_delta"].builder.events() if e[0] == "content_block_delta"]


# --- wire format ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(t.all_bodies()))
def test_wire_format(name: str) -> None:
    body = t.all_bodies()[name]
    events = t.chunk_events(body)
    names = []
    for raw in events:
        m = EVENT_RE.fullmatch(raw)
        assert m is not None, raw
        names.append(m.group(1).decode())
        if names[-1] == "ping":
            assert raw == b'event: ping\ndata: {"type": "ping"}\n\n'
        else:
            assert msgspec.json.encode(msgspec.json.decode(m.group(2))) == m.group(2)  # compact
    assert (names[1] == "ping") == (name != "no_pings")
    names = [n for n in names if n != "ping"]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]


def test_message_start_shape() -> None:
    events = t.StreamBuilder(seed=1, input_tokens=7).text_block(["x"]).events()
    assert events[0][1]["message"] == {
        "id": events[0][1]["message"]["id"], "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 7, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "output_tokens": 1}}
    assert re.fullmatch(r"msg_01[A-Za-z0-9]{22}", events[0][1]["message"]["id"])
    assert events[-2][1] == {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                             "usage": {"output_tokens": 1}}
    assert t.encode_events(events[:1]).startswith(b'event: message_start\ndata: {"type":"message_start","message":{')
    assert t.StreamBuilder().text_block(["x"]).events(end=False)[-1][0] == "message_delta"


def test_determinism() -> None:
    assert t.all_bodies(seed=4) == t.all_bodies(seed=4)
    for fn in (t.text_body, t.tool_body, t.thinking_body, t.citations_body, t.mixed_body):
        assert fn(seed=9) == fn(seed=9)
        assert fn(seed=9) != fn(seed=10)
    b = t.StreamBuilder(seed=3).tool_use_block({"a": [1, "é"]})
    assert b.build() == b.build() and b.events() == b.events()
    assert t.chunk_random(b.build(), seed=1) == t.chunk_random(b.build(), seed=1)


# --- chunkers --------------------------------------------------------------------


@pytest.mark.parametrize("chunker", list(CHUNKERS))
@pytest.mark.parametrize("name", list(t.all_bodies()))
def test_chunkers_reassemble(name: str, chunker: str) -> None:
    body = t.all_bodies()[name]
    chunks = CHUNKERS[chunker](body)
    assert b"".join(chunks) == body
    assert all(chunks)


def test_chunk_shapes() -> None:
    builder = t.all_cases()["mixed"].builder
    body = builder.build()
    by_event = t.chunk_events(body)
    assert len(by_event) == len(builder.events())
    assert all(c.endswith(b"\n\n") and c.count(b"\n\n") == 1 for c in by_event)
    assert t.chunk_events(body + b"event: ping")[-1] == b"event: ping"
    assert t.chunk_whole(body) == [body]
    assert all(len(c) == 1 for c in t.chunk_bytes(body))
    sizes = [len(c) for c in t.chunk_random(body, seed=1, max_size=5)]
    assert max(sizes) <= 5 and len(set(sizes)) > 1
    assert t.chunk_random(body, seed=1) != t.chunk_random(body, seed=2)


@pytest.mark.parametrize("checkpoint", [False, True])
async def test_aiter_chunks(checkpoint: bool) -> None:
    chunks = t.chunk_bytes(t.all_bodies()["text"], 11)
    assert [c async for c in t.aiter_chunks(chunks, checkpoint=checkpoint)] == chunks


# --- the oracle itself, and pinned SDK behaviour -----------------------------------


async def test_oracle_events_are_snapshots_and_threaded_runner_works() -> None:
    body = t.StreamBuilder(seed=1).text_block(["Hel", "lo"]).build()
    result = await sdk_run_threaded(t.chunk_events(body))
    types = [e["type"] for e in result.events]
    assert types == ["message_start", "content_block_start", "content_block_delta", "text",
                     "content_block_delta", "text", "content_block_stop", "message_delta", "message_stop"]
    assert result.events[1]["content_block"] == {"type": "text", "text": ""}
    assert [e["snapshot"] for e in result.events if e["type"] == "text"] == ["Hel", "Hello"]
    assert result.events[0]["message"]["usage"]["output_tokens"] == 1


def _sdk(builder: t.StreamBuilder, **end: Any) -> SdkResult:
    return sdk_run_sync(t.chunk_events(builder.build(**end)))


def test_sdk_keeps_unknown_fields_and_types() -> None:
    b = t.StreamBuilder(usage_extra={"mystery_usage": 5}, message_extra={"mystery_msg": 1})
    b.raw_block({"type": "text", "text": "", "mystery_field": 1}, [{"type": "text_delta", "text": "hi", "m": 2}])
    b.raw_block({"type": "mystery_block", "foo": 1}, [{"type": "mystery_delta", "bar": "x"},
                                                       {"type": "text_delta", "text": "ignored"}])
    b.raw_event("mystery_event", {"type": "mystery_event", "x": 1})
    result = _sdk(b, delta_extra={"mystery_delta_field": 1}, message_delta_usage={"mystery_u": 3})
    final = _ok(result)
    assert final["mystery_msg"] == 1 and final["usage"]["mystery_usage"] == 5
    assert final["content"] == [{"type": "text", "text": "hi", "mystery_field": 1}, {"type": "mystery_block", "foo": 1}]
    assert {"delta": {"type": "mystery_delta", "bar": "x"}, "index": 1, "type": "content_block_delta"} in result.events
    assert {"type": "mystery_event", "x": 1} in result.events
    delta = next(e for e in result.events if e["type"] == "message_delta")
    assert delta["delta"]["mystery_delta_field"] == 1 and delta["usage"]["mystery_u"] == 3
    assert "mystery_delta_field" not in final and "mystery_u" not in final["usage"]


def test_sdk_container_expires_at_is_datetime() -> None:
    container = {"id": "container_1", "expires_at": "2025-11-25T08:16:00Z"}
    final = _ok(_sdk(t.StreamBuilder().text_block(["a"]), delta_extra={"container": container}))
    assert final["container"]["expires_at"] == dt.datetime(2025, 11, 25, 8, 16, tzinfo=dt.UTC)
    assert isinstance(final["container"]["expires_at"], dt.datetime)


def test_sdk_dispatches_on_data_type_and_skips_nameless_events() -> None:
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}
    b = t.StreamBuilder().text_block(["a"]).raw_event(None, delta).raw_event("whatever", delta)
    assert _ok(_sdk(b))["content"] == [{"type": "text", "text": "a!"}]


def test_sdk_error_event() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    result = _sdk(t.StreamBuilder().text_block(["a"]).raw_event("error", error).text_block(["b"]))
    assert type(result.error) is anthropic.APIStatusError and result.final is None
    assert result.error.status_code == 200 and result.error.body == error
    assert result.error.type == "overloaded_error" and result.error.api_message == "Overloaded"
    assert result.error.message == str(error)
    assert [e["type"] for e in result.events][-1] == "content_block_stop"


def test_sdk_citations_key_only_when_cited() -> None:
    cite = t.citation("char_location", random.Random(0))
    b = t.StreamBuilder().text_block(["a"]).text_block(["b"], citations={0: [cite]})
    b.raw_block({"type": "text", "text": "", "citations": None}, [{"type": "text_delta", "text": "c"}])
    assert _ok(_sdk(b))["content"] == [
        {"type": "text", "text": "a"},  # never cited: no "citations" key at all
        {"type": "text", "text": "b", "citations": [cite]},
        {"type": "text", "text": "c", "citations": None},  # explicitly sent values are kept as sent
    ]


def test_oracle_preserves_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []
    original = httpx2.Response.aiter_bytes

    async def recording(self: httpx2.Response, chunk_size: int | None = None) -> Any:
        async for chunk in original(self, chunk_size):
            seen.append(chunk)
            yield chunk

    monkeypatch.setattr(httpx2.Response, "aiter_bytes", recording)
    chunks = t.chunk_random(t.all_bodies()["text"], seed=1, max_size=5)
    _ok(sdk_run_sync(chunks))
    assert seen == chunks
