"""Token usage and cost, per stream and in total over many streams.

One :class:`UsageTracker` is shared by every stream; each stream gets its own subscriber
from :meth:`UsageTracker.subscriber`::

    tracker = UsageTracker(prices={"claude-sonnet-4-5": (3.0, 15.0, 3.75, 0.30)})
    async with pipeline.open_stream(source, subscribers=[tracker.subscriber()]) as stream:
        ...
    print(tracker.totals())

The tracker itself has no callbacks (``open_stream(subscribers=[tracker])`` is a
``TypeError``), and a subscriber records exactly one stream (a second message fails that
stream loudly), so tokens can never be attributed to the wrong stream. Counts come from the
final message's usage, which already applies the cumulative ``message_delta`` rules; a
stream that fails counts the usage of its partial message (the input was billed), marked
incomplete. A stream cancelled before it ended, or failed before ``message_start``, counts
nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import final

import msgspec

import pipeline

__all__ = ["Price", "StreamUsage", "TokenUsage", "UsageSubscriber", "UsageTotals", "UsageTracker"]


class TokenUsage(msgspec.Struct, frozen=True):
    """Token counts; ``a + b`` adds them.

    Attributes:
        input_tokens: Uncached input tokens.
        output_tokens: Output tokens.
        cache_creation_input_tokens: Input tokens written to the prompt cache.
        cache_read_input_tokens: Input tokens read from the prompt cache.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @classmethod
    def from_usage(cls, usage: pipeline.Usage) -> TokenUsage:
        """Read a message's :class:`pipeline.Usage` (missing cache counts are 0)."""
        return cls(
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_creation_input_tokens or 0,
            usage.cache_read_input_tokens or 0,
        )

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
        )

    @property
    def total_input_tokens(self) -> int:
        """All input tokens: uncached, cache writes and cache reads."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


class Price(msgspec.Struct, frozen=True):
    """Prices of one model, in currency units per million tokens.

    Attributes:
        input: Uncached input tokens.
        output: Output tokens.
        cache_write: Cache creation input tokens.
        cache_read: Cache read input tokens.
    """

    input: float
    output: float
    cache_write: float
    cache_read: float

    def cost(self, tokens: TokenUsage) -> float:
        """The cost of *tokens* at these prices."""
        return (
            tokens.input_tokens * self.input
            + tokens.output_tokens * self.output
            + tokens.cache_creation_input_tokens * self.cache_write
            + tokens.cache_read_input_tokens * self.cache_read
        ) / 1_000_000


class StreamUsage(msgspec.Struct, frozen=True):
    """The usage of one stream.

    Attributes:
        message_id: The message id.
        model: The model that answered.
        tokens: Its token counts.
        cost: Its estimated cost, or ``None`` when the model has no price.
        complete: ``False`` when the stream failed (the counts are what had arrived).
    """

    message_id: str
    model: str
    tokens: TokenUsage
    cost: float | None
    complete: bool = True


class UsageTotals(msgspec.Struct, frozen=True):
    """The usage of every stream recorded so far.

    Attributes:
        streams: Streams recorded (complete or not).
        incomplete: Of those, streams that failed.
        tokens: Their token counts, summed.
        by_model: Token counts per model.
        cost: The estimated cost of the streams whose model has a price, or ``None``
            when the tracker has no price table.
        unpriced: Streams left out of ``cost`` because their model has no price.
    """

    streams: int
    incomplete: int
    tokens: TokenUsage
    by_model: dict[str, TokenUsage]
    cost: float | None
    unpriced: int


@final
class UsageSubscriber:
    """A sync subscriber recording one stream into its tracker; made by :meth:`UsageTracker.subscriber`.

    Attributes:
        result: This stream's usage once it ended (``None`` before, or if it counted nothing).
    """

    __slots__ = ("_tracker", "result")

    def __init__(self, tracker: UsageTracker) -> None:
        self._tracker = tracker
        self.result: StreamUsage | None = None

    def on_message(self, message: pipeline.Message) -> None:
        self._record(message, complete=True)

    def on_error(self, error: BaseException) -> None:
        partial = getattr(error, "partial_message", None)
        if not isinstance(partial, pipeline.Message):
            return
        if self.result is not None and self.result.message_id == partial.id:
            return  # this stream failed after its message stopped: already counted
        self._record(partial, complete=False)

    def _record(self, message: pipeline.Message, *, complete: bool) -> None:
        if self.result is not None:
            raise RuntimeError("a UsageSubscriber records one stream; call tracker.subscriber() for each stream")
        self.result = self._tracker._add(message, complete=complete)


@final
class UsageTracker:
    """Totals of token usage (and optionally cost) over many streams.

    Safe to share between concurrent streams, and between threads.

    Args:
        prices: ``{model: (input, output, cache_write, cache_read)}`` per million tokens.
            A model matches its own name, or the longest key it starts with followed by
            ``-`` (``"claude-sonnet-4-5"`` prices ``"claude-sonnet-4-5-20250929"``).

    Raises:
        ValueError: A price is not four non-negative numbers.
    """

    __slots__ = ("prices", "_lock", "_streams", "_incomplete", "_by_model", "_cost", "_unpriced")

    def __init__(self, prices: Mapping[str, Sequence[float] | Price] | None = None) -> None:
        self.prices: dict[str, Price] | None = None
        if prices is not None:
            self.prices = {model: _price(model, price) for model, price in prices.items()}
        self._lock = threading.Lock()
        self._streams = self._incomplete = self._unpriced = 0
        self._by_model: dict[str, TokenUsage] = {}
        self._cost = 0.0

    def subscriber(self) -> UsageSubscriber:
        """A new subscriber for one stream: ``open_stream(source, subscribers=[tracker.subscriber()])``."""
        return UsageSubscriber(self)

    def price_for(self, model: str) -> Price | None:
        """The price of *model* (exact name, else the longest ``key-`` prefix), or ``None``."""
        if not self.prices:
            return None
        price = self.prices.get(model)
        if price is None:
            keys = [key for key in self.prices if model.startswith(key + "-")]
            price = self.prices[max(keys, key=len)] if keys else None
        return price

    def totals(self) -> UsageTotals:
        """A snapshot of the totals so far."""
        with self._lock:
            by_model = dict(self._by_model)
            tokens = sum(by_model.values(), TokenUsage())
            cost = None if self.prices is None else self._cost
            return UsageTotals(self._streams, self._incomplete, tokens, by_model, cost, self._unpriced)

    def _add(self, message: pipeline.Message, *, complete: bool) -> StreamUsage:
        tokens = TokenUsage.from_usage(message.usage)
        price = self.price_for(message.model)
        cost = price.cost(tokens) if price is not None else None
        with self._lock:
            self._streams += 1
            self._incomplete += not complete
            self._by_model[message.model] = self._by_model.get(message.model, TokenUsage()) + tokens
            if cost is not None:
                self._cost += cost
            elif self.prices is not None:
                self._unpriced += 1
        return StreamUsage(message.id, message.model, tokens, cost, complete)


def _price(model: str, price: Sequence[float] | Price) -> Price:
    if isinstance(price, Price):
        values: Sequence[float] = (price.input, price.output, price.cache_write, price.cache_read)
    else:
        values = tuple(price)
    if len(values) != 4 or not all(isinstance(v, (int, float)) and v >= 0 for v in values):
        raise ValueError(
            f"price of {model!r} must be four non-negative numbers "
            f"(input, output, cache_write, cache_read per million tokens), got {price!r}"
        )
    return Price(*(float(v) for v in values))
