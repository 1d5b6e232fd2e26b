"""An embedded fake Messages API server: real loopback sockets, HTTP/1.1, chunked SSE bodies.

For the demo, the tests and the benchmarks: no API key, no network. It speaks enough of
``POST /v1/messages`` (streaming only) to exercise a real client end to end::

    async with FakeServer([Script(status=529, retry_after=0), Script()]) as srv:
        ...  # POST srv.url + "/v1/messages": first a 529, then a generated stream

Each request is validated like the real API (path, method, key, ``anthropic-version``, body
fields); only valid requests consume a :class:`Script`. A script answers with an error, or
streams a body (given, or generated from the prompt) one SSE event per HTTP chunk, optionally
paced, re-chunked, dripped, cut abruptly or ended by an ``event: error``. While a body streams,
the server watches the socket, so a client that goes away is noticed at once and counted.

Rule: imports ``testing``, ``core`` and ``errors``; anyio and h11 from outside.
"""

from __future__ import annotations

from .protocol import (
    ERROR_EVENT,
    GARBAGE_DATA,
    GARBAGE_LINES,
    TRUNCATED_UTF8,
    FakeServerStatistics,
    ReceivedRequest,
    Script,
    generate_body,
    last_user_text,
    split_events,
    workload_for,
)
from .server import FakeServer

__all__ = [
    "ERROR_EVENT",
    "FakeServer",
    "FakeServerStatistics",
    "GARBAGE_DATA",
    "GARBAGE_LINES",
    "ReceivedRequest",
    "Script",
    "TRUNCATED_UTF8",
    "generate_body",
    "last_user_text",
    "split_events",
    "workload_for",
]
