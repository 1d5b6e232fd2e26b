"""Islands: consecutive sync stages run as one loop over each batch, no channel between them.

An :class:`Island` runs the steps the planner (:mod:`pipeline.stages.plan`) gave it; it
decides nothing about fusion itself. A failing stage does not lose data: what it produced
before the failure still flows through the stages after it, and the error is returned
beside the output, so the caller can deliver both in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, final

from ..errors import PipelineError, StageError
from .fused import Fused

__all__ = ["WHOLE", "ChunkByChunk", "Island", "Step", "step_of", "wrap_error"]

Into = Callable[[list[Any], list[Any]], None]
Flush = Callable[[], Iterable[Any] | None]
Step = tuple[str, Into, Flush]
"""One stage of an island: its name, its batch form ``into(items, out)`` and its ``flush``."""

WHOLE: Final = "parse+accumulate+derive"
"""The name of the default chain fused (in errors and ``Island.names``)."""


def step_of(name: str, logic: Any) -> Step:
    """The step of a sync stage's *logic*: its ``process_into`` when it has one, else a loop
    over ``process``; its ``flush`` when it has one."""
    into = getattr(logic, "process_into", None)
    if not callable(into):
        into = _items_of(logic.process)
    flush = getattr(logic, "flush", None)
    return name, into, flush if callable(flush) else _nothing


def _items_of(process: Callable[[Any], Iterable[Any] | None]) -> Into:
    def process_items(items: list[Any], out: list[Any]) -> None:
        for item in items:
            result = process(item)
            if result is not None:
                out.extend(result)

    return process_items


def _nothing() -> None:
    return None


@final
class Island:
    """Sync stages run one after the other over each batch.

    Args:
        steps: The stages, in order, as the planner made them.
        fused: The whole default chain fused, when that is the island's only step (the
            runner's hot loop then calls its ``process_chunk`` directly).
    """

    __slots__ = ("_steps", "names", "fused")

    def __init__(self, steps: Sequence[Step], fused: Fused | None = None) -> None:
        self.names = tuple(name for name, _, _ in steps)
        self.fused = fused
        # kept instead of the steps when fused: fewer objects per stream
        self._steps = tuple(steps) if fused is None else ()

    @classmethod
    def of_fused(cls, fused: Fused) -> Island:
        """The island of the whole built-in chain fused."""
        island = cls.__new__(cls)
        island.fused = fused
        island.names = (WHOLE,)
        island._steps = ()
        return island

    def run(self, batch: list[Any]) -> tuple[list[Any], BaseException | None]:
        """Run every stage over *batch*; return the output and the first error, or ``None``."""
        fused = self.fused
        if fused is not None:
            out: list[Any] = []
            try:
                fused.process_chunks(batch, out)
            except Exception as exc:
                return out, wrap_error(WHOLE, exc)
            return out, None
        error: BaseException | None = None
        for name, into, _ in self._steps:
            out = []
            try:
                into(batch, out)
            except Exception as exc:
                if error is None:
                    error = wrap_error(name, exc)
            batch = out
        return batch, error

    def finish(self) -> tuple[list[Any], BaseException | None]:
        """End of input: flush every stage, each flush passing through the later stages."""
        if self.fused is not None:
            try:
                return self.fused.flush(), None
            except Exception as exc:
                return [], wrap_error(WHOLE, exc)
        error: BaseException | None = None
        batch: list[Any] = []
        for name, into, flush in self._steps:
            out: list[Any] = []
            try:
                if batch:
                    into(batch, out)
                if error is None:
                    tail = flush()
                    if tail:
                        out.extend(tail)
            except Exception as exc:
                if error is None:
                    error = wrap_error(name, exc)
            batch = out
        return batch, error


@final
class ChunkByChunk:
    """Any island with the fused chain's ``process_chunk(chunk, out)``: its ``run``,
    raising the error it returns."""

    __slots__ = ("_run",)

    def __init__(self, island: Island) -> None:
        self._run = island.run

    def process_chunk(self, chunk: bytes, out: list[Any], call: object = None, kinds: object = None) -> int:
        """Run the island over *chunk*, appending its output to *out*; return 0 (*call*
        and *kinds* are not used: a user stage's output goes through the runner's checks)."""
        done, error = self._run([chunk])
        out.extend(done)
        if error is not None:
            raise error
        return 0


def wrap_error(name: str, exc: Exception) -> BaseException:
    """*exc* as the error of stage *name*: a PipelineError as it is, anything else as a StageError."""
    if isinstance(exc, PipelineError):
        return exc
    error = StageError(name, exc)
    error.__cause__ = exc
    return error
