"""Subscribers: what a subscriber is, its delivery options, and the callbacks it may have.

A subscriber is any object with some of these methods, or a single callback given to a
decorator (``@stream.on_text``):

================== ====================================== =============================
callback           called with                            when
================== ====================================== =============================
``on_text``        :class:`~pipeline.TextEvent`           text arrives
``on_tool_input``  :class:`~pipeline.InputJsonEvent`      tool input JSON arrives
``on_thinking``    :class:`~pipeline.ThinkingEvent`       thinking arrives
``on_citation``    :class:`~pipeline.CitationEvent`       a citation arrives
``on_signature``   :class:`~pipeline.SignatureEvent`      a thinking signature arrives
``on_content_block`` the finished block                   a content block stops
``on_message``     the final :class:`~pipeline.Message`   the message stops
``on_event``       every derived event                    always
``on_error``       the exception                          the stream fails
``on_end``         nothing                                the stream closes (always)
================== ====================================== =============================

A :class:`Subscription` wraps one with its options (``overflow``, ``buffer``, ``errors``);
:mod:`pipeline.runtime.bus` delivers the events to it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Final, Literal, final, get_args

import msgspec

from ..core.events import (
    DERIVED_TYPES,
    CitationEvent,
    ContentBlockStopEvent,
    DerivedEvent,
    InputJsonEvent,
    MessageStopEvent,
    SignatureEvent,
    TextEvent,
    ThinkingEvent,
)

__all__ = [
    "CALLBACKS", "LIFECYCLE", "OnFailure", "Overflow", "SubscriberStatistics", "Subscription", "callback_subscription",
]  # fmt: skip

Overflow = Literal["block", "drop_oldest", "drop_newest", "error"]
OnFailure = Literal["propagate", "isolate"]


_ALL: Final[tuple[type, ...]] = get_args(DerivedEvent)  # what on_event receives
# callback name -> (event types, how to call it with the event)
CALLBACKS: Final[dict[str, tuple[tuple[type, ...], Callable[[Callable[..., Any]], Callable[[Any], Any]] | None]]] = {
    "on_text": ((TextEvent,), None),
    "on_tool_input": ((InputJsonEvent,), None),
    "on_thinking": ((ThinkingEvent,), None),
    "on_citation": ((CitationEvent,), None),
    "on_signature": ((SignatureEvent,), None),
    "on_content_block": ((ContentBlockStopEvent,), lambda fn: lambda ev: fn(ev.content_block)),
    "on_message": ((MessageStopEvent,), lambda fn: lambda ev: fn(ev.message)),
    "on_event": (_ALL, None),
}
LIFECYCLE: Final = ("on_error", "on_end")
# the event types of each callback, shared by every stream; on_event's is DERIVED_TYPES
# itself, which the fused chain recognises by identity
_TAKES: Final = {
    name: DERIVED_TYPES if name == "on_event" else frozenset(types) for name, (types, _) in CALLBACKS.items()
}


class SubscriberStatistics(msgspec.Struct, frozen=True):
    """What one subscriber received and missed.

    Attributes:
        name: The subscriber's name.
        delivered: Events handed to its callbacks.
        dropped: Events dropped by its overflow policy.
        queued: Batches waiting in its buffer (async subscribers).
        detached: Whether it was detached after a failure (``errors="isolate"``).
    """

    name: str
    delivered: int
    dropped: int
    queued: int
    detached: bool


@final
class Subscription:
    """A subscriber with its delivery options, ready to attach to a stream.

    Args:
        target: An object with ``on_*`` methods.
        name: A name for errors, logs and statistics (default: the class name).
        overflow: What an async subscriber does when its buffer is full (see module doc).
        buffer: Batches an async subscriber may fall behind (one batch per network chunk);
            when unsure, keep 16.
        errors: ``"propagate"`` (a failing callback fails the stream) or ``"isolate"``.
    """

    __slots__ = ("target", "name", "overflow", "buffer", "errors", "handlers", "is_async")

    def __init__(
        self,
        target: object,
        *,
        name: str | None = None,
        overflow: Overflow = "block",
        buffer: int = 16,
        errors: OnFailure = "propagate",
    ) -> None:
        if overflow not in ("block", "drop_oldest", "drop_newest", "error"):
            raise ValueError(f"overflow must be block, drop_oldest, drop_newest or error, got {overflow!r}")
        if errors not in ("propagate", "isolate"):
            raise ValueError(f"errors must be propagate or isolate, got {errors!r}")
        if buffer < 1:
            raise ValueError(f"buffer must be >= 1, got {buffer}")
        self.target = target
        self.name = name or type(target).__name__
        self.overflow: Overflow = overflow
        self.buffer = buffer
        self.errors: OnFailure = errors
        self.handlers = {n: fn for n in (*CALLBACKS, *LIFECYCLE) if callable(fn := getattr(target, n, None))}
        if not self.handlers:
            raise TypeError(f"{self.name} has none of the callbacks {', '.join((*CALLBACKS, *LIFECYCLE))}")
        self.is_async = any(
            inspect.iscoroutinefunction(fn) for n, fn in self.handlers.items() if n not in LIFECYCLE
        )

    def single(self) -> tuple[Callable[[Any], Any], frozenset[type]] | None:
        """The subscriber's callback and the event types it takes, when it has exactly one
        (lifecycle callbacks aside); else ``None``."""
        found = [name for name in self.handlers if name not in LIFECYCLE]
        if len(found) != 1:
            return None
        name = found[0]
        adapt = CALLBACKS[name][1]
        fn = self.handlers[name]
        return (adapt(fn) if adapt else fn), _TAKES[name]

    def table(self) -> dict[type, list[Callable[[Any], Any]]]:
        """Return event type -> callbacks of this subscriber, in a fixed order."""
        table: dict[type, list[Callable[[Any], Any]]] = {}
        for cb_name, (types, adapt) in CALLBACKS.items():
            fn = self.handlers.get(cb_name)
            if fn is not None:
                call = adapt(fn) if adapt else fn
                for kind in types:
                    table.setdefault(kind, []).append(call)
        return table


class _Callback:
    """A single function registered with a decorator, as a subscriber object."""

    def __init__(self, kind: str, fn: Callable[..., Any]) -> None:
        setattr(self, kind, fn)
        self.__name = getattr(fn, "__name__", kind)

    @property
    def name(self) -> str:
        return self.__name


def callback_subscription(kind: str, fn: Callable[..., Any], **options: Any) -> Subscription:
    """Wrap a single callback in a :class:`Subscription`."""
    if kind not in CALLBACKS and kind not in LIFECYCLE:
        raise ValueError(f"unknown callback {kind!r}")
    holder = _Callback(kind, fn)
    options.setdefault("name", f"{kind}:{holder.name}")
    return Subscription(holder, **options)
