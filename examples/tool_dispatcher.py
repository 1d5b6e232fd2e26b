"""Run the tools a message calls, each as soon as its ``tool_use`` block completes and
concurrently, then build the ``tool_result`` blocks for the next request.

A tool that raises and a tool name nobody registered are reported in their results
(``is_error``), never raised: the model gets to see the error and try again.

Runs on an embedded, generated stream (no API key, no network)::

    python examples/tool_dispatcher.py
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable
from typing import Any

import anyio
import structlog

import pipeline
from pipeline.testing import StreamBuilder, aiter_chunks, chunk_events
from plugins.tools import ToolDispatcher

tools = ToolDispatcher()

FORECASTS = {"Zürich": "sunny, 21 °C", "Paris": "light rain, 17 °C"}
RATES = {"EUR": 0.94, "USD": 0.80}


@tools.tool
async def get_weather(city: str) -> str:
    await anyio.sleep(0.01)  # a real tool would ask a service here
    return f"{city}: {FORECASTS[city]}"  # a city it does not know is a KeyError


@tools.tool
async def convert(amount: float, currency: str) -> dict[str, Any]:
    return {"amount": round(amount * RATES[currency], 2), "currency": "CHF"}


def demo_source() -> AsyncIterable[bytes]:
    """A generated stream: a short text, then four tool calls, one SSE event per chunk."""
    builder = StreamBuilder(seed=5).text_block(["Let me look ", "that up."])
    builder.tool_use_block({"city": "Zürich"}, name="get_weather", tool_id="toolu_01")
    builder.tool_use_block({"city": "Oslo"}, name="get_weather", tool_id="toolu_02")
    builder.tool_use_block({"amount": 120, "currency": "EUR"}, name="convert", tool_id="toolu_03")
    builder.tool_use_block({"to": "Paris"}, name="book_flight", tool_id="toolu_04")
    return aiter_chunks(chunk_events(builder.build(stop_reason="tool_use")), checkpoint=True)


async def main(source: AsyncIterable[bytes] | None = None) -> list[dict[str, Any]]:
    async with tools:  # owns the calls; leaving it waits for them
        async with pipeline.open_stream(source or demo_source(), subscribers=[tools]) as stream:
            print(await stream.get_final_text())
            message = await stream.get_final_message()
    print(f"{message.stop_reason}: {len(tools.results())} tool calls")
    for result in tools.results():
        outcome = f"error: {result.error!r}" if result.is_error else result.output
        print(f"  {result.tool_use_id} {result.name}({result.input}) -> {outcome}")
    blocks = tools.tool_result_blocks()
    print(f"tool_result blocks for the next request: {len(blocks)}, {sum(b['is_error'] for b in blocks)} errors")
    return blocks


if __name__ == "__main__":
    # tool errors are also logged as structlog warnings; the results above already show them
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    anyio.run(main)
