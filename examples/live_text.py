"""Print a message's text live, as it streams, with an ``on_text`` callback.

Runs on an embedded, generated stream (no API key, no network)::

    python examples/live_text.py
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterable

import anyio

import pipeline
from pipeline.testing import StreamBuilder, aiter_chunks, chunk_events


def demo_source() -> AsyncIterable[bytes]:
    """A generated stream: one SSE event per network chunk, as a live response sends it."""
    words = "Streams arrive as server-sent events; sse-pipeline turns them into text, live. ".split(" ")
    body = StreamBuilder(seed=7).text_block([w + " " for w in words if w] * 3).build()
    return aiter_chunks(chunk_events(body), checkpoint=True)


async def main(source: AsyncIterable[bytes] | None = None) -> pipeline.Message:
    async with pipeline.open_stream(source or demo_source()) as stream:

        @stream.on_text
        def show(event: pipeline.TextEvent) -> None:
            sys.stdout.write(event.text)
            sys.stdout.flush()

        message = await stream.get_final_message()
    usage = message.usage
    print(f"\n[{message.stop_reason}: {usage.input_tokens} tokens in, {usage.output_tokens} out]")
    return message


if __name__ == "__main__":
    anyio.run(main)
