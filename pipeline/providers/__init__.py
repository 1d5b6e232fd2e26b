"""Wire formats of LLM providers: frames in, typed raw events out (sans-IO)."""

from __future__ import annotations

from .anthropic import AnthropicParser, decode_frame

__all__ = ["AnthropicParser", "decode_frame"]
