"""The HTTP client of the Messages API (``MessagesClient``) and its retry rules.

Rule: imports ``runtime``, ``core`` and ``errors``; httpx, anyio and structlog from outside
(tests/test_layers.py).
"""

from __future__ import annotations

from .messages import DEFAULT_BASE_URL, MessagesClient
from .retry import RetryPolicy

__all__ = ["DEFAULT_BASE_URL", "MessagesClient", "RetryPolicy"]
