"""The Messages client: request shape, retries before the body only, typed errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

import pipeline
from pipeline.client import RetryPolicy
from pipeline.testing import chunk_events, text_body
from tests.helpers import record_backoffs

BODY = text_body(n_deltas=30, seed=4)
FAST = RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.01)
MESSAGES = [{"role": "user", "content": "Hi"}]


async def body_chunks() -> AsyncIterator[bytes]:
    for chunk in chunk_events(BODY):
        yield chunk


def sse(headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream", **(headers or {})}, content=body_chunks())


def error(status: int, kind: str, message: str, **headers: str) -> httpx.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return httpx.Response(status, json=body, headers={"request-id": "req_123", **headers})


def client_for(answers: list[httpx.Response | Exception], seen: list[httpx.Request]) -> pipeline.MessagesClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return pipeline.MessagesClient(api_key="sk-test", base_url="http://api.test", http_client=http, retry=FAST)


async def test_request_shape_and_stream() -> None:
    seen: list[httpx.Request] = []
    async with client_for([sse({"request-id": "req_abc"})], seen) as client:
        async with client.stream(model="m", max_tokens=10, messages=MESSAGES, system="be brief") as stream:
            text = await stream.get_final_text()
    assert text
    assert stream.request_id == "req_abc"
    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", "http://api.test/v1/messages")
    assert request.headers["x-api-key"] == "sk-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert json.loads(request.content) == {
        "model": "m",
        "max_tokens": 10,
        "messages": MESSAGES,
        "system": "be brief",
        "stream": True,
    }


async def test_extra_headers_replace_the_clients_whatever_their_case() -> None:
    seen: list[httpx.Request] = []
    async with client_for([sse()], seen) as client:
        headers = {"X-Api-Key": "sk-other", "Anthropic-Beta": "b1"}
        async with client.stream(model="m", max_tokens=1, messages=MESSAGES, extra_headers=headers) as stream:
            await stream.until_done()
    (request,) = seen
    assert request.headers.get_list("x-api-key") == ["sk-other"]  # one value, not both joined
    assert request.headers["anthropic-beta"] == "b1" and request.headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize("status,kind", [(529, "overloaded_error"), (500, "api_error"), (429, "rate_limit_error")])
async def test_retryable_answers_are_retried(status: int, kind: str) -> None:
    seen: list[httpx.Request] = []
    async with client_for([error(status, kind, "busy"), sse()], seen) as client:
        async with client.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:
            message = await stream.get_final_message()
    assert len(seen) == 2
    assert message.stop_reason == "end_turn"


async def test_retry_after_is_honoured() -> None:
    delays: list[float] = []
    policy = RetryPolicy(max_retries=1, initial_delay=5.0, max_delay=0.05)
    assert policy.delay(0, 0.02) == 0.02
    assert policy.delay(0, 60.0) == 0.05  # capped
    assert 0 <= policy.delay(3, None) <= 0.05
    seen: list[httpx.Request] = []
    async with client_for(
        [error(429, "rate_limit_error", "slow down", **{"retry-after": "0.01"}), sse()], seen
    ) as client:
        client.retry = RetryPolicy(max_retries=1, initial_delay=5.0, max_delay=1.0)
        record_backoffs(client, delays)
        async with client.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:
            await stream.until_done()
    assert delays == [0.01]


async def test_bad_request_is_typed_and_not_retried() -> None:
    seen: list[httpx.Request] = []
    async with client_for([error(400, "invalid_request_error", "max_tokens: field required")], seen) as client:
        with pytest.raises(
            pipeline.errors.InvalidRequestError,
            match=r"^400 invalid_request_error: max_tokens: field required \(request-id req_123\)$",
        ) as info:
            async with client.stream(model="m", max_tokens=10, messages=MESSAGES):
                pass
    assert len(seen) == 1
    assert (info.value.status_code, info.value.request_id) == (400, "req_123")
    assert info.value.body["error"]["type"] == "invalid_request_error"


async def test_retries_run_out() -> None:
    seen: list[httpx.Request] = []
    answers: list[httpx.Response | Exception] = [error(529, "overloaded_error", "Overloaded") for _ in range(3)]
    async with client_for(answers, seen) as client:
        with pytest.raises(pipeline.OverloadedError) as info:
            async with client.stream(model="m", max_tokens=10, messages=MESSAGES):
                pass
    assert len(seen) == 3
    assert info.value.status_code == 529


async def test_connection_errors_are_retried_then_typed() -> None:
    seen: list[httpx.Request] = []
    answers: list[httpx.Response | Exception] = [httpx.ConnectError("refused")] * 3
    async with client_for(answers, seen) as client:
        with pytest.raises(pipeline.APIConnectionError, match=r"^cannot reach http://api.test: ") as info:
            async with client.stream(model="m", max_tokens=10, messages=MESSAGES):
                pass
    assert len(seen) == 3
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_error_event_mid_stream_is_not_retried() -> None:
    """Once events may have reached a subscriber, nothing is retried."""
    cut = BODY[: BODY.index(b"event: content_block_stop")]
    failing = (
        cut + b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )

    async def chunks() -> AsyncIterator[bytes]:
        yield failing

    seen: list[httpx.Request] = []
    answer = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=chunks())
    texts: list[str] = []
    async with client_for([answer, sse()], seen) as client:
        with pytest.raises(pipeline.OverloadedError, match=r"^overloaded_error: Overloaded$") as info:
            async with client.stream(model="m", max_tokens=10, messages=MESSAGES) as stream:
                stream.on_text(lambda event: texts.append(event.text))
                await stream.until_done()
    assert len(seen) == 1
    assert info.value.status_code is None
    partial = info.value.partial_message
    assert partial is not None and partial.text == "".join(texts) != ""


def test_api_key_is_required_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ValueError, match=r"^no API key: pass api_key= or set ANTHROPIC_API_KEY$"):
        pipeline.MessagesClient()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://example.test/")
    client = pipeline.MessagesClient()
    assert client.base_url == "http://example.test"
    assert "sk-secret" not in repr(client)


Handler = Callable[[httpx.Request], httpx.Response]
