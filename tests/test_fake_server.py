"""The embedded fake Messages API server, exercised over real loopback sockets with httpx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

import pipeline
from pipeline.fake_server import (
    ERROR_EVENT,
    FakeServer,
    ReceivedRequest,
    Script,
    generate_body,
    last_user_text,
    split_events,
    workload_for,
)
from pipeline.testing import chunk_bytes, text_body

# On trio, closing an httpx response before its end leaves httpcore's body async generators
# suspended, and trio warns when they are collected (encode/httpx#3686); nothing of ours leaks.
pytestmark = pytest.mark.filterwarnings("ignore:Async generator 'httpcore:ResourceWarning")

HEADERS = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}
BODY = text_body(n_deltas=40, seed=7)
EVENTS = split_events(BODY)


def request_json(prompt: str = "Hello", model: str = "claude-test", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": prompt}],
            "stream": True, **extra}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


async def fetch(client: httpx.AsyncClient, srv: FakeServer, **kwargs: Any) -> tuple[httpx.Response, bytes]:
    """POST a streaming request and collect the whole body."""
    async with client.stream("POST", srv.url + "/v1/messages", headers=HEADERS,
                             json=kwargs.pop("json", None) or request_json(**kwargs)) as response:
        return response, b"".join([chunk async for chunk in response.aiter_bytes()])


async def collect_until_error(response: httpx.Response, received: list[bytes]) -> None:
    async for chunk in response.aiter_bytes():
        received.append(chunk)


async def raw_chunks(srv: FakeServer) -> list[bytes]:
    """POST over a plain socket (``connection: close``) and return the body's HTTP chunks."""
    payload = json.dumps(request_json()).encode()
    head = (f"POST /v1/messages HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-api-key: k\r\n"
            f"anthropic-version: 1\r\ncontent-length: {len(payload)}\r\n\r\n")
    async with await anyio.connect_tcp("127.0.0.1", srv.port) as sock:
        await sock.send(head.encode() + payload)
        rest = b"".join([data async for data in sock]).split(b"\r\n\r\n", 1)[1]
    chunks = []
    while (size := int((parts := rest.split(b"\r\n", 1))[0], 16)) > 0:
        chunks.append(parts[1][:size])
        rest = parts[1][size + 2:]
    return chunks


def delta_text(body: bytes) -> str:
    """The concatenated text deltas of an encoded body."""
    text = ""
    for raw in split_events(body):
        fields = dict(line.split(": ", 1) for line in raw.decode().strip().split("\n"))
        if fields.get("event") == "content_block_delta":
            text += json.loads(fields["data"])["delta"].get("text", "")
    return text


# --- bodies ------------------------------------------------------------------------


def test_split_events_round_trips_and_workloads() -> None:
    body = b"event: a\ndata: 1\n\nevent: b\r\ndata: 2\r\n\r\ndata: tail"
    assert split_events(body) == [b"event: a\ndata: 1\n\n", b"event: b\r\ndata: 2\r\n\r\n", b"data: tail"]
    assert b"".join(split_events(BODY)) == BODY
    assert [workload_for(p) for p in ("Use a TOOL", "Think first", "Cite it", "Mix it", "hi")] == [
        "tool", "thinking", "citations", "mixed", "text"]
    messages = [{"role": "user", "content": "tool"}, {"role": "assistant", "content": "x"},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "tool"},
                                             {"type": "text", "text": "cite"}]}]
    assert last_user_text(messages) == "cite"


@pytest.mark.parametrize(
    ("prompt", "types", "stop_reason"),
    [
        ("Tell me a story", ["text"], "end_turn"),
        ("Please use a tool", ["tool_use"], "tool_use"),
        ("Think hard", ["thinking", "text"], "end_turn"),
        ("Cite your sources", ["text"] * 20, "end_turn"),
        ("Mix it up", ["text", "tool_use", "text"], "tool_use"),
    ],
)
async def test_generated_bodies_follow_the_prompt(
    client: httpx.AsyncClient, prompt: str, types: list[str], stop_reason: str
) -> None:
    async with FakeServer(seed=5) as srv:
        async with client.stream("POST", srv.url + "/v1/messages", headers=HEADERS,
                                 json=request_json(prompt, model="claude-xyz")) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["transfer-encoding"] == "chunked"
            assert response.headers["request-id"].startswith("req_")
            async with pipeline.open_stream(response) as stream:
                message = await stream.get_final_message()
        _, again = await fetch(client, srv, prompt=prompt, model="claude-xyz")
    assert message.model == "claude-xyz"
    assert [block.type for block in message.content] == types
    assert message.stop_reason == stop_reason
    if prompt.startswith("Cite"):
        assert any(block.citations for block in message.content)  # type: ignore[union-attr]
    assert again == generate_body("claude-xyz", prompt, seed=5 + 1)  # seeded by seed + request number
    assert srv.statistics().streams_completed == 2


