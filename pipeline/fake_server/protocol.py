"""The fake server's protocol side: scripts, requests, validation and generated bodies.

Pure data and functions (no sockets); :mod:`pipeline.fake_server` serves them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final, final

import h11

from ..testing import (
    StreamBuilder,
    chunk_bytes,
    citations_builder,
    mixed_builder,
    text_builder,
    thinking_builder,
    tool_builder,
)

__all__ = [
    "BodyPlan",
    "ERROR_EVENT",
    "ERROR_MESSAGES",
    "ERROR_TYPES",
    "FakeServerStatistics",
    "GARBAGE_DATA",
    "GARBAGE_LINES",
    "MAX_REQUEST_BYTES",
    "MESSAGES_PATH",
    "ReceivedRequest",
    "Script",
    "TRUNCATED_UTF8",
    "error_json",
    "generate_body",
    "last_user_text",
    "plan_body",
    "reason_phrase",
    "received_request",
    "split_events",
    "validate",
    "workload_for",
]

ERROR_EVENT: Final = (
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)
GARBAGE_LINES: Final = b"<html>502 Bad Gateway</html>\n\x00\xff\xfe not an SSE field\n\n"
"""Lines of no SSE field (a proxy's page, binary noise): the event-stream rules ignore them."""
GARBAGE_DATA: Final = b"event: content_block_delta\ndata: <html>502 Bad Gateway</html>\n\n"
"""An event whose data is not JSON."""
TRUNCATED_UTF8: Final = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"price: \xe2\x82"}}\n\n'
)
"""An event whose data holds a UTF-8 sequence cut short (the first two bytes of a euro sign)."""
MESSAGES_PATH: Final = "/v1/messages"
MAX_REQUEST_BYTES: Final = 32 * 1024 * 1024
_EVENT_END: Final = re.compile(rb"\r\n\r\n|\n\n|\r\r")
ERROR_TYPES: Final = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error",
}
ERROR_MESSAGES: Final = {
    "overloaded_error": "Overloaded", "rate_limit_error": "Rate limit exceeded",
    "api_error": "Internal server error", "not_found_error": "Not Found",
}
_WORKLOADS: Final[dict[str, tuple[Callable[[int], StreamBuilder], str]]] = {
    "tool": (lambda seed: tool_builder(1024, seed), "tool_use"),
    "thinking": (lambda seed: thinking_builder(100, seed), "end_turn"),
    "citations": (lambda seed: citations_builder(20, seed), "end_turn"),
    "mixed": (lambda seed: mixed_builder(30, 256, seed), "tool_use"),
    "text": (lambda seed: text_builder(200, seed), "end_turn"),
}
_KEYWORDS: Final = (("tool", "tool"), ("think", "thinking"), ("cite", "citations"), ("mix", "mixed"))


@dataclass(frozen=True)
class Script:
    """How to answer one (valid) request.

    Attributes:
        body: The SSE body; ``None`` generates one from the request (see :func:`generate_body`).
        status: Non-200: answer with the API's JSON error shape and no stream.
        error_type: The error type of that answer; by default derived from ``status``.
        retry_after: ``retry-after`` header (seconds) of an error answer.
        events_per_second: Pacing: one event per chunk, released on a drift-free schedule.
        chunk_size: Without pacing, cut the body into chunks of this many bytes.
        cut_after_events: Close the connection abruptly (no terminating chunk) after this
            many events.
        cut_mid_event: With ``cut_after_events``, also send the first half of the next event.
        error_event_after: After this many events send :data:`ERROR_EVENT` and end the body.
        drip_bytes: Without pacing, send this many bytes per chunk, ``drip_delay`` apart.
        drip_delay: Seconds between dripped chunks.
        request_id: The ``request-id`` header; a generated ``req_...`` id by default.
        inject: ``(n, data)``: send *data* after the first *n* events, then the rest of the
            body (see :data:`GARBAGE_LINES`, :data:`GARBAGE_DATA`, :data:`TRUNCATED_UTF8`).
        close_before_response: Read the request, then close the connection without
            answering.

    A negative event count counts from the end: ``cut_after_events=-1`` cuts the
    connection just before ``message_stop``.
    """

    body: bytes | None = None
    status: int = 200
    error_type: str | None = None
    retry_after: float | None = None
    events_per_second: float | None = None
    chunk_size: int | None = None
    cut_after_events: int | None = None
    cut_mid_event: bool = False
    error_event_after: int | None = None
    drip_bytes: int | None = None
    drip_delay: float = 0.001
    request_id: str | None = None
    inject: tuple[int, bytes] | None = None
    close_before_response: bool = False


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server received it.

    Attributes:
        method: The HTTP method, e.g. ``"POST"``.
        path: The target path without the query string.
        headers: Header names lower-cased; repeated headers joined with ``", "``.
        json: The decoded JSON body, or ``None`` when empty or not JSON.
        content: The raw body bytes.
        query: The query string (without ``?``), ``""`` if none.
    """

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    content: bytes = b""
    query: str = ""


@dataclass(frozen=True)
class FakeServerStatistics:
    """Counters of a :class:`FakeServer`.

    Attributes:
        requests: Requests received (valid or not).
        streams_started: 200 answers whose body started.
        streams_completed: Bodies that ended properly (an ``error_event_after`` body included).
        streams_cut: Bodies cut on purpose (``cut_after_events``).
        client_disconnects: Bodies the client abandoned by closing the connection early.
        errors_sent: JSON error answers plus mid-stream ``event: error`` events.
        connections: Connections accepted.
    """

    requests: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_cut: int = 0
    client_disconnects: int = 0
    errors_sent: int = 0
    connections: int = 0


# --- bodies ------------------------------------------------------------------------


def last_user_text(messages: Any) -> str:
    """The text of the last ``user`` message (string content or its top-level text blocks)."""
    for message in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        blocks = content if isinstance(content, list) else []
        return " ".join(b["text"] for b in blocks if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def workload_for(prompt: str) -> str:
    """``"tool"``, ``"thinking"``, ``"citations"``, ``"mixed"`` or ``"text"`` for a prompt."""
    lowered = prompt.lower()
    return next((name for word, name in _KEYWORDS if word in lowered), "text")


def generate_body(model: str, prompt: str, seed: int) -> bytes:
    """The body the server generates for a prompt; the message's ``model`` is *model*."""
    factory, stop_reason = _WORKLOADS[workload_for(prompt)]
    builder = factory(seed)
    builder.message["model"] = model
    return builder.build(stop_reason=stop_reason)


