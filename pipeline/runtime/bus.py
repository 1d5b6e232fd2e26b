"""The derived-event bus: fan-out of each batch to subscribers.

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

Sync callbacks run inline, in the task that drives the stream, in subscription order. A
subscriber with any ``async def`` callback runs in its own task (in the stream's task
group, so it is attached before the stream is entered: see ``MessageStream.subscribe``)
behind a bounded channel of batches, with its ``overflow`` policy: ``"block"`` (the stream
waits: backpressure reaches the network read), ``"drop_oldest"`` / ``"drop_newest"``
(counted in ``statistics()``), or ``"error"`` (the stream fails with
:class:`~pipeline.errors.SubscriberOverflowError`). A failing callback fails the stream
(``errors="propagate"``) or is logged and detached while the stream goes on
(``errors="isolate"``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal, final, get_args

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup

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
from ..errors import SubscriberError, SubscriberOverflowError

__all__ = ["CALLBACKS", "EventBus", "Overflow", "OnFailure", "SubscriberStatistics", "Subscription"]

Overflow = Literal["block", "drop_oldest", "drop_newest", "error"]
OnFailure = Literal["propagate", "isolate"]

_log = structlog.get_logger("pipeline.bus")

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
_LIFECYCLE: Final = ("on_error", "on_end")
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
        self.handlers = {n: fn for n in (*CALLBACKS, *_LIFECYCLE) if callable(fn := getattr(target, n, None))}
        if not self.handlers:
            raise TypeError(f"{self.name} has none of the callbacks {', '.join((*CALLBACKS, *_LIFECYCLE))}")
        self.is_async = any(
            inspect.iscoroutinefunction(fn) for n, fn in self.handlers.items() if n not in _LIFECYCLE
        )

    def single(self) -> tuple[Callable[[Any], Any], frozenset[type]] | None:
        """The subscriber's callback and the event types it takes, when it has exactly one
        (lifecycle callbacks aside); else ``None``."""
        found = [name for name in self.handlers if name not in _LIFECYCLE]
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
    if kind not in CALLBACKS and kind not in _LIFECYCLE:
        raise ValueError(f"unknown callback {kind!r}")
    holder = _Callback(kind, fn)
    options.setdefault("name", f"{kind}:{holder.name}")
    return Subscription(holder, **options)


@final
class _AsyncSubscriber:
    """One async subscriber: its channel, task and counters."""

    __slots__ = ("sub", "table", "send", "receive", "error", "dropped", "delivered", "detached", "done")

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.table = sub.table()
        self.send, self.receive = anyio.create_memory_object_stream[list[Any]](sub.buffer)
        self.error: BaseException | None = None
        self.dropped = 0
        self.delivered = 0
        self.detached = False
        self.done = anyio.Event()

    async def run(self) -> None:
        """Deliver batches until the channel closes. Cancelled with the stream."""
        table = self.table
        try:
            async with self.receive:
                async for batch in self.receive:
                    for event in batch:
                        for call in table[type(event)]:
                            result = call(event)
                            if inspect.isawaitable(result):
                                await result
                        self.delivered += 1
        except Exception as exc:
            self.detached = True
            if self.sub.errors == "isolate":
                _log.warning("subscriber_detached", subscriber=self.sub.name, error=repr(exc), exc_info=exc)
            else:
                self.error = SubscriberError(self.sub.name, exc)
                self.error.__cause__ = exc
        finally:
            self.done.set()

    async def offer(self, batch: list[Any]) -> None:
        """Hand *batch* to the subscriber, applying its overflow policy."""
        table = self.table
        mine = [event for event in batch if type(event) in table]
        if not mine or self.detached:
            self._check()
            return
        try:
            self.send.send_nowait(mine)
        except anyio.WouldBlock:
            await self._overflow(mine)
        except anyio.BrokenResourceError:
            self._check()

    async def _overflow(self, batch: list[Any]) -> None:
        policy = self.sub.overflow
        if policy == "block":
            try:
                await self.send.send(batch)
            except anyio.BrokenResourceError:
                self._check()
        elif policy == "drop_newest":
            self.dropped += len(batch)
        elif policy == "drop_oldest":
            try:
                self.dropped += len(self.receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                pass
            self.send.send_nowait(batch)
        else:
            raise SubscriberOverflowError(self.sub.name, self.sub.buffer)

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def statistics(self) -> SubscriberStatistics:
        queued = self.send.statistics().current_buffer_used if not self.detached else 0
        return SubscriberStatistics(self.sub.name, self.delivered, self.dropped, queued, self.detached)


@final
class EventBus:
    """Fans derived events out to the subscribers of one stream."""

    __slots__ = (
        "_subs",
        "_owner",
        "_async",
        "_task_group",
        "_detached",
        "sync_kinds",
        "sync_single",
        "sync_table",
    )

    def __init__(self) -> None:
        # per stream, so the rarely needed containers are made on first use
        self._subs: list[Subscription] = []
        # Read per chunk by the runner's hot loop, which delivers inline as publish_sync
        # does and hands a failure to publish_failed. Never changed in place: a change of
        # subscribers makes new ones.
        # - sync_kinds: the event types any sync callback takes (empty: none);
        # - sync_single: the only sync callback, if there is one (then sync_kinds is a
        #   frozenset shared by every stream, and sync_table is empty: a per-stream table
        #   of one list would cost a dict entry per event type);
        # - sync_table: otherwise, event type -> its sync callbacks, in order.
        self.sync_kinds: dict[type, Any] | frozenset[type] = {}
        self.sync_single: Callable[[Any], Any] | None = None
        self.sync_table: dict[type, list[Callable[[Any], Any]]] = {}
        # callback -> its subscription; a Subscription itself when there is only one
        self._owner: dict[Callable[[Any], Any], Subscription] | Subscription | None = None
        self._async: list[_AsyncSubscriber] | tuple[()] = ()
        self._task_group: TaskGroup | None = None
        self._detached: set[Subscription] | None = None

    def attach(self, task_group: TaskGroup) -> None:
        """Start the tasks of async subscribers in *task_group* (now and later)."""
        self._task_group = task_group
        for sub in self._async:
            task_group.start_soon(sub.run, name=f"subscriber {sub.sub.name}")

    def subscribe(self, sub: Subscription) -> None:
        """Add *sub*; it sees every event published from now on."""
        self._subs.append(sub)
        if sub.is_async:
            runner = _AsyncSubscriber(sub)
            self._async = [*self._async, runner]
            if self._task_group is not None:
                self._task_group.start_soon(runner.run, name=f"subscriber {sub.name}")
        else:
            self._rebuild()

    def _rebuild(self) -> None:
        detached = self._detached or ()
        subs = [sub for sub in self._subs if not sub.is_async and sub not in detached]
        single = subs[0].single() if len(subs) == 1 else None
        if single is not None:
            self.sync_single, self.sync_kinds = single
            self.sync_table = {}
            self._owner = subs[0]
            return
        table: dict[type, list[Callable[[Any], Any]]] = {}
        owner: dict[Callable[[Any], Any], Subscription] = {}
        for sub in subs:
            for kind, calls in sub.table().items():
                table.setdefault(kind, []).extend(calls)
                if len(subs) > 1:
                    owner.update((call, sub) for call in calls)
        # event types with the same callbacks share one list (an `on_event` subscriber
        # would otherwise cost a list per event type, per stream); the lists are never
        # changed in place: a change rebuilds the table
        shared: dict[tuple[Callable[[Any], Any], ...], list[Callable[[Any], Any]]] = {}
        for kind, calls in table.items():
            table[kind] = shared.setdefault(tuple(calls), calls)
        self.sync_table = self.sync_kinds = table
        self.sync_single = None
        self._owner = owner if len(subs) > 1 else subs[0] if subs else None

    @property
    def has_sync(self) -> bool:
        """Whether any sync callback is attached."""
        return bool(self.sync_kinds)

    @property
    def has_async(self) -> bool:
        """Whether any subscriber runs in its own task."""
        return bool(self._async)

    async def publish(self, batch: list[Any]) -> None:
        """Deliver *batch*: inline to sync subscribers, then to each async subscriber.

        Cancellation: may wait for room in a blocking async subscriber's buffer; cancelling
        then abandons the batch for that subscriber.
        """
        if self.sync_kinds:
            self.publish_sync(batch)
        for sub in self._async:
            await sub.offer(batch)

    def publish_sync(self, batch: list[Any]) -> None:
        """Deliver *batch* to the sync subscribers only (never blocks)."""
        table = self.sync_table
        call = self.sync_single
        event: Any = None
        try:
            if call is not None:
                kinds = self.sync_kinds
                for event in batch:
                    if type(event) in kinds:
                        call(event)
            else:
                for event in batch:
                    calls = table.get(type(event))
                    if calls:
                        for call in calls:
                            call(event)
        except Exception as exc:
            assert call is not None
            self.publish_failed(call, exc, batch, event)

    def publish_failed(self, call: Callable[[Any], Any], exc: Exception, batch: list[Any], event: Any) -> None:
        """The slow path of :meth:`publish_sync`, after *call* raised *exc* on *event* of
        *batch*: detach the failing subscriber (or raise), then finish delivering this event
        to the callbacks after it, and the rest of the batch."""
        calls = self.sync_table.get(type(event), [])  # empty when *call* is the only one
        rest = calls[calls.index(call) + 1 :] if call in calls else []
        owner = self._owner_of(call)
        assert owner is not None
        self._detach(owner, exc)
        self._deliver(rest, event)
        position = next(i for i, e in enumerate(batch) if e is event)
        self.publish_sync(batch[position + 1 :])

    def _deliver(self, calls: list[Callable[[Any], Any]], event: Any) -> None:
        for i, call in enumerate(calls):
            owner = self._owner_of(call)
            if owner is None:  # its subscriber was detached meanwhile
                continue
            try:
                call(event)
            except Exception as exc:
                self._detach(owner, exc)
                self._deliver(calls[i + 1 :], event)
                return

    def _detach(self, sub: Subscription, exc: Exception) -> None:
        if sub.errors == "propagate":
            raise SubscriberError(sub.name, exc) from exc
        _log.warning("subscriber_detached", subscriber=sub.name, error=repr(exc), exc_info=exc)
        if self._detached is None:
            self._detached = set()
        self._detached.add(sub)
        self._rebuild()

    def _owner_of(self, call: Callable[[Any], Any]) -> Subscription | None:
        # the subscription of a callback of the current table; None once it is detached
        owner = self._owner
        if isinstance(owner, dict):
            return owner.get(call)
        if owner is not None and (call is self.sync_single or any(call in calls for calls in self.sync_table.values())):
            return owner
        return None

    def close(self) -> None:
        """No more events: let async subscribers drain their buffers and finish."""
        for sub in self._async:
            sub.send.close()

    async def wait_done(self) -> None:
        """Wait until every async subscriber has drained and finished.

        Raises:
            SubscriberError: An async subscriber with ``errors="propagate"`` failed.
        """
        for sub in self._async:
            await sub.done.wait()
        self.check()

    def check(self) -> None:
        """Raise the error of a failed ``propagate`` async subscriber, if any."""
        for sub in self._async:
            if sub.error is not None:
                raise sub.error

    def lifecycle(self, kind: str) -> Iterable[Callable[..., Any]]:
        """The ``on_error`` or ``on_end`` callbacks, in subscription order."""
        return [fn for sub in self._subs if (fn := sub.handlers.get(kind)) is not None]

    def statistics(self) -> list[SubscriberStatistics]:
        """Per async subscriber statistics."""
        return [sub.statistics() for sub in self._async]

