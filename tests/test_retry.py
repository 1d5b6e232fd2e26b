"""``pipeline.client.retry``: the retry rules the client, the worker and the Redis fleet share."""

from __future__ import annotations

import httpx
import pytest

from pipeline.client.retry import RetryPolicy, backoff, parse_retry_after, retryable_status, transient
from pipeline.errors import (
    APIConnectionError,
    APITimeoutError,
    IncompleteStreamError,
    SourceError,
    StageError,
    api_error,
)


@pytest.mark.parametrize(("status", "retryable"), [
    (400, False), (401, False), (403, False), (404, False), (413, False),
    (408, True), (409, True), (429, True), (500, True), (502, True), (503, True), (529, True),
])  # fmt: skip
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert retryable_status(status) is retryable


@pytest.mark.parametrize(("headers", "seconds"), [
    ({}, None),
    ({"retry-after": "2"}, 2.0),
    ({"retry-after": "0.25"}, 0.25),
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
    ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
])  # fmt: skip
def test_parse_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers) == seconds


def test_parse_retry_after_reads_httpx_headers_in_any_case() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "4"})) == 4.0


def test_backoff_is_full_jitter_under_the_doubling_ceiling() -> None:
    for attempt in range(8):
        ceiling = min(2.0, 0.05 * 2**attempt)
        assert all(0 <= backoff(attempt, 0.05, 2.0) <= ceiling for _ in range(200))


def test_backoff_never_overflows() -> None:
    """A loop that retries for ever (a Redis outage) keeps getting delays within the cap."""
    assert all(0 <= backoff(attempt, 0.05, 2.0) <= 2.0 for attempt in (1023, 1024, 5000, 10**9))


def test_policy_honours_retry_after_up_to_its_cap() -> None:
    policy = RetryPolicy(max_retries=3, initial_delay=5.0, max_delay=1.0)
    assert policy.delay(0, 0.5) == 0.5
    assert policy.delay(0, 30.0) == 1.0
    assert 0 <= policy.delay(4, None) <= 1.0
    assert 0 <= policy.delay(0, -1.0) <= 1.0  # a negative retry-after falls back to backoff


@pytest.mark.parametrize(("error", "expected"), [
    (api_error(None, "overloaded", status_code=529), True),
    (api_error("overloaded_error", "overloaded"), True),
    (api_error("rate_limit_error", "slow down", status_code=429), True),
    (api_error("api_error", "internal"), True),
    (api_error(None, "bad gateway", status_code=502), True),
    (api_error(None, "timeout", status_code=408), True),
    (api_error("unexpected_error", "odd body", status_code=429), True),  # the status decides, as for the client
    (api_error("invalid_request_error", "bad", status_code=400), False),
    (api_error("authentication_error", "no", status_code=401), False),
    (APIConnectionError("refused"), True),
    (APITimeoutError("timed out"), True),
    (SourceError(OSError("connection reset")), True),
    (IncompleteStreamError(None, "content_block_delta"), True),
    (StageError("map", ValueError("bug")), False),
    (ValueError("bug"), False),
])  # fmt: skip
def test_transient(error: BaseException, expected: bool) -> None:
    assert transient(error) is expected
