"""The usage tracker: per-stream attribution under concurrency, totals, cost."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

import pipeline
from pipeline.testing import StreamBuilder, aiter_chunks, chunk_random
from plugins.usage import Price, StreamUsage, TokenUsage, UsageSubscriber, UsageTracker

PRICES = {"claude-sonnet-4-5": (3.0, 15.0, 3.75, 0.30), "claude-haiku-4-5": Price(1.0, 5.0, 1.25, 0.10)}


def body(
    *,
    model: str = "claude-sonnet-4-5",
    message_id: str = "msg_1",
    input_tokens: int = 10,
    output_tokens: int = 20,
    end: bool = True,
    delta_usage: dict[str, int] | None = None,
) -> bytes:
    builder = StreamBuilder(seed=input_tokens, model=model, message_id=message_id, input_tokens=input_tokens)
    builder.text_block(["a", "b", "c"])
    return builder.build(output_tokens=output_tokens, message_delta_usage=delta_usage or {}, end=end)


async def run(data: bytes, *subscribers: object) -> None:
    source = aiter_chunks(chunk_random(data, seed=len(data), max_size=24), checkpoint=True)
    async with pipeline.open_stream(source, subscribers=subscribers) as stream:
        await stream.until_done()


async def test_one_stream_with_cumulative_usage() -> None:
    tracker = UsageTracker(PRICES)
    sub = tracker.subscriber()
    # message_delta usage overwrites message_start's, as the accumulator applies it
    cumulative = {"input_tokens": 42, "cache_creation_input_tokens": 7, "cache_read_input_tokens": 5}
    await run(body(input_tokens=10, output_tokens=9, delta_usage=cumulative), sub)
    tokens = TokenUsage(input_tokens=42, output_tokens=9, cache_creation_input_tokens=7, cache_read_input_tokens=5)
    cost = (42 * 3.0 + 9 * 15.0 + 7 * 3.75 + 5 * 0.30) / 1e6
    assert sub.result == StreamUsage("msg_1", "claude-sonnet-4-5", tokens, pytest.approx(cost), True)  # type: ignore[arg-type]
    totals = tracker.totals()
    assert (totals.streams, totals.incomplete, totals.unpriced) == (1, 0, 0)
    assert totals.tokens == tokens and totals.by_model == {"claude-sonnet-4-5": tokens}
    assert totals.cost == pytest.approx(cost)
    assert tokens.total_input_tokens == 54


async def test_concurrent_streams_are_attributed_to_their_own_stream() -> None:
    tracker = UsageTracker(PRICES)
    rng = random.Random(7)
    models = ["claude-sonnet-4-5", "claude-haiku-4-5-20251001", "unpriced-model"]
    specs: list[dict[str, Any]] = [
        {
            "model": models[i % 3],
            "message_id": f"msg_{i}",
            "input_tokens": rng.randint(1, 9999),
            "output_tokens": rng.randint(1, 9999),
            "delta_usage": {"cache_read_input_tokens": rng.randint(0, 99)},
        }
        for i in range(30)
    ]
    subs = [tracker.subscriber() for _ in specs]
    async with anyio.create_task_group() as tg:
        for spec, sub in zip(specs, subs, strict=True):
            tg.start_soon(run, body(**spec), sub)

    for spec, sub in zip(specs, subs, strict=True):
        assert sub.result is not None
        assert sub.result.message_id == spec["message_id"] and sub.result.model == spec["model"]
        assert sub.result.tokens == TokenUsage(
            spec["input_tokens"], spec["output_tokens"], 0, spec["delta_usage"]["cache_read_input_tokens"]
        )
        assert (sub.result.cost is None) == (spec["model"] == "unpriced-model")
    totals = tracker.totals()
    assert totals.streams == 30 and totals.unpriced == 10 and totals.incomplete == 0
    assert totals.tokens == sum((s.result.tokens for s in subs if s.result), TokenUsage())
    assert totals.tokens.input_tokens == sum(spec["input_tokens"] for spec in specs)
    assert set(totals.by_model) == set(models)
    assert totals.cost == pytest.approx(sum(s.result.cost or 0 for s in subs if s.result))
    haiku = TokenUsage(10, 20, 30, 40)
    assert tracker.price_for("claude-haiku-4-5-20251001") == PRICES["claude-haiku-4-5"]
    assert PRICES["claude-haiku-4-5"].cost(haiku) == pytest.approx((10 + 100 + 37.5 + 4) / 1e6)  # type: ignore[union-attr]


async def test_a_failed_stream_counts_its_partial_usage() -> None:
    tracker = UsageTracker()
    sub = tracker.subscriber()
    with pytest.raises(pipeline.IncompleteStreamError):
        await run(body(input_tokens=100, end=False), sub)
    assert sub.result is not None and not sub.result.complete
    assert sub.result.tokens.input_tokens == 100 and sub.result.cost is None
    totals = tracker.totals()
    assert (totals.streams, totals.incomplete, totals.cost, totals.unpriced) == (1, 1, None, 0)


async def test_the_tracker_is_not_a_subscriber_and_a_subscriber_records_one_stream() -> None:
    tracker = UsageTracker()
    with pytest.raises(TypeError):
        pipeline.open_stream(aiter_chunks([body()]), subscribers=[tracker])
    sub = tracker.subscriber()
    await run(body(message_id="msg_a"), sub)
    with pytest.raises(pipeline.SubscriberError) as caught:
        await run(body(message_id="msg_b"), sub)
    assert "tracker.subscriber()" in str(caught.value.__cause__)
    assert tracker.totals().streams == 1
    assert sub.result is not None and sub.result.message_id == "msg_a"


async def test_a_stream_failing_after_its_message_is_counted_once() -> None:
    tracker = UsageTracker()
    sub = tracker.subscriber()

    class FailsAtTheEnd:
        def on_message(self, message: pipeline.Message) -> None:
            raise RuntimeError("downstream failed")

    with pytest.raises(pipeline.SubscriberError):
        await run(body(), sub, FailsAtTheEnd())
    assert tracker.totals().streams == 1
    assert isinstance(sub, UsageSubscriber) and sub.result is not None and sub.result.complete


def test_totals_are_frozen_and_prices_validated() -> None:
    totals = UsageTracker().totals()
    assert totals.tokens == TokenUsage() and totals.cost is None
    with pytest.raises(AttributeError):
        totals.streams = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="four non-negative"):
        UsageTracker({"m": (1.0, 2.0, 3.0)})
    with pytest.raises(ValueError, match="four non-negative"):
        UsageTracker({"m": (1.0, 2.0, 3.0, -1.0)})
    assert UsageTracker({"m": (1, 2, 3, 4)}).price_for("m") == Price(1.0, 2.0, 3.0, 4.0)
    assert UsageTracker({"m": (1, 2, 3, 4)}).price_for("mx") is None
    assert UsageTracker({}).totals().cost == 0.0