# --- delivery ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [Script(body=BODY), Script(body=BODY, chunk_size=7), Script(body=BODY, drip_bytes=512, drip_delay=0.0005),
     Script(body=BODY, events_per_second=5000)],
    ids=["per-event", "chunk-size", "drip", "paced"],
)
async def test_bytes_received_equal_the_script_body(client: httpx.AsyncClient, script: Script) -> None:
    async with FakeServer([script]) as srv:
        response, data = await fetch(client, srv)
    assert response.status_code == 200
    assert data == BODY
    stats = srv.statistics()
    assert (stats.requests, stats.streams_started, stats.streams_completed, stats.client_disconnects) == (1, 1, 1, 0)


@pytest.mark.parametrize(
    ("script", "expected"),
    [(Script(body=BODY), EVENTS), (Script(body=BODY, events_per_second=5000), EVENTS),
     (Script(body=BODY, chunk_size=100), chunk_bytes(BODY, 100)),
     (Script(body=BODY, drip_bytes=300, drip_delay=0.0005), chunk_bytes(BODY, 300)),
     (Script(body=BODY, error_event_after=3), [*EVENTS[:3], ERROR_EVENT])],
    ids=["per-event", "paced", "chunk-size", "drip", "error-event"],
)
async def test_http_chunks(script: Script, expected: list[bytes]) -> None:
    async with FakeServer([script]) as srv:
        assert await raw_chunks(srv) == expected


async def test_paced_events_arrive_in_order(client: httpx.AsyncClient) -> None:
    async with FakeServer([Script(body=BODY, events_per_second=2000)]) as srv:
        async with client.stream("POST", srv.url + "/v1/messages", headers=HEADERS, json=request_json()) as resp:
            async with pipeline.open_stream(resp) as stream:
                seen = [event.type async for event in stream]
                message = await stream.get_final_message()
    assert seen[0] == "message_start" and seen[-1] == "message_stop"
    assert message.content[0].text == delta_text(BODY)  # type: ignore[union-attr]


