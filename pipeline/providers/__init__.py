"""Wire formats of LLM providers: frames in, typed raw events of the core's vocabulary out.

``anthropic`` is the Messages API's SSE format; each provider is one module.

Rule: sans-IO; imports ``core`` and ``errors`` only, msgspec and jiter from outside; never
anyio, httpx or structlog (tests/test_layers.py).
"""

from __future__ import annotations

from .anthropic import AnthropicParser, decode_frame

__all__ = ["AnthropicParser", "decode_frame"]
