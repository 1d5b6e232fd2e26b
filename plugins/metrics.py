"""Metrics: time to first token, events, output tokens, per stream and aggregated."""

from __future__ import annotations

import time
from typing import Any, final

import msgspec

import pipeline

__all__ = ["StreamMetrics", "MetricsSummary", "summarize"]


class MetricsSummary(msgspec.Struct, frozen=True):
    """Aggregated figures over many streams.

    Attributes:
        streams: Streams measured.
        events: Derived events over all streams.
        output_tokens: Output tokens over all finished streams.
        ttft_p50: Median time to first text or thinking token, in seconds.
        ttft_p99: 99th percentile time to first token, in seconds.
    """

    streams: int
    events: int
    output_tokens: int
    ttft_p50: float | None
    ttft_p99: float | None


@final
class StreamMetrics:
    """A sync subscriber measuring one stream (attach one per stream).

    ``started`` defaults to the moment of creation: create it when the request is sent.
    """

    def __init__(self, *, clock: Any = time.perf_counter) -> None:
        self._clock = clock
        self.started: float = clock()
        self.first_token: float | None = None
        self.finished: float | None = None
        self.events = 0
        self.output_tokens = 0

    def on_event(self, event: Any) -> None:
        self.events += 1
        if self.first_token is None and isinstance(event, (pipeline.TextEvent, pipeline.ThinkingEvent)):
            self.first_token = self._clock()

    def on_message(self, message: pipeline.Message) -> None:
        self.finished = self._clock()
        self.output_tokens = message.usage.output_tokens

    @property
    def ttft(self) -> float | None:
        """Seconds from creation to the first token, or ``None`` before it."""
        return None if self.first_token is None else self.first_token - self.started

    @property
    def tokens_per_second(self) -> float | None:
        """Output tokens per second from the first token to the end."""
        if self.finished is None or self.first_token is None or self.finished <= self.first_token:
            return None
        return self.output_tokens / (self.finished - self.first_token)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(metrics: list[StreamMetrics]) -> MetricsSummary:
    """Aggregate per-stream metrics."""
    ttfts = [m.ttft for m in metrics if m.ttft is not None]
    return MetricsSummary(
        streams=len(metrics),
        events=sum(m.events for m in metrics),
        output_tokens=sum(m.output_tokens for m in metrics),
        ttft_p50=_percentile(ttfts, 0.5),
        ttft_p99=_percentile(ttfts, 0.99),
    )