@pytest.mark.parametrize("mid_event", [False, True], ids=["between-events", "mid-event"])
async def test_cut_connection_raises_remote_protocol_error(client: httpx.AsyncClient, mid_event: bool) -> None:
    received: list[bytes] = []
    async with FakeServer([Script(body=BODY, cut_after_events=6, cut_mid_event=mid_event)]) as srv:
        async with client.stream("POST", srv.url + "/v1/messages", headers=HEADERS, json=request_json()) as resp:
            with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
                await collect_until_error(resp, received)
        expected = b"".join(EVENTS[:6]) + (EVENTS[6][: len(EVENTS[6]) // 2] if mid_event else b"")
        assert b"".join(received) == expected
        async with client.stream("POST", srv.url + "/v1/messages", headers=HEADERS, json=request_json()) as resp:
            with pytest.raises(pipeline.SourceError) as info:
                async with pipeline.open_stream(resp) as stream:
                    await stream.get_final_message()
    assert isinstance(info.value.__cause__, httpx.RemoteProtocolError)
    stats = srv.statistics()
    assert (stats.streams_started, stats.streams_cut, stats.streams_completed) == (2, 2, 0)


async def test_error_event_mid_stream(client: httpx.AsyncClient) -> None:
    async with FakeServer([Script(body=BODY, error_event_after=12)]) as srv:
        response, data = await fetch(client, srv)
        assert data == b"".join(EVENTS[:12]) + ERROR_EVENT
        async with client.stream("POST", srv.url + "/v1/messages", headers=HEADERS, json=request_json()) as resp:
            with pytest.raises(pipeline.OverloadedError) as info:
                async with pipeline.open_stream(resp) as stream:
                    await stream.get_final_message()
    partial = info.value.partial_message
    assert partial is not None
    text = delta_text(b"".join(EVENTS[:12]))
    assert text and partial.content[0].text == text  # type: ignore[union-attr]
    assert srv.statistics().errors_sent == 2 and srv.statistics().streams_completed == 2


# --- error answers and validation ---------------------------------------------------


@pytest.mark.parametrize(
    ("script", "error_type", "retry_after"),
    [(Script(status=529), "overloaded_error", None),
     (Script(status=429, retry_after=2), "rate_limit_error", "2"),
     (Script(status=500, retry_after=0.25, request_id="req_custom"), "api_error", "0.25"),
     (Script(status=503, error_type="overloaded_error"), "overloaded_error", None)],
)
async def test_scripted_error_answers(
    client: httpx.AsyncClient, script: Script, error_type: str, retry_after: str | None
) -> None:
    async with FakeServer([script, Script(body=BODY)]) as srv:
        response = await client.post(srv.url + "/v1/messages", headers=HEADERS, json=request_json())
        _, data = await fetch(client, srv)  # the next script answers the next request
    assert response.status_code == script.status
    assert response.headers["content-type"] == "application/json"
    assert response.headers.get("retry-after") == retry_after
    request_id = response.headers["request-id"]
    assert request_id == script.request_id if script.request_id else request_id.startswith("req_")
    answer = response.json()
    assert answer == {"type": "error", "error": {"type": error_type, "message": answer["error"]["message"]},
                      "request_id": request_id}
    assert data == BODY
    assert srv.statistics().errors_sent == 1


GOOD = request_json()


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "error_type", "message"),
    [
        ("POST", "/v1/complete", HEADERS, GOOD, 404, "not_found_error", "Not Found"),
        ("GET", "/v1/messages", HEADERS, None, 405, "invalid_request_error", "Method Not Allowed"),
        ("POST", "/v1/messages", {"anthropic-version": "2023-06-01"}, GOOD, 401, "authentication_error",
         "x-api-key header is required"),
        ("POST", "/v1/messages", {"x-api-key": "k"}, GOOD, 400, "invalid_request_error", "anthropic-version"),
        ("POST", "/v1/messages", HEADERS, b"{not json", 400, "invalid_request_error", "not valid JSON"),
        ("POST", "/v1/messages", HEADERS, {**GOOD, "model": None}, 400, "invalid_request_error", "model"),
        ("POST", "/v1/messages", HEADERS, {k: v for k, v in GOOD.items() if k != "model"}, 400,
         "invalid_request_error", "model: Field required"),
        ("POST", "/v1/messages", HEADERS, {**GOOD, "max_tokens": 0}, 400, "invalid_request_error", "max_tokens"),
        ("POST", "/v1/messages", HEADERS, {**GOOD, "max_tokens": "9"}, 400, "invalid_request_error", "max_tokens"),
        ("POST", "/v1/messages", HEADERS, {**GOOD, "messages": []}, 400, "invalid_request_error", "messages"),
        ("POST", "/v1/messages", HEADERS, {k: v for k, v in GOOD.items() if k != "messages"}, 400,
         "invalid_request_error", "messages: Field required"),
        ("POST", "/v1/messages", HEADERS, {**GOOD, "stream": False}, 400, "invalid_request_error",
         "this fake server only streams; set stream: true"),
    ],
    ids=["path", "method", "no-key", "no-version", "not-json", "model-type", "no-model", "max-tokens-0",
         "max-tokens-str", "messages-empty", "no-messages", "no-stream"],
)
async def test_validation_errors(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], body: Any,
    status: int, error_type: str, message: str
) -> None:
    content = body if isinstance(body, bytes) else None
    async with FakeServer([Script(status=529)]) as srv:  # a valid request would get a 529
        response = await client.request(method, srv.url + path, headers=headers, content=content,
                                        json=None if content is not None else body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["type"] == "error" and answer["error"]["type"] == error_type
    assert message in answer["error"]["message"]
    assert answer["request_id"] == response.headers["request-id"]
    assert srv.statistics().streams_started == 0


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"x-api-key": "sk-right"}, 200), ({"authorization": "Bearer sk-right"}, 200),
     ({"x-api-key": "sk-wrong"}, 401), ({"authorization": "Bearer sk-wrong"}, 401)],
)
async def test_api_key(client: httpx.AsyncClient, headers: dict[str, str], status: int) -> None:
    async with FakeServer([Script(body=BODY)], api_key="sk-right") as srv:
        async with client.stream("POST", srv.url + "/v1/messages", json=request_json(),
                                 headers={**headers, "anthropic-version": "2023-06-01"}) as response:
            await response.aread()
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}


