"""A custom stage slotted between ``parse`` and ``accumulate``: redact e-mail addresses.

The stage sees raw events, so the live text *and* the final message are redacted. An
address split across two deltas is caught too: the stage holds back a text tail that could
still be the start of an address until the next delta (or the block's end) decides it.

    python examples/redaction_stage.py
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable
from typing import Any

import anyio

import pipeline
from pipeline.testing import StreamBuilder, aiter_chunks, chunk_events

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
WORDLIKE = re.compile(r"[\w.+@-]*\Z")  # a tail that may still grow into an address


class RedactEmails:
    """A sync stage spec; ``open()`` makes the per-stream logic (it holds a text tail)."""

    name = "redact_emails"

    def open(self) -> _Redactor:
        return _Redactor()


class _Redactor:
    def __init__(self) -> None:
        self.held: dict[int, str] = {}  # block index -> text not yet released

    def process(self, event: Any) -> list[Any]:
        if isinstance(event, pipeline.ContentBlockDeltaEvent) and isinstance(event.delta, pipeline.TextDelta):
            text = self.held.pop(event.index, "") + event.delta.text
            cut = WORDLIKE.search(text)
            start = cut.start() if cut else len(text)
            ready, self.held[event.index] = text[:start], text[start:]
            return [self._delta(event.index, ready)] if ready else []
        if isinstance(event, pipeline.RawContentBlockStopEvent) and self.held.get(event.index):
            return [self._delta(event.index, self.held.pop(event.index)), event]
        return [event]

    @staticmethod
    def _delta(index: int, text: str) -> pipeline.ContentBlockDeltaEvent:
        return pipeline.ContentBlockDeltaEvent(index=index, delta=pipeline.TextDelta(text=EMAIL.sub("[email]", text)))


def demo_source() -> AsyncIterable[bytes]:
    pieces = ["Write to ", "ada.lovelace", "@exam", "ple.org or ", "to charles@", "babbage.co.uk", " today."]
    return aiter_chunks(chunk_events(StreamBuilder(seed=1).text_block(pieces).build()))


async def main(source: AsyncIterable[bytes] | None = None) -> str:
    stages = [pipeline.parse(), RedactEmails(), pipeline.accumulate(), pipeline.derive()]
    async with pipeline.open_stream(source or demo_source(), stages=stages) as stream:
        async for text in stream.text_stream:
            print(repr(text))
        final = await stream.get_final_text()
    print("final:", final)
    return final


if __name__ == "__main__":
    anyio.run(main)
