"""``FakeServer``: the loopback listener, its connections, and the scripts' playback."""

from __future__ import annotations

import collections
import contextlib
import random
import string
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Final, Literal, final

import anyio
import h11
from anyio.abc import SocketAttribute, SocketStream, TaskGroup, TaskStatus

from .protocol import (
    ERROR_MESSAGES,
    ERROR_TYPES,
    MAX_REQUEST_BYTES,
    BodyPlan,
    FakeServerStatistics,
    ReceivedRequest,
    Script,
    error_json,
    generate_body,
    last_user_text,
    plan_body,
    reason_phrase,
    received_request,
    validate,
)

__all__ = ["FakeServer"]

_WRITE_BATCH: Final = 16 * 1024  # unpaced chunks are coalesced into socket writes of about this size
_GONE: Final = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)



Counter = Literal[
    "requests", "streams_started", "streams_completed", "streams_cut", "client_disconnects", "errors_sent",
    "connections",
]  # fmt: skip
"""The name of a counter: a field of :class:`FakeServerStatistics`."""


# --- connections -------------------------------------------------------------------


@final
class _Connection:
    """One client connection: reads requests and answers them, keep-alive included."""

    __slots__ = ("_server", "_stream", "_h11", "_head")

    def __init__(self, server: FakeServer, stream: SocketStream) -> None:
        self._server = server
        self._stream = stream
        self._h11 = h11.Connection(h11.SERVER)
        self._head = False  # the current request is a HEAD: answers carry no body

    async def run(self) -> None:
        """Serve requests until either side closes the connection."""
        with contextlib.suppress(*_GONE):
            try:
                while (request := await self._read_request()) is not None:
                    keep = await self._server._answer(self, *request)
                    if not keep or self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
                        return
                    self._h11.start_next_cycle()
            except h11.RemoteProtocolError as exc:  # answer a malformed request, then close
                if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = exc.error_status_hint
                    error_type = ERROR_TYPES.get(status, "invalid_request_error")
                    await self.send_error(status, error_type, f"malformed request: {exc}", self._server._request_id())

    async def _read_request(self) -> tuple[h11.Request, bytes] | None:
        request: h11.Request | None = None
        content = bytearray()
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                await self._receive()
            elif isinstance(event, h11.Request):
                request, self._head = event, event.method == b"HEAD"
            elif isinstance(event, h11.Data):
                content += event.data
                if len(content) > MAX_REQUEST_BYTES:
                    raise h11.RemoteProtocolError("request body too large", 413)
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                return request, bytes(content)
            else:  # ConnectionClosed
                return None

    async def _receive(self) -> None:
        if self._h11.they_are_waiting_for_100_continue:
            await self._send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
        try:
            data = await self._stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            data = b""
        self._h11.receive_data(data)

    async def _send(self, event: h11.Event) -> None:
        data = self._h11.send(event)
        if data:
            await self._stream.send(data)

    async def send_error(
        self, status: int, error_type: str, message: str, request_id: str, retry_after: float | None = None
    ) -> None:
        """Answer with the API's JSON error shape."""
        body = error_json(error_type, message, request_id)
        headers = [("content-type", "application/json"), ("content-length", str(len(body))),
                   ("request-id", request_id)]
        if retry_after is not None:
            headers.append(("retry-after", f"{retry_after:g}"))
        if status == 405:
            headers.append(("allow", "POST"))
        events = [h11.Response(status_code=status, headers=headers, reason=reason_phrase(status)),
                  *([] if self._head else [h11.Data(data=body)]), h11.EndOfMessage()]
        await self._stream.send(b"".join(self._h11.send(event) or b"" for event in events))
        self._server.count("errors_sent")

    async def stream(self, plan: BodyPlan, request_id: str) -> bool:
        """Stream a body as planned; return whether the connection may serve another request."""
        self._server.count("streams_started")
        headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache"),
                   ("request-id", request_id), ("transfer-encoding", "chunked")]
        head = h11.Response(status_code=200, headers=headers, reason=b"OK")
        if not await self._send_watched(head, plan):
            self._server._client_disconnected()
            return False
        if plan.abrupt:  # no terminating chunk: the client sees an incomplete body
            await self._stream.aclose()
            return False
        return True

    async def _send_watched(self, head: h11.Response, plan: BodyPlan) -> bool:
        """Send the head and the body while watching for the client going away.

        Returns:
            Whether everything was written; ``False`` if the client went away first.
        """
        sent = False
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch, tg.cancel_scope)
            with contextlib.suppress(*_GONE):
                await self._send_chunks(head, plan)
                sent = True
                self._count_sent(plan)  # before any checkpoint: the client may have it all
            tg.cancel_scope.cancel()
        return sent

    async def _send_chunks(self, head: h11.Response, plan: BodyPlan) -> None:
        # Paced or dripped chunks are written one by one on a schedule (so that pacing does
        # not drift); otherwise they are coalesced into socket writes of about _WRITE_BATCH.
        # The terminating chunk goes out with the last chunk, so a complete body is one that
        # was written before the client could react to its last event.
        buffer = bytearray(self._h11.send(head) or b"")
        start, last = anyio.current_time(), len(plan.chunks) - 1
        for i, chunk in enumerate(plan.chunks):
            if plan.interval and i:
                await anyio.sleep(max(0.0, start + i * plan.interval - anyio.current_time()))
            buffer += self._h11.send(h11.Data(data=chunk)) or b""
            if (plan.interval or len(buffer) >= _WRITE_BATCH) and i < last:
                await self._stream.send(bytes(buffer))
                buffer.clear()
        if not plan.abrupt:
            buffer += self._h11.send(h11.EndOfMessage()) or b""
        await self._stream.send(bytes(buffer))

    def _count_sent(self, plan: BodyPlan) -> None:
        server = self._server
        server.count("errors_sent", int(plan.error_event))
        server.count("streams_cut" if plan.abrupt else "streams_completed")

    async def _watch(self, scope: anyio.CancelScope) -> None:
        # Bytes of a pipelined next request are kept by h11 for the next cycle.
        with contextlib.suppress(*_GONE):
            while True:
                self._h11.receive_data(await self._stream.receive())
        scope.cancel()


