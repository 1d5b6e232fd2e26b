"""``Signal``: a reusable wake-up call between the tasks of one worker.

A public name of the worker layer: :class:`~pipeline.worker.Worker`'s dispatcher and the
Redis fleet's loops (:mod:`pipeline.redis_jobs`) wait on it for "something changed" (a slot
was freed, a job was queued, a stop was asked for) and then check what did.
"""

from __future__ import annotations

from typing import final

import anyio

__all__ = ["Signal"]


@final
class Signal:
    """A reusable wake-up call: ``wait()`` returns at the next ``set()`` (a ``set()`` with
    nobody waiting is forgotten: callers check their condition before waiting)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None  # made in async context, when first waited on

    def set(self) -> None:
        """Wake every task waiting now."""
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        """Wait for the next ``set()``. Cancellation: nothing to undo."""
        if self._event is None or self._event.is_set():
            self._event = anyio.Event()
        await self._event.wait()
