"""Derived events as portable JSON: the one outbound encoding of what a pipeline concluded.

Whatever sends derived events out of the process encodes them here, so every reader sees
one shape: the Redis publisher (:mod:`pipeline.redis_jobs`, one JSON list per events entry)
today; a browser relay, the fake server and :mod:`pipeline.testing` are to share it.

* :func:`event_dict` is one event as a dict: its ``to_dict()`` (the SDK's shape) without
  the ``snapshot`` of a :class:`~.events.SnapshotEvent` (text, thinking, input JSON and
  citation events), which says its own shape (``without_snapshot()``).
* :func:`encode_derived` is a batch of events as the bytes of one JSON list of those dicts.

Snapshots are left out because each one holds the whole block so far: sending one with
every delta makes the bytes sent grow with the square of the block's length. A reader
rebuilds a snapshot from the deltas it received (joining text or thinking, collecting
citations, parsing the joined partial JSON of a tool input). Everything else is kept as
``to_dict()`` gives it; the one datetime a message holds (``container.expires_at``) is
written as an RFC 3339 string.

Sans-IO: imports the event vocabulary and msgspec only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec

from .events import DerivedEvent, SnapshotEvent

__all__ = ["encode_derived", "event_dict"]

_encode: Final = msgspec.json.Encoder().encode


def event_dict(event: DerivedEvent) -> dict[str, Any]:
    """Return *event* as a portable dict: ``event.to_dict()`` without its ``snapshot``."""
    return event.without_snapshot() if isinstance(event, SnapshotEvent) else event.to_dict()


def encode_derived(events: Iterable[DerivedEvent]) -> bytes:
    """Encode *events* as one JSON list of their :func:`event_dict` dicts."""
    return _encode([event_dict(event) for event in events])
