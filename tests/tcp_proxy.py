"""A loopback TCP proxy the test controls: ``pause()`` holds every byte in both directions
(a stalled link, or a frozen peer as the server sees it) until ``resume()``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import SocketStream

_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


class PausableProxy:
    """Forwards connections from :attr:`port` to ``host:upstream_port``."""

    def __init__(self, host: str, upstream_port: int) -> None:
        self.host, self.upstream_port = host, upstream_port
        self.port = 0
        self._open = anyio.Event()
        self._open.set()

    def pause(self) -> None:
        """Hold every byte from now on (what is in flight is held too)."""
        if self._open.is_set():
            self._open = anyio.Event()

    def resume(self) -> None:
        """Forward what was held, and everything after it."""
        self._open.set()

    async def _pump(self, source: SocketStream, sink: SocketStream) -> None:
        with contextlib.suppress(*_GONE):
            while True:
                data = await source.receive()
                await self._open.wait()
                await sink.send(data)
        with contextlib.suppress(*_GONE):
            await sink.send_eof()

    async def _handle(self, client: SocketStream) -> None:
        async with client, await anyio.connect_tcp(self.host, self.upstream_port) as upstream:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump, client, upstream)
                tg.start_soon(self._pump, upstream, client)


@asynccontextmanager
async def pausable_proxy(host: str, upstream_port: int) -> AsyncIterator[PausableProxy]:
    """Run a :class:`PausableProxy` for the block; its connections end with it."""
    proxy = PausableProxy(host, upstream_port)
    listener = await anyio.create_tcp_listener(local_host=host, local_port=0)
    proxy.port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy._handle)
        try:
            yield proxy
        finally:
            proxy.resume()
            tg.cancel_scope.cancel()