async def test_malformed_http_gets_a_400() -> None:
    async with FakeServer() as srv, await anyio.connect_tcp("127.0.0.1", srv.port) as sock:
        await sock.send(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        with anyio.fail_after(2):
            async for chunk in sock:
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ") and b'"invalid_request_error"' in answer


async def test_head_gets_a_bodiless_405(client: httpx.AsyncClient) -> None:
    async with FakeServer([Script(body=BODY)]) as srv:
        response = await client.head(srv.url + "/v1/messages", headers=HEADERS)
        _, data = await fetch(client, srv)  # the connection is still usable
    assert (response.status_code, response.headers["allow"], response.content, data) == (405, "POST", b"", BODY)
    assert srv.statistics().connections == 1


# --- connections -------------------------------------------------------------------


@pytest.mark.parametrize("via_pipeline", [False, True], ids=["response-closed", "stream-left-early"])
async def test_client_closing_mid_stream_is_a_disconnect(client: httpx.AsyncClient, via_pipeline: bool) -> None:
    async with FakeServer([Script(body=text_body(2000, seed=1), events_per_second=500)]) as srv:
        async with client.stream("POST", srv.url + "/v1/messages", headers=HEADERS, json=request_json()) as resp:
            if via_pipeline:
                async with pipeline.open_stream(resp) as stream:
                    async for event in stream:
                        if event.type == "text":
                            break
            else:
                async for _ in resp.aiter_bytes():
                    break
        with anyio.fail_after(2):
            await srv.wait_client_disconnect()
        stats = srv.statistics()
    assert (stats.client_disconnects, stats.streams_completed, stats.streams_started) == (1, 0, 1)


async def test_keep_alive_and_recorded_requests(client: httpx.AsyncClient) -> None:
    async with FakeServer([Script(body=BODY), Script(body=EVENTS[0])]) as srv:
        first, data1 = await fetch(client, srv, prompt="one")
        second, data2 = await fetch(client, srv, prompt="two")
        third, data3 = await fetch(client, srv, prompt="three")  # the last script repeats
    assert (data1, data2, data3) == (BODY, EVENTS[0], EVENTS[0])
    assert srv.statistics().connections == 1
    assert first.headers["request-id"] != second.headers["request-id"]
    request = srv.requests[1]
    assert (request.method, request.path, request.query) == ("POST", "/v1/messages", "")
    assert request.headers["x-api-key"] == "test-key" and request.headers["anthropic-version"] == "2023-06-01"
    assert request.json == request_json("two")
    assert len(srv.requests) == srv.statistics().requests == 3


async def test_callable_scripts_see_the_request(client: httpx.AsyncClient) -> None:
    seen: list[ReceivedRequest] = []

    def script(request: ReceivedRequest) -> Script:
        seen.append(request)
        return Script(status=529) if len(seen) == 1 else Script(body=BODY)

    async with FakeServer(script) as srv:
        response = await client.post(srv.url + "/v1/messages?beta=true", headers=HEADERS, json=request_json())
        _, data = await fetch(client, srv)
    assert response.status_code == 529 and data == BODY
    assert [r.query for r in seen] == ["beta=true", ""]


async def test_exit_closes_open_connections_and_leaves_no_task(client: httpx.AsyncClient) -> None:
    before = {task.id for task in anyio.get_running_tasks()}
    srv = FakeServer([Script(body=BODY, events_per_second=50)])
    async with srv:
        with pytest.raises(RuntimeError, match="entered only once"):
            await srv.__aenter__()
        request = client.build_request("POST", srv.url + "/v1/messages", headers=HEADERS, json=request_json())
        response = await client.send(request, stream=True)
        chunks = response.aiter_bytes()
        assert (await chunks.__anext__()).startswith(b"event: message_start")
        idle = await anyio.connect_tcp("127.0.0.1", srv.port)  # an idle keep-alive connection
    try:
        with anyio.fail_after(2), pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            async for _ in chunks:
                pass
        with anyio.fail_after(2), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await idle.receive()
    finally:
        await response.aclose()
        await idle.aclose()
    assert {task.id for task in anyio.get_running_tasks()} == before


async def test_serve_reports_its_url(client: httpx.AsyncClient) -> None:
    srv = FakeServer([Script(body=BODY)])
    async with anyio.create_task_group() as tg:
        url = await tg.start(srv.serve)
        assert url == srv.url and url.startswith("http://127.0.0.1:")
        _, data = await fetch(client, srv)
        tg.cancel_scope.cancel()
    assert data == BODY
