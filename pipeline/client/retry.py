"""The retry rules: what may be tried again, and how long to wait first.

The one home of the rules the client, the worker and the Redis fleet share:

* :func:`retryable_status`: the HTTP answers worth another request: 408, 409, 429, and
  every 5xx (529, overloaded, included).
* :func:`parse_retry_after`: the wait the server asked for (``retry-after-ms``, else
  ``retry-after``, in seconds).
* :func:`backoff`: the one backoff formula, exponential with full jitter, capped.
* :class:`RetryPolicy`: how often and how long a client (or a worker) retries.
* :func:`transient`: whether running a whole job again may succeed (worker and fleet).

How a transport fails stays with the transport: ``messages.py`` retries httpx's connection
errors, ``redis_jobs/conn.py`` decides which coredis errors are transient; both wait
:func:`backoff`. Pure functions: no httpx (headers are any mapping with ``get``), no anyio
(the caller sleeps).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Final, final

import msgspec

from ..errors import APIConnectionError, APIError, IncompleteStreamError, SourceError

__all__ = ["RetryPolicy", "backoff", "parse_retry_after", "retryable_status", "transient"]

_RETRY_STATUSES: Final = frozenset({408, 409, 429})  # besides every status >= 500
_TRANSIENT_TYPES: Final = frozenset({"overloaded_error", "rate_limit_error", "api_error"})
_MAX_EXPONENT: Final = 1023  # 2.0 ** 1024 overflows a float: a retry loop may run for ever


def retryable_status(status: int) -> bool:
    """Whether an HTTP answer of *status* may succeed when the request is sent again."""
    return status in _RETRY_STATUSES or status >= 500


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds the server asks to wait before a retry, or ``None`` when it named none
    (or nothing numeric): ``retry-after-ms`` wins over ``retry-after``.

    *headers* are looked up by lower-case name (``httpx.Headers`` ignores case).
    """
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def backoff(attempt: int, initial: float, maximum: float) -> float:
    """Seconds before retry number *attempt* (0-based): uniform in
    ``[0, min(maximum, initial * 2**attempt)]`` (exponential backoff, full jitter)."""
    ceiling = min(maximum, initial * 2.0 ** min(attempt, _MAX_EXPONENT))
    return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret


def transient(error: BaseException) -> bool:
    """Whether running the job again may succeed: a connection error, a cut or truncated
    body, a retryable HTTP answer (:func:`retryable_status`), or an overloaded, rate limit
    or api error event."""
    if isinstance(error, APIError):
        status = error.status_code
        return error.error_type in _TRANSIENT_TYPES or (status is not None and retryable_status(status))
    return isinstance(error, APIConnectionError | SourceError | IncompleteStreamError)


@final
class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When and how long to wait before trying a request again.

    Attributes:
        max_retries: Retries after the first attempt (0 disables retrying).
        initial_delay: The first backoff in seconds; it doubles each retry.
        max_delay: The longest backoff, and the longest ``retry-after`` honoured.
    """

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number *attempt* (0-based): the server's
        *retry_after* when it gave one (capped at ``max_delay``), else :func:`backoff`."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_delay)
        return backoff(attempt, self.initial_delay, self.max_delay)
