"""The sans-IO core: SSE framing, the event vocabulary, lazy snapshot stores, the message
and its fold (``Accumulator``), the derived events (``Deriver``), limits, and the portable
JSON encoding of derived events.

Rule: imports only ``pipeline.errors`` from the package, and msgspec and jiter from outside;
never anyio, trio, httpx, h11, structlog or coredis. Everything here runs the same under
any event loop, or none (tests/test_layers.py checks it).
"""
