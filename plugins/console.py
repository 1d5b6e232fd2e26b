"""Console printer: write text (and optionally thinking) to a terminal as it streams."""

from __future__ import annotations

import sys
from typing import TextIO, final

import pipeline

__all__ = ["ConsolePrinter"]


@final
class ConsolePrinter:
    """A sync subscriber that prints text deltas live.

    Args:
        file: Where to write (default: standard output).
        thinking: Also print thinking deltas (dimmed when the file is a terminal).
        end: Written once when the message stops.
    """

    def __init__(self, file: TextIO | None = None, *, thinking: bool = False, end: str = "\n") -> None:
        self.file = file or sys.stdout
        self.thinking = thinking
        self.end = end
        self._tty = self.file.isatty()

    def on_text(self, event: pipeline.TextEvent) -> None:
        self.file.write(event.text)
        self.file.flush()

    def on_thinking(self, event: pipeline.ThinkingEvent) -> None:
        if self.thinking:
            self.file.write(f"\x1b[2m{event.thinking}\x1b[0m" if self._tty else event.thinking)
            self.file.flush()

    def on_message(self, message: pipeline.Message) -> None:
        self.file.write(self.end)
        self.file.flush()
