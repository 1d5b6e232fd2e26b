"""A thin Messages API client on ``httpx.AsyncClient`` that streams into a pipeline.

::

    async with pipeline.MessagesClient() as client:          # ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL
        async with client.stream(model="claude-sonnet-4-5", max_tokens=1024,
                                 messages=[{"role": "user", "content": "Hello"}]) as stream:
            async for text in stream.text_stream:
                print(text, end="")

Retries: connection errors and the answers 408, 409, 429, 5xx and 529 are retried with
exponential backoff and full jitter, honouring ``retry-after`` (the rules are in
:mod:`pipeline.client.retry`), but only **before** the body starts: once an event may
have reached a subscriber, nothing is retried. Errors are typed
(:class:`~pipeline.errors.APIError` subclasses with status, error type, message and
``request-id``; :class:`~pipeline.errors.APIConnectionError`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final, final

import anyio
import httpx
import msgspec
import structlog

from ..core.limits import Limits
from ..errors import APIConnectionError, APIError, APITimeoutError, api_error
from ..runtime.open import open_stream
from ..runtime.stream import MessageStream
from .retry import RetryPolicy, parse_retry_after, retryable_status

__all__ = ["DEFAULT_BASE_URL", "MessagesClient", "RetryPolicy"]

DEFAULT_BASE_URL: Final = "https://api.anthropic.com"
ANTHROPIC_VERSION: Final = "2023-06-01"
_log = structlog.get_logger("pipeline.client")


async def _error_from(response: httpx.Response) -> APIError:
    """Read an error answer and turn it into a typed error."""
    raw = await response.aread()
    request_id = response.headers.get("request-id")
    try:
        body: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        body = raw.decode("utf-8", "replace")
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        kind, message = error.get("type"), error.get("message")
    else:
        kind, message = None, None
    text = message if isinstance(message, str) else (body if isinstance(body, str) and body else response.reason_phrase)
    return api_error(
        kind if isinstance(kind, str) else None,
        text,
        status_code=response.status_code,
        request_id=request_id,
        body=body,
    )


_TIMEOUT: Final = httpx.Timeout(600.0, connect=10.0)
_RETRY: Final = RetryPolicy()


@final
class MessagesClient:
    """Sends streaming Messages requests and opens a :class:`MessageStream` on each.

    Args:
        api_key: The API key (default: ``ANTHROPIC_API_KEY``). Never logged.
        base_url: The API's base URL (default: ``ANTHROPIC_BASE_URL`` or the real API).
        timeout: An ``httpx.Timeout`` or seconds; the read timeout bounds the gap between
            two chunks of a stream.
        retry: When to retry a request before its body starts.
        http_client: An ``httpx.AsyncClient`` to use (not closed by us); by default the
            client makes and owns one.
        max_connections: The connection pool size of the client it makes: the most
            streams that can be open at once (keep-alive connections too). When unsure,
            match the concurrency you run at.
        anthropic_version: The ``anthropic-version`` header.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: httpx.Timeout | float = _TIMEOUT,
        retry: RetryPolicy = _RETRY,
        http_client: httpx.AsyncClient | None = None,
        max_connections: int = 100,
        anthropic_version: str = ANTHROPIC_VERSION,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise ValueError("no API key: pass api_key= or set ANTHROPIC_API_KEY")
        self._headers = {"x-api-key": key, "anthropic-version": anthropic_version, "accept": "text/event-stream"}
        self.base_url = (base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.retry = retry
        self._owns_client = http_client is None
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = http_client or httpx.AsyncClient(timeout=timeout, limits=limits)

    def __repr__(self) -> str:
        return f"MessagesClient(base_url={self.base_url!r})"  # never the key

    async def __aenter__(self) -> MessagesClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_client:
            await self._http.aclose()

    def stream(
        self,
        *,
        model: str,
        max_tokens: int,
        messages: Sequence[Mapping[str, Any]],
        subscribers: Sequence[object] = (),
        stages: Sequence[Any] = (),
        allow_incomplete: bool = False,
        idle_timeout: float | None = None,
        limits: Limits | None = None,
        extra_headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> _StreamRequest:
        """Return an async context manager that sends the request (retrying before the
        body starts) and yields the :class:`MessageStream` over its body.

        Other Messages API parameters (``system``, ``tools``, ``temperature``, ``thinking``,
        ...) go in ``**params``; *subscribers*, *stages*, *allow_incomplete*, *idle_timeout*
        and *limits* are those of :func:`~pipeline.open_stream`.
        """
        body = {"model": model, "max_tokens": max_tokens, "messages": list(messages), **params, "stream": True}
        headers = httpx.Headers(self._headers)
        headers.update(extra_headers or {})  # names are case-insensitive: X-Api-Key replaces x-api-key
        options = {
            "subscribers": subscribers,
            "stages": stages,
            "allow_incomplete": allow_incomplete,
            "idle_timeout": idle_timeout,
            "limits": limits,
        }
        return _StreamRequest(self, body, headers, options)

    async def send(self, body: Mapping[str, Any], headers: Mapping[str, str]) -> httpx.Response:
        """POST the request; return the streaming response once it answered 200.

        Cancellation: cancelling closes the connection of the attempt in flight.

        Raises:
            APIError: The API answered an error (after the retries it allows).
            APIConnectionError: The API could not be reached (after retries).
        """
        url = f"{self.base_url}/v1/messages"
        content = msgspec.json.encode(body)
        headers = {**headers, "content-type": "application/json"}
        for attempt in range(self.retry.max_retries + 1):
            last = attempt == self.retry.max_retries
            request = self._http.build_request("POST", url, content=content, headers=headers)
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TimeoutException as exc:
                if last:
                    raise APITimeoutError(f"request timed out: {exc!r}") from exc
                await self._backoff(attempt, None, repr(exc))
                continue
            except httpx.TransportError as exc:
                if last:
                    raise APIConnectionError(f"cannot reach {self.base_url}: {exc!r}") from exc
                await self._backoff(attempt, None, repr(exc))
                continue
            if response.status_code == 200:
                return response
            try:
                error = await _error_from(response)
            finally:
                await response.aclose()
            if last or not retryable_status(response.status_code):
                raise error
            await self._backoff(attempt, parse_retry_after(response.headers), str(error))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _backoff(self, attempt: int, retry_after: float | None, reason: str) -> None:
        delay = self.retry.delay(attempt, retry_after)
        _log.info("request_retry", attempt=attempt + 1, delay=round(delay, 3), reason=reason)
        await anyio.sleep(delay)


@final
class _StreamRequest:
    """``async with client.stream(...) as stream``: the request, then its stream."""

    __slots__ = ("_client", "_body", "_headers", "_options", "_stream")

    def __init__(
        self, client: MessagesClient, body: dict[str, Any], headers: Mapping[str, str], options: dict[str, Any]
    ) -> None:
        self._client = client
        self._body = body
        self._headers = headers
        self._options = options
        self._stream: MessageStream | None = None

    async def __aenter__(self) -> MessageStream:
        response = await self._client.send(self._body, self._headers)
        stream = open_stream(response, **self._options)
        try:
            await stream.__aenter__()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await response.aclose()
            raise
        self._stream = stream
        return stream

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._stream is not None
        return await self._stream.__aexit__(exc_type, exc, tb)
