"""``pipeline.core.encode``: derived events as portable JSON (what the Redis publisher sends)."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest

import pipeline
from pipeline.core.encode import encode_derived, event_dict
from pipeline.core.events import DerivedEvent, MessageStartEvent, PingEvent
from pipeline.testing import aiter_chunks, all_bodies, all_cases, chunk_events

CASES = sorted(all_cases())


async def derived_events(name: str) -> list[Any]:
    """The derived events the pipeline gives for the body of case *name*."""
    async with pipeline.open_stream(aiter_chunks(chunk_events(all_bodies()[name]))) as stream:
        return [event async for event in stream]


def without_snapshot(event: Any) -> dict[str, Any]:
    expected: dict[str, Any] = event.to_dict()
    expected.pop("snapshot", None)
    return expected


async def test_the_cases_cover_every_published_derived_type() -> None:
    """Every derived event type but ping (never published) occurs in some case."""
    seen = {type(event) for name in CASES for event in await derived_events(name)}
    assert seen == set(typing.get_args(DerivedEvent)) - {PingEvent}


@pytest.mark.parametrize("name", CASES)
async def test_event_dict_is_to_dict_without_snapshot(name: str) -> None:
    for event in await derived_events(name):
        assert event_dict(event) == without_snapshot(event)


@pytest.mark.parametrize("name", CASES)
async def test_encoded_list_decodes_to_the_event_dicts(name: str) -> None:
    events = await derived_events(name)
    decoded = msgspec.json.decode(encode_derived(events))
    assert decoded == [msgspec.to_builtins(event_dict(event)) for event in events]
    assert decoded == [without_snapshot(event) for event in events]


def test_no_events_encode_as_an_empty_list() -> None:
    assert encode_derived([]) == b"[]"


def test_a_datetime_travels_as_its_rfc3339_text() -> None:
    """``container.expires_at`` (a datetime in ``to_dict()``) is written as the text it arrived as."""
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1},
               "container": {"id": "c_1", "expires_at": "2025-01-02T03:04:05Z"}}  # fmt: skip
    event = MessageStartEvent(message=message)
    assert event_dict(event) == event.to_dict()
    [decoded] = msgspec.json.decode(encode_derived([event]))
    assert decoded["message"]["container"]["expires_at"] == "2025-01-02T03:04:05Z"
