"""Helpers that several test modules share."""

from __future__ import annotations

import anyio

import pipeline


class GatedSubscriber:
    """An async subscriber that waits on ``gate`` before handling each text event."""

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.texts: list[str] = []

    async def on_text(self, event: pipeline.TextEvent) -> None:
        await self.gate.wait()
        self.texts.append(event.text)


def record_backoffs(client: pipeline.MessagesClient, into: list[float]) -> None:
    """Make *client* append to *into* each delay it waits before a retry (then wait it)."""
    original = client._backoff

    async def spy(attempt: int, retry_after: float | None, reason: str) -> None:
        into.append(client.retry.delay(attempt, retry_after))
        await original(attempt, retry_after, reason)

    client._backoff = spy  # type: ignore[method-assign]
