"""The structlog event logger and the ``redact_secrets`` processor."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

import pipeline
from pipeline.testing import StreamBuilder, aiter_chunks, chunk_random
from plugins.logger import DEFAULT_KINDS, KINDS, REDACTED, EventLogger, redact_secrets


def builder() -> StreamBuilder:
    return (
        StreamBuilder(seed=1, model="claude-test", message_id="msg_1", input_tokens=12)
        .text_block(["secret ", "plans"])
        .tool_use_block({"city": "Paris"}, name="get_weather", tool_id="toolu_1")
        .thinking_block(["hmm"], "c2ln")
    )


async def run(body: bytes, logger: EventLogger, **options: Any) -> None:
    async with pipeline.open_stream(aiter_chunks(chunk_random(body, seed=3)), subscribers=[logger], **options) as s:
        await s.until_done()


async def test_default_lines_carry_the_bound_context_and_no_content() -> None:
    usage = {"cache_creation_input_tokens": 3, "cache_read_input_tokens": 4}
    body = builder().build(stop_reason="tool_use", output_tokens=9, message_delta_usage=usage)
    with capture_logs() as logs:
        await run(body, EventLogger(stream="s1"))

    assert [(e["event"], e.get("index")) for e in logs] == [
        ("content_block_start", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_stop", 2),
        ("message_stop", None),
    ]
    assert all(e["stream"] == "s1" and e["log_level"] == "info" for e in logs)
    assert logs[1] == {
        "event": "content_block_stop",
        "index": 0,
        "block_type": "text",
        "chars": 12,
        "citations": 0,
        "stream": "s1",
        "log_level": "info",
    }
    assert logs[2]["tool_name"] == logs[3]["tool_name"] == "get_weather"
    assert logs[3]["tool_use_id"] == "toolu_1"
    assert logs[-1] == {
        "event": "message_stop",
        "message_id": "msg_1",
        "model": "claude-test",
        "stop_reason": "tool_use",
        "input_tokens": 12,
        "output_tokens": 9,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 4,
        "stream": "s1",
        "log_level": "info",
    }
    rendered = repr(logs)
    assert "secret" not in rendered and "Paris" not in rendered and "hmm" not in rendered


async def test_deltas_at_debug_and_other_kinds() -> None:
    body = builder().build()
    wire_deltas = body.count(b"event: content_block_delta\n")
    logger = EventLogger(kinds={"message_start", "message_delta", "end"}, deltas=True, level="debug")
    with capture_logs() as logs:
        await run(body, logger)

    names = [e["event"] for e in logs]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "stream_end"]
    assert names.count("content_block_delta") == wire_deltas
    assert all(e["log_level"] == "debug" for e in logs)
    assert logs[0] == {
        "event": "message_start",
        "message_id": "msg_1",
        "model": "claude-test",
        "input_tokens": 12,
        "log_level": "debug",
    }
    deltas = [e for e in logs if e["event"] == "content_block_delta"]
    assert deltas[0] == {
        "event": "content_block_delta",
        "index": 0,
        "delta_type": "text_delta",
        "size": 7,
        "log_level": "debug",
    }
    assert {e["delta_type"] for e in deltas} == {"text_delta", "input_json_delta", "thinking_delta", "signature_delta"}


async def test_a_failed_stream_is_logged_as_an_error() -> None:
    body = builder().build(end=False)
    with capture_logs() as logs:
        with pytest.raises(pipeline.IncompleteStreamError):
            await run(body, EventLogger())
    errors = [e for e in logs if e["log_level"] == "error"]
    assert errors == [
        {
            "event": "stream_error",
            "error_type": "IncompleteStreamError",
            "error": errors[0]["error"],
            "message_id": "msg_1",
            "log_level": "error",
        }
    ]
    assert "message_stop" not in [e["event"] for e in logs]


async def test_a_given_logger_is_used_with_the_context() -> None:
    with capture_logs() as logs:
        base = structlog.get_logger("mine").bind(service="api")
        await run(builder().build(), EventLogger(base, kinds={"message_stop"}, request="r1"))
    assert len(logs) == 1
    assert logs[0]["service"] == "api" and logs[0]["request"] == "r1"


def test_bad_options_are_rejected() -> None:
    assert DEFAULT_KINDS <= KINDS
    with pytest.raises(ValueError, match="unknown kinds"):
        EventLogger(kinds={"text"})
    with pytest.raises(ValueError, match="level"):
        EventLogger(level="error")


def test_redact_secrets_masks_secret_keys_at_any_depth() -> None:
    nested = {"model": "m", "tags": ["a", "b"]}
    event = {
        "event": "request",
        "x-api-key": "sk-ant-api03-abcdefghijkl",
        "Authorization": "Bearer token",
        "API_KEY": "k",
        "api-key": "k",
        "headers": {"X-Api-Key": "k", "content-type": "application/json", "auth": [{"authorization": "b"}]},
        "body": nested,
        "note": "sent with sk-ant-api03-abcdefghijkl by mistake",
        "count": 3,
    }
    out = redact_secrets(None, "info", event)
    assert out is event
    assert out["x-api-key"] == out["Authorization"] == out["API_KEY"] == out["api-key"] == REDACTED
    assert out["headers"] == {
        "X-Api-Key": REDACTED,
        "content-type": "application/json",
        "auth": [{"authorization": REDACTED}],
    }
    assert out["body"] is nested  # nothing to mask: not copied
    assert out["note"] == f"sent with {REDACTED} by mistake"
    assert out["count"] == 3
    assert "abcdefghijkl" not in repr(out)


def test_redact_secrets_in_a_processor_chain() -> None:
    headers = httpx.Headers({"x-api-key": "sk-ant-api03-zzzzzzzzzzzz", "accept": "text/event-stream"})
    with capture_logs(processors=[redact_secrets]) as logs:
        structlog.get_logger("t").info("request", headers=headers, key=("a", "sk-ant-api03-yyyyyyyyyyyy"))
    assert logs[0]["headers"] == {"x-api-key": REDACTED, "accept": "text/event-stream"}
    assert logs[0]["key"] == ("a", REDACTED)


async def test_the_bound_context_is_redacted() -> None:
    with capture_logs() as logs:
        await run(builder().build(), EventLogger(kinds={"message_stop"}, api_key="sk-ant-api03-xxxxxxxxxxxx"))
    assert logs[0]["api_key"] == REDACTED
