"""The events of one job attempt, from its stream to its Redis events stream.

:class:`Publisher` is a sync subscriber of the attempt's stream (``on_event`` only appends:
the hot path stays fused) plus a task that writes what arrived. The stream's island
delivers a whole received chunk before it awaits the next one, so when the writer task
runs it finds every event of the chunks received since its last write and sends them in
one round trip: at most one XADD per received chunk, never one per event. While Redis is
slow or away, chunks pile up and go out together (split in entries of at most
``_ENTRY_EVENTS`` events, pipelined); their memory is bounded by one message.
"""

from __future__ import annotations

from typing import Any, Final, final

import anyio
import coredis
import coredis.exceptions
import structlog

from ..core.encode import encode_derived
from .codec import parse_id
from .conn import Redis, retrying

__all__ = ["Publisher"]

_ENTRY_EVENTS: Final = 512
_log = structlog.get_logger("pipeline.redis")


class _Superseded(Exception):
    """A newer attempt of the job wrote to the events stream."""


@final
class Publisher:
    """Collects one attempt's derived events and writes them to the job's events stream.

    Args:
        redis: The client.
        url: The Redis URL, for errors.
        key: The events stream.
        attempt: The attempt number (the first part of every entry id).
        maxlen: The stream's approximate cap.
        scope: Cancelled when the attempt must stop: a newer attempt superseded it, or
            writing failed for good (``error`` says which).
    """

    __slots__ = ("_redis", "_url", "_key", "_attempt", "_maxlen", "_scope", "_pending", "_unsent", "_wake",
                 "_closed", "_seq", "published", "superseded", "error")  # fmt: skip

    def __init__(self, redis: Redis, url: str, key: str, attempt: int, maxlen: int, scope: anyio.CancelScope) -> None:
        self._redis, self._url, self._key, self._attempt, self._maxlen = redis, url, key, attempt, maxlen
        self._scope = scope
        self._pending: list[Any] = []  # events received, not yet made entries
        # entries made, not yet known written (ids fixed: sending them again is safe), and
        # how many events they hold
        self._unsent: tuple[list[tuple[str, bytes]], int] = ([], 0)
        self._wake = anyio.Event()
        self._closed = False
        self._seq = 0  # the last entry written
        self.published = 0
        self.superseded = False
        self.error: BaseException | None = None

    def on_event(self, event: Any) -> None:
        self._pending.append(event)
        if len(self._pending) == 1:
            self._wake.set()

    def close(self) -> None:
        """No more events: :meth:`run` returns once everything is written."""
        self._closed = True
        self._wake.set()

    @property
    def flushed(self) -> bool:
        """Whether the stream ended (:meth:`close`) and every event it gave is written."""
        return self._closed and not self._pending and not self._unsent[0] and not self.failed

    @property
    def failed(self) -> bool:
        """Whether writing stopped for good: a newer attempt superseded this one, or an error."""
        return self.superseded or self.error is not None

    async def run(self) -> None:
        """Write pending events until closed and flushed. Never raises but cancellation:
        a failure is recorded in ``superseded`` / ``error`` and cancels the attempt.

        Cancellation: what is not written yet is kept for :meth:`flush`.
        """
        try:
            while True:
                if not self._pending and not self._unsent[0]:
                    if self._closed:
                        return
                    self._wake = anyio.Event()
                    await self._wake.wait()
                    continue
                await self._write()
        except Exception as exc:
            self._stopped(exc)
            self._scope.cancel()

    async def flush(self) -> bool:
        """Write what a cancelled :meth:`run` left, after :meth:`close`; return :attr:`flushed`.

        Cancellation: what is not written yet stays unwritten (the attempt is abandoned).
        """
        self._closed = True
        try:
            while not self.failed and (self._pending or self._unsent[0]):
                await self._write()
        except Exception as exc:
            self._stopped(exc)
        return self.flushed

    def _stopped(self, exc: Exception) -> None:
        """Writing stopped for good: a newer attempt superseded this one, or *exc* (e.g.
        Redis out of memory) fails the attempt."""
        if isinstance(exc, _Superseded):
            self.superseded = True
        else:
            _log.warning("redis_publish_failed", stream=self._key, error=repr(exc))
            self.error = exc

    async def _write(self) -> None:
        if not self._unsent[0]:  # make the next entries from what arrived
            batch, self._pending = self._pending, []
            entries = []
            for start in range(0, len(batch), _ENTRY_EVENTS):
                self._seq += 1
                entries.append((f"{self._attempt}-{self._seq}", encode_derived(batch[start : start + _ENTRY_EVENTS])))
            self._unsent = (entries, len(batch))
        entries, count = self._unsent
        await retrying(lambda: self._send(entries), what="publish", url=self._url, stream=self._key)
        self._unsent = ([], 0)
        self.published += count

    async def _send(self, entries: list[tuple[str, bytes]]) -> None:
        """Add *entries* in one round trip. Safe to repeat: an entry whose id the stream
        already passed was written by an earlier try, unless a newer attempt passed it."""
        key, cap = self._key, self._maxlen
        async with self._redis.pipeline(transaction=False, raise_on_error=False) as pipe:
            replies = [
                pipe.xadd(key, {"k": "e", "d": data}, identifier=ident, trim_strategy=coredis.PureToken.MAXLEN,
                          threshold=cap, trim_operator=coredis.PureToken.APPROXIMATELY)
                for ident, data in entries
            ]  # fmt: skip
        rejected = False
        for reply in replies:
            try:
                await reply
            except coredis.exceptions.ResponseError as exc:
                if "equal or smaller" not in str(exc):
                    raise
                rejected = True
        if rejected:
            top = await self._redis.xrevrange(key, count=1)
            if top and parse_id(top[0].identifier)[0] > self._attempt:
                raise _Superseded
