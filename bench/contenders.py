"""The contenders: our pipeline, the official SDK, and two decode-only floors.

Each contender consumes one stream given as its exact list of chunks and returns an
:class:`Outcome` (how many events it produced, and the final message if it builds one).

- ``ours``: ``pipeline.open_stream`` over an async generator yielding the chunks, with one
  sync subscriber whose ``on_event`` counts every derived event, then
  ``await stream.get_final_message()``.
- ``sdk``: ``AsyncAnthropic(...).messages.stream(...)`` against an ``httpx2`` mock transport
  whose body yields exactly the chunks; iterate every event, then ``get_final_message()``.
  One client per benchmark process (as an application would keep one). ``anthropic`` and
  ``httpx2`` are imported only when a client is made, so that processes measuring ``ours``
  alone do not carry the SDK's import heap.
- ``floor_decode``: SSE framing with ``rfind(b"\\n\\n")`` + ``split(b"\\n")`` and a
  ``msgspec.json`` decode of every data payload, in a plain sync loop. A lower bound, not a
  conforming parser.
- ``floor_decode_async``: the same, pulling the chunks from an async generator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Final

import msgspec

import pipeline

if TYPE_CHECKING:
    import httpx2

__all__ = [
    "CONTENDERS",
    "EventCounter",
    "Outcome",
    "Runner",
    "SdkClient",
    "aiter_chunks",
    "floor_decode",
    "floor_decode_async",
    "make_runners",
    "message_dict",
    "run_ours",
]

CONTENDERS: Final = ("ours", "sdk", "floor_decode", "floor_decode_async")
MODEL: Final = "claude-haiku-4-5"  # request model only (not in the SDK's deprecated list)


@dataclass
class Outcome:
    """What one contender produced from one stream.

    Attributes:
        events: Derived events seen (``ours``, ``sdk``) or data payloads decoded (floors).
        message: The final message object (``ours``, ``sdk``), else ``None``.
    """

    events: int
    message: Any = None


Runner = Callable[[Sequence[bytes]], Awaitable[Outcome]]


def message_dict(message: Any) -> dict[str, Any] | None:
    """``to_dict()`` of a final message of ours or the SDK's (``None`` for none)."""
    if message is None:
        return None
    if isinstance(message, pipeline.Message):
        return message.to_dict()
    out: dict[str, Any] = message.to_dict(warnings=False)
    return out


async def aiter_chunks(chunks: Sequence[bytes]) -> AsyncIterator[bytes]:
    """Yield each chunk, with no checkpoint in between (a fast network)."""
    for chunk in chunks:
        yield chunk


class EventCounter:
    """The sync subscriber of ``ours``: counts every derived event."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def on_event(self, event: object) -> None:
        self.n += 1


async def run_ours(chunks: Sequence[bytes]) -> Outcome:
    """The full pipeline, one counting subscriber, then the final message."""
    counter = EventCounter()
    async with pipeline.open_stream(aiter_chunks(chunks), subscribers=[counter]) as stream:
        message = await stream.get_final_message()
    return Outcome(counter.n, message)


@cache
def body_class() -> Callable[..., httpx2.AsyncByteStream]:
    """An ``httpx2.AsyncByteStream`` yielding a list of chunks, or what a source factory makes."""
    import httpx2

    class Body(httpx2.AsyncByteStream):
        def __init__(
            self, chunks: Sequence[bytes] = (), source: Callable[[], AsyncIterator[bytes]] | None = None
        ) -> None:
            self._chunks, self._source = chunks, source

        async def __aiter__(self) -> AsyncIterator[bytes]:
            if self._source is None:
                for chunk in self._chunks:
                    yield chunk
            else:
                async for chunk in self._source():
                    yield chunk

    return Body


class SdkClient:
    """One ``AsyncAnthropic`` on a mock transport; the response body is set per request.

    ``sources`` maps the ``x-bench-stream`` request header to a factory of the body's async
    iterator (used once); without the header, the body is :attr:`chunks`.
    """

    def __init__(self) -> None:
        import anthropic
        import httpx2

        self._body = body_class()
        self._response = httpx2.Response
        self.chunks: Sequence[bytes] = ()
        self.sources: dict[str, Callable[[], AsyncIterator[bytes]]] = {}
        self.client = anthropic.AsyncAnthropic(
            api_key="bench",
            http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(self._handle)),
            max_retries=0,
        )

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        key = request.headers.get("x-bench-stream")
        body = self._body(source=self.sources.pop(key)) if key is not None else self._body(self.chunks)
        return self._response(200, headers={"content-type": "text/event-stream"}, stream=body, request=request)

    def stream(self, key: str | None = None) -> Any:
        """``client.messages.stream(...)`` for one request (use with ``async with``)."""
        headers = {"x-bench-stream": key} if key is not None else None
        return self.client.messages.stream(
            model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": "hi"}], extra_headers=headers
        )

    async def run(self, chunks: Sequence[bytes]) -> Outcome:
        """Stream *chunks* through the SDK: every event, then the final message."""
        self.chunks = chunks
        n = 0
        async with self.stream() as stream:
            async for _ in stream:
                n += 1
            message = await stream.get_final_message()
        return Outcome(n, message)

    async def aclose(self) -> None:
        await self.client.close()


_decoder: Final = msgspec.json.Decoder()


def floor_decode(chunks: Sequence[bytes]) -> int:
    """Frame and decode every event, nothing else; returns the number of payloads."""
    decode = _decoder.decode
    buf = b""
    n = 0
    for chunk in chunks:
        buf += chunk
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            continue
        for line in buf[:cut].split(b"\n"):
            if line[:5] == b"data:":
                decode(line[5:])
                n += 1
        buf = buf[cut + 2 :]
    return n


async def floor_decode_async(source: AsyncIterator[bytes]) -> int:
    """:func:`floor_decode`, pulling the chunks from an async iterator."""
    decode = _decoder.decode
    buf = b""
    n = 0
    async for chunk in source:
        buf += chunk
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            continue
        for line in buf[:cut].split(b"\n"):
            if line[:5] == b"data:":
                decode(line[5:])
                n += 1
        buf = buf[cut + 2 :]
    return n


async def _floor(chunks: Sequence[bytes]) -> Outcome:
    return Outcome(floor_decode(chunks))


async def _floor_async(chunks: Sequence[bytes]) -> Outcome:
    return Outcome(await floor_decode_async(aiter_chunks(chunks)))


def make_runners(sdk: SdkClient | None) -> dict[str, Runner]:
    """The runner of every contender (``sdk`` only if a client is given)."""
    runners: dict[str, Runner] = {"ours": run_ours, "floor_decode": _floor, "floor_decode_async": _floor_async}
    if sdk is not None:
        runners["sdk"] = sdk.run
    return runners
