"""The derived-event bus: delivery of each batch to the subscribers of one stream.

This module is the one place where events reach subscribers (what a subscriber is lives in
:mod:`pipeline.runtime.subscription`). Sync callbacks run inline, in the task that drives
the stream, in subscription order: :meth:`EventBus.publish_sync` delivers a batch, and
:meth:`EventBus.publish_failed` finishes one after a callback raised. The fused chain
delivers a live delta's events to a lone callback itself (``sync_single`` and
``sync_kinds`` are the bus's declared contract for that) and hands a failure back to
``publish_failed``. A subscriber with any ``async def`` callback runs in its own task (in
the stream's task group, so it is attached before the stream is entered: see
``MessageStream.subscribe``) behind a bounded channel of batches, with its ``overflow``
policy: ``"block"`` (the stream waits: backpressure reaches the network read),
``"drop_oldest"`` / ``"drop_newest"`` (counted in ``statistics()``), or ``"error"`` (the
stream fails with :class:`~pipeline.errors.SubscriberOverflowError`). A failing callback
fails the stream (``errors="propagate"``) or is logged and detached while the stream goes
on (``errors="isolate"``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, final

import anyio
import structlog
from anyio.abc import TaskGroup

from ..core.events import DERIVED_TYPES
from ..errors import SubscriberError, SubscriberOverflowError
from .subscription import SubscriberStatistics, Subscription

__all__ = ["EventBus"]

_log = structlog.get_logger("pipeline.bus")


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

    def publish_sync(self, batch: list[Any], derived: bool = False) -> None:
        """Deliver *batch* to the sync subscribers only (never blocks).

        *derived*: the batch holds derived events only (the built-in chain's output), so a
        lone ``on_event`` callback takes every one of them without a look at its type.
        """
        call = self.sync_single
        event: Any = None
        try:
            if call is not None:  # one callback (on_event, or on_text alone...)
                kinds = self.sync_kinds
                if derived and kinds is DERIVED_TYPES:
                    for event in batch:
                        call(event)
                else:
                    for event in batch:
                        if type(event) in kinds:
                            call(event)
            else:
                table = self.sync_table
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

