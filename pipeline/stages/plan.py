"""The planner: the one place that decides how a chain of stages runs.

A chain (``parse -> accumulate -> derive -> user stages``) is cut into *islands* of
consecutive sync stages; an async stage or a :class:`~pipeline.Boundary` ends an island.
Inside an island, adjacent built-in stages are fused: ``parse``, ``accumulate`` and
``derive`` together become the hand-fused chain (:class:`~pipeline.stages.fused.Fused`,
whose ``process_chunk`` the runner's hot loop calls), ``accumulate`` and ``derive`` alone
become its ``fold``. Fusing changes nothing that a consumer can see (tests/test_fused.py).
Empty islands between two channels are dropped, and adjacent boundaries collapse into one
channel with the larger buffer (Kotlin Flow's channel fusion).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, final

from ..core.accumulate import Accumulator
from ..core.derive import Deriver
from ..providers.anthropic import AnthropicParser
from .fused import Fused
from .island import WHOLE, Island, Step, step_of
from .specs import DEFAULT_CHAIN, Boundary, is_async_stage, open_logic, stage_name

__all__ = ["Plan", "island_of"]


@final
class Plan:
    """Islands and async stages of one stream, in order, their logic opened, ready to run.

    Attributes:
        nodes: :class:`Island` or ``(name, async logic)``, in order; the last is an island.
        last: The last island, run in the consumer's task.
        buffers: The buffer of the channel after each node but the last.
        accumulator: The chain's accumulator (the source of the final message), if any.
    """

    __slots__ = ("nodes", "last", "buffers", "accumulator")

    def __init__(self, chain: Sequence[Any]) -> None:
        if chain is DEFAULT_CHAIN:  # the usual case, planned without looking at the specs
            parse, accumulate, _ = chain  # derive: the fused chain applies its rules itself
            acc = accumulate.open()
            self.accumulator: Accumulator | None = acc
            self.last = Island.of_fused(Fused(acc, parse.open()))
            self.nodes: tuple[Any, ...] = (self.last,)
            self.buffers: tuple[int, ...] = ()
            return
        self.accumulator = None
        parts: list[Any] = []  # Island | (name, async logic) | Boundary
        run: list[tuple[str, Any]] = []  # the sync stages of the island being built
        for spec in chain:
            if isinstance(spec, Boundary):
                parts += [_island(run), spec]
                run = []
                continue
            logic = open_logic(spec)
            if isinstance(logic, Accumulator):
                self.accumulator = logic
            if is_async_stage(logic):
                parts += [_island(run), Boundary(), (stage_name(spec), logic), Boundary()]
                run = []
            else:
                run.append((stage_name(spec), logic))
        parts.append(_island(run))
        self._connect(parts)

    def _connect(self, parts: list[Any]) -> None:
        nodes: list[Any] = []
        buffers: list[int] = []
        pending = 0
        for i, part in enumerate(parts):
            if isinstance(part, Boundary):
                pending = max(pending, part.buffer)
            elif isinstance(part, Island) and not part.names and 0 < i < len(parts) - 1:
                continue
            else:
                if nodes:
                    buffers.append(pending or Boundary().buffer)
                pending = 0
                nodes.append(part)
        self.last = nodes[-1]
        self.nodes = tuple(nodes)
        self.buffers = tuple(buffers)


def island_of(specs: Sequence[Any]) -> Island:
    """Open the sync stage *specs* and plan them as one island (fused where they can be)."""
    return _island([(stage_name(spec), open_logic(spec)) for spec in specs])


def _island(run: list[tuple[str, Any]]) -> Island:
    """Make the island of the opened sync stages *run*, fusing adjacent built-ins."""
    steps: list[Step] = []
    whole: Fused | None = None
    for i, (name, logic) in enumerate(run):
        previous = run[i - 1][1] if i >= 1 else None
        if isinstance(previous, Accumulator) and isinstance(logic, Deriver):
            parser = run[i - 2][1] if i >= 2 else None
            if isinstance(parser, AnthropicParser):  # the whole default chain
                whole = Fused(previous, parser)
                steps[-2:] = [(WHOLE, whole.process_chunks, whole.flush)]
            else:
                fused = Fused(previous)
                steps[-1] = ("accumulate+derive", fused.fold, fused.flush)
        else:
            steps.append(step_of(name, logic))
    return Island(steps, whole if len(steps) == 1 else None)
