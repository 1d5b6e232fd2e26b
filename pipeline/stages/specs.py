"""Stages: the protocols and the stage specs (the built-in ones, ``Map`` and ``Boundary``).

A stage spec is an immutable, reusable description; ``spec.open()`` makes the per-stream
object that does the work (as Akka separates a GraphStage from its logic). A spec that has
no ``open`` is used as its own logic, so a stateless object with ``process`` will do.

Two kinds of logic:

* a **sync stage**: ``process(item) -> Iterable[out] | None`` and, optionally,
  ``flush() -> Iterable[out] | None`` at the end of input. It never awaits. Built-in stages
  also offer ``process_into(items, out)``, the batch form the fused loop calls.
* an **async stage**: ``async run(receive, send)`` over anyio memory object streams whose
  items are *batches* (``list``): one batch per network chunk, so a channel hop costs per
  chunk, not per event. It must close ``send`` (``async with send:``) when done.

How a chain of specs runs (islands, fusion, channels) is decided by the planner,
:mod:`pipeline.stages.plan`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, final, runtime_checkable

from ..core.accumulate import Accumulator
from ..core.derive import Deriver
from ..core.limits import DEFAULT_LIMITS, Limits
from ..providers.anthropic import AnthropicParser

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = [
    "Accumulate",
    "AsyncStage",
    "Boundary",
    "Derive",
    "Map",
    "Parse",
    "SyncStage",
    "accumulate",
    "boundary",
    "derive",
    "parse",
]

InT_contra = TypeVar("InT_contra", contravariant=True)
OutT_co = TypeVar("OutT_co", covariant=True)


@runtime_checkable
class SyncStage(Protocol[InT_contra, OutT_co]):
    """A stage that transforms items without awaiting."""

    def process(self, item: InT_contra, /) -> Iterable[OutT_co] | None:
        """Return the items that *item* becomes (``None`` or empty to drop it)."""


@runtime_checkable
class AsyncStage(Protocol):
    """A stage with its own task, between two bounded channels of batches."""

    async def run(
        self, receive: MemoryObjectReceiveStream[list[Any]], send: MemoryObjectSendStream[list[Any]]
    ) -> None:
        """Receive batches, send batches; close *send* when done.

        Cancellation: the runner cancels this task when the stream closes early or fails.
        """


@final
class Parse:
    """The built-in ``parse`` stage: SSE framing + msgspec decode of each event.

    Args:
        limits: Its ``max_event_bytes`` applies here; ``None``: the stream's limits.
    """

    __slots__ = ("limits",)
    name = "parse"

    def __init__(self, *, limits: Limits | None = None) -> None:
        self.limits = limits

    def open(self) -> AnthropicParser:
        """Return a fresh parser for one stream."""
        return AnthropicParser(max_event_bytes=(self.limits or DEFAULT_LIMITS).max_event_bytes)

    def __repr__(self) -> str:
        return "parse()" if self.limits is None else f"parse(limits={self.limits!r})"


@final
class Accumulate:
    """The built-in ``accumulate`` stage: folds raw events into the message snapshot.

    Args:
        allow_incomplete: Accept a stream that ends without ``message_stop`` and finish
            with the partial message, as the official SDK does, instead of raising
            :class:`~pipeline.errors.IncompleteStreamError`.
        limits: Its ``max_blocks`` and ``max_tool_input_chars`` apply here; ``None``: the
            stream's limits.
    """

    __slots__ = ("allow_incomplete", "limits")
    name = "accumulate"

    def __init__(self, *, allow_incomplete: bool = False, limits: Limits | None = None) -> None:
        self.allow_incomplete = allow_incomplete
        self.limits = limits

    def open(self) -> Accumulator:
        """Return a fresh accumulator for one stream."""
        return Accumulator(allow_incomplete=self.allow_incomplete, limits=self.limits or DEFAULT_LIMITS)

    def __repr__(self) -> str:
        extra = "" if self.limits is None else f", limits={self.limits!r}"
        return f"accumulate(allow_incomplete={self.allow_incomplete}{extra})"


@final
class Derive:
    """The built-in ``derive`` stage: adds the SDK's text / input_json / ... events."""

    __slots__ = ()
    name = "derive"

    def open(self) -> Deriver:
        """Return a fresh deriver for one stream."""
        return Deriver()

    def __repr__(self) -> str:
        return "derive()"


