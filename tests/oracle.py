"""Test oracle: run the official ``anthropic`` SDK on exactly the given bytes.

The SDK is driven through ``AsyncAnthropic.messages.stream`` against a mock
``httpx2`` transport whose response body yields exactly the given chunks, one
by one, so chunk boundaries are preserved all the way into the SDK's SSE
decoder.  The SDK (2.13) uses ``httpx2`` (a fork of httpx), not ``httpx``:
passing ``httpx`` objects is rejected by ``_reject_httpx_object``.

``sdk_run`` works under both asyncio and trio (the SDK only touches
``asyncio`` directly in the ``__del__`` of its *default* HTTP client wrapper,
which is not used here).  ``sdk_run_sync`` runs the oracle in a fresh asyncio
loop and can be called from any test, sync or async, on any backend, as long
as no asyncio loop is running in the calling thread.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anthropic
import anyio.to_thread
import httpx2

__all__ = ["SdkResult", "sdk_run", "sdk_run_sync", "sdk_run_threaded"]

MODEL = "claude-haiku-4-5"  # request model only; must not be in the SDK's DEPRECATED_MODELS (warns)


@dataclass
class SdkResult:
    """What the SDK produced for one body.

    Attributes:
        events: Every event yielded by ``AsyncMessageStream``, each converted
            with ``copy.deepcopy(event.to_dict(warnings=False))`` at the moment
            it is yielded (the SDK mutates its snapshot objects afterwards).
            ``warnings=False`` silences pydantic's serializer warnings for
            unknown block/delta types, which ``filterwarnings = error`` would
            otherwise turn into failures.
        final: ``(await stream.get_final_message()).to_dict(warnings=False)``,
            or ``None`` if iterating or finalising raised.
        error: The exception raised while streaming, if any.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    error: BaseException | None = None


class _ChunkStream(httpx2.AsyncByteStream):
    """A response body that yields exactly the given chunks."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = list(chunks)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def _make_client(chunks: Sequence[bytes]) -> anthropic.AsyncAnthropic:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST" or request.url.path != "/v1/messages":
            return httpx2.Response(404, json={"type": "error"})
        return httpx2.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=_ChunkStream(chunks),
            request=request,
        )

    http_client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return anthropic.AsyncAnthropic(api_key="test", http_client=http_client, max_retries=0)


async def sdk_run(chunks: Sequence[bytes]) -> SdkResult:
    """Stream ``chunks`` through the official SDK and record what it yields.

    Args:
        chunks: The response body, chunked exactly as the transport delivers it.

    Returns:
        The recorded events, the final message (or ``None``) and any error.
    """
    result = SdkResult()
    client = _make_client(chunks)
    try:
        async with client.messages.stream(
            model=MODEL,
            max_tokens=1024,
            messages=[{"role": "user", "content": "hi"}],
        ) as stream:
            try:
                async for event in stream:
                    result.events.append(copy.deepcopy(event.to_dict(warnings=False)))
                final = await stream.get_final_message()
                result.final = copy.deepcopy(final.to_dict(warnings=False))
            except Exception as exc:  # recorded, not raised: the oracle reports
                result.error = exc
    finally:
        await client.close()
    return result


def sdk_run_sync(chunks: Sequence[bytes]) -> SdkResult:
    """Run :func:`sdk_run` with ``asyncio.run`` in a fresh event loop.

    Must not be called from a thread with a running asyncio loop; from an
    asyncio test, use ``await sdk_run(...)`` or :func:`sdk_run_threaded`.
    """
    return asyncio.run(sdk_run(chunks))


async def sdk_run_threaded(chunks: Sequence[bytes]) -> SdkResult:
    """Run :func:`sdk_run_sync` in a worker thread; callable on any backend."""
    return await anyio.to_thread.run_sync(sdk_run_sync, list(chunks))
