"""Run one contender over one workload a number of times, for an instruction counter.

Timing on a shared machine moves by tens of percent; instruction counts do not. Run this
under callgrind (or cachegrind) twice, with ``--runs 1`` and ``--runs 3``: the difference,
halved, is the cost of one more stream in a warm process (start-up, imports and the
warm-up run cancel out)::

    for runs in 1 3; do
        PYTHONHASHSEED=0 setarch -R valgrind --tool=callgrind \\
            python bench/instructions.py ours live citations --runs $runs
    done

``setarch -R`` turns address-space randomisation off, so that a count repeats exactly
(identity-hashed lookups and the heap's layout follow the addresses); compare checkouts
whose paths have the same length, since the path moves the heap too (up to 1% here).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contenders import make_runners  # noqa: E402
from workloads import SHAPES, chunks, make  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("contender", choices=["ours", "floor_decode", "floor_decode_async"])
    parser.add_argument("shape", choices=SHAPES)
    parser.add_argument("workload", help="a workload name (text, citations, tool:30000, ...)")
    parser.add_argument("--runs", type=int, default=1, help="streams after the warm-up (default 1)")
    args = parser.parse_args(argv)
    data = chunks(make(args.workload).body, args.shape)
    run = make_runners(None)[args.contender]

    async def go() -> None:
        await run(chunks(make("text:50").body, args.shape))  # warm-up: imports, caches
        for _ in range(args.runs):
            await run(data)

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
