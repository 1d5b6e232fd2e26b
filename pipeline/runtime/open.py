"""The entry points of a stream: :func:`open_stream` for one source, and :class:`Pipeline`,
a reusable configuration for many (a worker's, for instance)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from typing import Any, final

from ..core.limits import Limits
from ..stages.specs import resolve
from .stream import MessageStream

__all__ = ["Pipeline", "open_stream"]


def open_stream(
    source: AsyncIterable[bytes] | Any,
    *,
    subscribers: Sequence[object] = (),
    stages: Sequence[Any] = (),
    allow_incomplete: bool = False,
    idle_timeout: float | None = None,
    limits: Limits | None = None,
) -> MessageStream:
    """Open a streaming message over *source*; use the result with ``async with``.

    Args:
        source: An ``AsyncIterable[bytes]`` of the SSE body, cut anywhere, or an
            ``httpx.Response`` opened with ``stream=True``. It is closed when the stream
            closes.
        subscribers: Objects with ``on_*`` callbacks, or :class:`Subscription`\\ s.
        stages: User stages to run after the built-in chain; or the whole chain, when it
            contains a built-in stage (``parse()``, ``accumulate()``, ``derive()``), to
            slot stages in between.
        allow_incomplete: Finish with the partial message when the stream ends without
            ``message_stop`` (the SDK's behaviour) instead of raising.
        idle_timeout: Fail with :class:`~pipeline.errors.IdleTimeoutError` (and close the
            source) when it sends nothing for this many seconds; ``None`` waits forever.
            Pings count as activity: the API pings idle streams, so a few tens of seconds
            is a safe choice.
        limits: What the stream may send before it fails with
            :class:`~pipeline.errors.LimitExceededError` (see :class:`~pipeline.Limits`);
            ``None``: the defaults, far above what the API sends.
    """
    return MessageStream(
        source,
        stages=stages,
        subscribers=subscribers,
        allow_incomplete=allow_incomplete,
        idle_timeout=idle_timeout,
        limits=limits,
    )


@final
class Pipeline:
    """A reusable configuration: stages, subscribers and options for many streams.

    Stage specs are opened afresh for each stream; subscriber objects are shared.
    """

    __slots__ = ("stages", "subscribers", "allow_incomplete", "idle_timeout", "limits")

    def __init__(
        self,
        *,
        stages: Sequence[Any] = (),
        subscribers: Sequence[object] = (),
        allow_incomplete: bool = False,
        idle_timeout: float | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.stages = tuple(stages)
        self.subscribers = tuple(subscribers)
        self.allow_incomplete = allow_incomplete
        self.idle_timeout = idle_timeout
        self.limits = limits
        resolve(self.stages)  # validate early

    def open_stream(self, source: AsyncIterable[bytes] | Any, *, subscribers: Sequence[object] = ()) -> MessageStream:
        """Open a stream over *source* with this configuration (plus *subscribers*)."""
        return MessageStream(
            source,
            stages=self.stages,
            subscribers=(*self.subscribers, *subscribers),
            allow_incomplete=self.allow_incomplete,
            idle_timeout=self.idle_timeout,
            limits=self.limits,
        )