@final
class Boundary:
    """A marker that ends the current island: the stages after it run in their own task,
    behind a bounded channel of *buffer* batches.

    Add one only for a reason you can name: the next stage is slow and must not stall
    token delivery, or two rates need an explicit buffer.
    """

    __slots__ = ("buffer",)

    def __init__(self, *, buffer: int = 4) -> None:
        if buffer < 1:
            raise ValueError(f"buffer must be >= 1, got {buffer}")
        self.buffer = buffer

    def __repr__(self) -> str:
        return f"boundary(buffer={self.buffer})"


@final
class Map:
    """A sync stage that applies *fn* to every item; ``None`` drops the item.

    Args:
        fn: The function; it must not block.
        name: A name for errors and logs (default: the function's name).
    """

    __slots__ = ("_fn", "name")

    def __init__(self, fn: Callable[[Any], Any], *, name: str | None = None) -> None:
        self._fn = fn
        self.name = name or getattr(fn, "__name__", "map")

    def process_into(self, items: list[Any], out: list[Any]) -> None:
        """Append ``fn(item)`` for each item, skipping ``None``."""
        fn = self._fn
        for item in items:
            result = fn(item)
            if result is not None:
                out.append(result)

    def process(self, item: Any) -> list[Any]:
        """Return ``[fn(item)]``, or ``[]`` when it is ``None``."""
        result = self._fn(item)
        return [] if result is None else [result]

    def __repr__(self) -> str:
        return f"Map({self.name})"


def parse(*, limits: Limits | None = None) -> Parse:
    """The built-in SSE framing + decoding stage (see :class:`Parse`)."""
    return Parse(limits=limits)


def accumulate(*, allow_incomplete: bool = False, limits: Limits | None = None) -> Accumulate:
    """The built-in message accumulation stage (see :class:`Accumulate`)."""
    return Accumulate(allow_incomplete=allow_incomplete, limits=limits)


def derive() -> Derive:
    """The built-in derived-event stage."""
    return Derive()


def boundary(*, buffer: int = 4) -> Boundary:
    """A channel boundary of *buffer* batches; when unsure, keep the default (4)."""
    return Boundary(buffer=buffer)


BUILTIN = (Parse, Accumulate, Derive)
DEFAULT_CHAIN: Final = (Parse(), Accumulate(), Derive())
"""The built-in chain with the default limits: one set of specs for every stream."""


def resolve(
    stages: Sequence[Any], *, allow_incomplete: bool = False, limits: Limits | None = None
) -> tuple[Any, ...]:
    """Return the full chain: *stages* as given when it names a built-in stage, otherwise
    the built-in chain followed by *stages*. Built-in ``parse`` and ``accumulate`` stages
    without limits of their own get *limits*."""
    if any(isinstance(s, BUILTIN) for s in stages):
        if limits is None:
            return tuple(stages)
        return tuple(_with_limits(s, limits) for s in stages)
    if limits is None and not allow_incomplete:
        # specs hold no state: one set for every stream
        return (*DEFAULT_CHAIN, *stages) if stages else DEFAULT_CHAIN
    return (Parse(limits=limits), Accumulate(allow_incomplete=allow_incomplete, limits=limits), Derive(), *stages)


def _with_limits(spec: Any, limits: Limits) -> Any:
    if isinstance(spec, Parse) and spec.limits is None:
        return Parse(limits=limits)
    if isinstance(spec, Accumulate) and spec.limits is None:
        return Accumulate(allow_incomplete=spec.allow_incomplete, limits=limits)
    return spec


def open_logic(spec: Any) -> Any:
    """Return the per-stream logic of *spec*."""
    opener = getattr(spec, "open", None)
    return opener() if callable(opener) else spec


def is_async_stage(logic: Any) -> bool:
    """Tell whether *logic* runs as its own task."""
    return callable(getattr(logic, "run", None)) and not hasattr(logic, "process")


def stage_name(spec: Any) -> str:
    """Return a readable name for a stage spec or logic."""
    name = getattr(spec, "name", None)
    return name if isinstance(name, str) else type(spec).__name__
