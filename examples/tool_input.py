"""Collect a tool call's input as it streams (``on_tool_input``), and its parsed input
when the block completes (``on_content_block``).

The partial snapshot is parsed only because this example reads ``event.snapshot``; a
subscriber that does not read it costs nothing, and the final input is parsed once.

    python examples/tool_input.py
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

import anyio

import pipeline
from pipeline.testing import StreamBuilder, aiter_chunks, chunk_events


class ToolCollector:
    """A subscriber object: its ``on_*`` methods are its callbacks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_tool_input(self, event: pipeline.InputJsonEvent) -> None:
        print(f"  {event.partial_json!r:24} -> {event.snapshot}")

    def on_content_block(self, block: pipeline.ContentBlock) -> None:
        if isinstance(block, pipeline.ToolUseBlock):
            print(f"tool call complete: {block.name}({block.input})")
            self.calls.append((block.name, block.input))


def demo_source() -> AsyncIterable[bytes]:
    builder = StreamBuilder(seed=3).text_block(["Let me check the weather."])
    builder.tool_use_block({"city": "Zürich", "unit": "celsius", "days": [1, 2, 3]}, name="get_weather")
    return aiter_chunks(chunk_events(builder.build(stop_reason="tool_use")))


async def main(source: AsyncIterable[bytes] | None = None) -> list[tuple[str, Any]]:
    collector = ToolCollector()
    async with pipeline.open_stream(source or demo_source(), subscribers=[collector]) as stream:
        message = await stream.get_final_message()
    print("stop_reason:", message.stop_reason)
    return collector.calls


if __name__ == "__main__":
    anyio.run(main)