# --- the server --------------------------------------------------------------------


@final
class FakeServer:
    """A loopback fake of the streaming Messages API (``POST /v1/messages``).

    Args:
        scripts: A sequence is consumed one per valid request (the last one repeats); a
            callable is asked per valid request; ``None`` always answers ``Script()``.
        host: The interface to bind (loopback by default).
        port: The port (0: any free port).
        api_key: When set, requests must carry exactly this ``x-api-key`` (or
            ``authorization: Bearer KEY``); otherwise any non-empty key or auth header.
        seed: Generated bodies are seeded by ``seed`` plus the number of the valid request
            (0-based), so runs are deterministic.

        keep_requests: How many of the latest requests :attr:`requests` keeps (a long-running
            server must not keep them all).

    Attributes:
        requests: The latest requests received (valid or not), oldest first.
    """

    def __init__(
        self,
        scripts: Sequence[Script] | Callable[[ReceivedRequest], Script] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        seed: int = 0,
        keep_requests: int = 1_000,
    ) -> None:
        self._scripts = scripts if scripts is None or callable(scripts) else tuple(scripts)
        self._host, self._port, self._api_key, self._seed = host, port, api_key, seed
        self._ids = random.Random(seed)
        self._url: str | None = None
        self._tg: TaskGroup | None = None
        self._stats: collections.Counter[str] = collections.Counter()  # written by count() only
        self._scripted = 0
        self._changed: anyio.Event | None = None
        self.requests: deque[ReceivedRequest] = deque(maxlen=keep_requests)

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` once serving."""
        if self._url is None:
            raise RuntimeError("the server is not serving: use `async with FakeServer()` or serve()")
        return self._url

    @property
    def port(self) -> int:
        """The bound port once serving."""
        return int(self.url.rsplit(":", 1)[1])

    async def __aenter__(self) -> FakeServer:
        if self._tg is not None:
            raise RuntimeError("a FakeServer can be entered only once at a time")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(self.serve)
        except BaseException:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            raise
        self._tg = tg
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tg, self._tg = self._tg, None
        assert tg is not None
        tg.cancel_scope.cancel()
        await tg.__aexit__(None, None, None)  # the caller's own exception propagates as is

    async def serve(self, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until cancelled (for ``sse-pipeline serve-fake``).

        Args:
            task_status: Receives the URL, ``http://HOST:PORT``, once listening.

        Raises:
            OSError: The address could not be bound.
        """
        listener = await anyio.create_tcp_listener(local_host=self._host, local_port=self._port)
        async with listener, anyio.create_task_group() as tg:
            address = listener.extra(SocketAttribute.local_address)
            assert isinstance(address, tuple)
            host = f"[{address[0]}]" if ":" in address[0] else address[0]
            self._url = f"http://{host}:{address[1]}"
            task_status.started(self._url)
            await listener.serve(self._handle, task_group=tg)

    def count(self, counter: Counter, n: int = 1) -> None:
        """Add *n* to one of the counters that :meth:`statistics` reports."""
        self._stats[counter] += n

    def statistics(self) -> FakeServerStatistics:
        """A snapshot of the counters."""
        return FakeServerStatistics(**self._stats)

    async def wait_client_disconnect(self, n: int = 1) -> None:
        """Wait until at least *n* client disconnects mid-body were observed."""
        while self._stats["client_disconnects"] < n:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    # ------------------------------------------------------------------ internals

    def _client_disconnected(self) -> None:
        self.count("client_disconnects")
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    def _request_id(self, given: str | None = None) -> str:
        return given or "req_011" + "".join(self._ids.choices(string.ascii_letters + string.digits, k=21))

    async def _handle(self, stream: SocketStream) -> None:
        self.count("connections")
        async with stream:
            await _Connection(self, stream).run()

    def _next_script(self, request: ReceivedRequest) -> tuple[Script, int]:
        number, self._scripted = self._scripted, self._scripted + 1
        if self._scripts is None:
            return Script(), number
        if callable(self._scripts):
            return self._scripts(request), number
        return (self._scripts[min(number, len(self._scripts) - 1)] if self._scripts else Script()), number

    async def _answer(self, conn: _Connection, event: h11.Request, content: bytes) -> bool:
        request = received_request(event, content)
        self.requests.append(request)
        self.count("requests")
        problem = validate(request, self._api_key)
        if problem is not None:
            await conn.send_error(*problem, self._request_id())
            return True
        script, number = self._next_script(request)
        request_id = self._request_id(script.request_id)
        if script.close_before_response:
            return False  # the connection closes with no answer
        if script.status != 200:
            default = "api_error" if script.status >= 500 else "invalid_request_error"
            error_type = script.error_type or ERROR_TYPES.get(script.status, default)
            message = ERROR_MESSAGES.get(error_type, error_type.replace("_", " "))
            await conn.send_error(script.status, error_type, message, request_id, script.retry_after)
            return True
        body = script.body
        if body is None:
            prompt = last_user_text(request.json["messages"])
            body = generate_body(request.json["model"], prompt, self._seed + number)
        return await conn.stream(plan_body(script, body), request_id)
