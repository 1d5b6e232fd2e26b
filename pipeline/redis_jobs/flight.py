"""The bookkeeping of :class:`~pipeline.redis_jobs.RedisWorker`: its counters and one
record per job taken from the queue."""

from __future__ import annotations

from typing import Any, final

import anyio
import msgspec

__all__ = ["Flight", "RedisWorkerStatistics", "flight_of"]


@final
class RedisWorkerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Live counters of a :class:`RedisWorker`.

    Attributes:
        name: The worker's consumer name.
        in_flight: Jobs taken and not yet settled.
        done: Jobs whose final message this worker wrote.
        failed: Jobs whose error this worker wrote as their result (dead-lettered included).
        reclaimed: Jobs taken over from a dead worker (XAUTOCLAIM).
        retried: Attempts that failed transiently and went back to the queue.
        dead_lettered: Jobs this worker sent to the dead-letter stream.
        handed_back: Jobs given back to the queue by a shutdown.
        superseded: Attempts abandoned because a newer attempt of the job started.
        events: Derived events published.
        events_per_second: ``events`` over ``uptime``.
        uptime: Seconds since the worker started.
    """

    name: str
    in_flight: int
    done: int
    failed: int
    reclaimed: int
    retried: int
    dead_lettered: int
    handed_back: int
    superseded: int
    events: int
    events_per_second: float
    uptime: float


@final
class Flight:
    """One job taken from the queue, until it is settled."""

    __slots__ = ("entry_id", "job_id", "reclaimed", "attempt", "run_scope", "handback")

    def __init__(self, entry_id: bytes, job_id: str, reclaimed: bool) -> None:
        self.entry_id, self.job_id, self.reclaimed = entry_id, job_id, reclaimed
        self.attempt = 0
        self.run_scope: anyio.CancelScope | None = None
        self.handback = False  # the shutdown asks to give the job back


def flight_of(entry: Any, *, reclaimed: bool) -> Flight:
    """The flight of a jobs stream entry (``job_id`` empty if the entry names no job)."""
    raw = (entry.field_values or {}).get(b"id")
    return Flight(entry.identifier, raw.decode() if raw is not None else "", reclaimed)