def split_events(body: bytes) -> list[bytes]:
    """Split a body after each blank line; the parts concatenate back to *body*."""
    parts, start = [], 0
    for match in _EVENT_END.finditer(body):
        parts.append(body[start:match.end()])
        start = match.end()
    if start < len(body):
        parts.append(body[start:])
    return parts


@final
@dataclass(frozen=True, slots=True)
class BodyPlan:
    """What to send for one stream: chunks, the interval between them, how it ends."""

    chunks: list[bytes]
    interval: float
    abrupt: bool
    error_event: bool


def plan_body(script: Script, body: bytes) -> BodyPlan:
    events, abrupt = split_events(body), False
    if script.inject is not None:
        at, data = script.inject
        events.insert(at if at >= 0 else len(events) + at, data)
    if script.error_event_after is not None:
        events = [*events[:script.error_event_after], ERROR_EVENT]
    if script.cut_after_events is not None:
        events, rest, abrupt = events[:script.cut_after_events], events[script.cut_after_events:], True
        if script.cut_mid_event and rest:
            events.append(rest[0][:max(1, len(rest[0]) // 2)])
    error_event = script.error_event_after is not None and ERROR_EVENT in events
    if script.events_per_second:
        return BodyPlan(events, 1.0 / script.events_per_second, abrupt, error_event)
    data = b"".join(events)
    if script.drip_bytes:
        return BodyPlan(chunk_bytes(data, script.drip_bytes), script.drip_delay, abrupt, error_event)
    if script.chunk_size:
        return BodyPlan(chunk_bytes(data, script.chunk_size), 0.0, abrupt, error_event)
    return BodyPlan(events, 0.0, abrupt, error_event)


# --- validation --------------------------------------------------------------------

_Problem = tuple[int, str, str]  # status, error type, message


def _check_route(request: ReceivedRequest, api_key: str | None) -> _Problem | None:
    if request.path != MESSAGES_PATH:
        return 404, "not_found_error", "Not Found"
    if request.method != "POST":
        return 405, "invalid_request_error", f"Method Not Allowed: {request.method} {MESSAGES_PATH}; use POST"
    key = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not key and not auth:
        return 401, "authentication_error", "x-api-key header is required"
    if api_key is not None and api_key not in (key, bearer):
        return 401, "authentication_error", "invalid x-api-key"
    if not request.headers.get("anthropic-version"):
        return 400, "invalid_request_error", "anthropic-version: header is required"
    return None


def _check_body(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "request body: Input should be a valid JSON object"
    if "model" not in body:
        return "model: Field required"
    if not isinstance(body["model"], str) or not body["model"]:
        return "model: Input should be a non-empty string"
    max_tokens = body.get("max_tokens")
    if "max_tokens" not in body:
        return "max_tokens: Field required"
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Input should be an integer greater than or equal to 1"
    if "messages" not in body:
        return "messages: Field required"
    if not isinstance(body["messages"], list) or not body["messages"]:
        return "messages: Input should be a non-empty list"
    if body.get("stream") is not True:
        return "stream: this fake server only streams; set stream: true"
    return None


def validate(request: ReceivedRequest, api_key: str | None) -> _Problem | None:
    problem = _check_route(request, api_key)
    if problem is None and request.json is None:
        problem = 400, "invalid_request_error", "request body: not valid JSON"
    if problem is None and (message := _check_body(request.json)) is not None:
        problem = 400, "invalid_request_error", message
    return problem


def received_request(event: h11.Request, content: bytes) -> ReceivedRequest:
    headers: dict[str, str] = {}
    for name, value in event.headers:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    path, _, query = event.target.decode("latin-1").partition("?")
    try:
        body = json.loads(content) if content else None
    except (ValueError, RecursionError):
        body = None
    return ReceivedRequest(event.method.decode("latin-1"), path, headers, body, content, query)


def reason_phrase(status: int) -> bytes:
    if status == 529:
        return b"Overloaded"
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def error_json(error_type: str, message: str, request_id: str) -> bytes:
    error = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}
    return json.dumps(error, separators=(",", ":")).encode()


