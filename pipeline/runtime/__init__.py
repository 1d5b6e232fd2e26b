"""One stream, driven by its consumer, on anyio: ``MessageStream`` and ``open_stream``, the
task-per-island engine for async boundaries, the subscriber bus with its backpressure
policies, and the byte sources.

Rule: imports ``stages``, ``providers``, ``core`` and ``errors``; anyio and structlog from
outside, never httpx (an ``httpx.Response`` is duck-typed) (tests/test_layers.py).
"""
