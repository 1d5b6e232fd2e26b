"""K concurrent paced streams in one asyncio event loop (one core), ours vs the SDK.

Each stream is ``text:200`` (200 text deltas, 206 SSE events) sent one event per chunk by a
paced async generator: event *i* of stream *k* is scheduled at ``start[k] + i / RATE`` and
the generator waits until then on a shared :class:`_Wire` (one timer for every stream,
released at most ``_Wire.RESOLUTION`` late). Stream starts are spread evenly over
``SPREAD`` seconds. GC is on, after a ``gc.freeze()`` of the set-up heap (as in the
per-stream benchmark).
A sync ``on_text`` subscriber (ours) or the ``async for`` loop (SDK, ``event.type == "text"``)
records ``time.perf_counter() - scheduled`` for every text delta, the schedule coming from a
side table (``start[k]`` + the offset of delta *j*). Each run is a fresh subprocess:
CPU is ``time.process_time()``, and RSS per stream is (``VmHWM`` after - ``VmRSS`` before) / K,
the latency table and schedule being allocated before the baseline is read. A cell is run
several times (:func:`run_many`), its figures the medians of its runs.

A run (and a cell, by its medians) is *saturated* when cpu/wall >= 0.95 or p99 latency > 50 ms.

Child usage: ``python bench/many_streams.py CONTENDER K`` (prints one JSON line).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import gc
import json
import math
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec

__all__ = ["DELTAS", "RATE", "SPREAD", "aggregate", "paired_ratios", "run_many", "saturated"]

HERE = Path(__file__).resolve().parent
DELTAS = 200
RATE = 50.0  # events per second per stream
SPREAD = 1.0  # seconds over which the streams start
SATURATED_CPU = 0.95
SATURATED_P99 = 0.050


def saturated(row: dict[str, Any]) -> bool:
    """Whether a measured cell saturated one core (cpu/wall or p99 latency)."""
    return bool(row.get("cpu_wall") is not None and (row["cpu_wall"] >= SATURATED_CPU or row["p99_s"] > SATURATED_P99))


class _Wire:
    """The arrival of every stream's bytes, from one timer for all the streams.

    A stream waiting for its next event parks a future in the slot of its due time; one
    task wakes once per ``RESOLUTION`` and releases every slot that is due. This is how a
    socket's data arrives (the reader is woken, no timer of its own), and it keeps the
    harness cheap: a per-event ``asyncio.sleep`` costs a timer handle and two heap
    operations with Python-level comparisons per event, about 60% of the floor's CPU at
    K = 1,000. Every contender reads its bytes through the same wire.
    """

    RESOLUTION = 0.0005  # a due event is released at most this late (asyncio's own timers
    # are no finer: epoll's timeout is rounded up to the millisecond)

    def __init__(self) -> None:
        self.slots: dict[int, list[asyncio.Future[None]]] = {}
        self.waiting = 0

    def until(self, due: float) -> asyncio.Future[None]:
        """A future that is done once *due* (a ``perf_counter`` time) has passed."""
        future = asyncio.get_running_loop().create_future()
        # released at the first tick after *due*, never before it
        self.slots.setdefault(int(due / self.RESOLUTION) + 1, []).append(future)
        self.waiting += 1
        return future

    async def run(self, stop: asyncio.Event) -> None:
        """Release due futures until *stop* is set and nothing waits."""
        perf, step, slots = time.perf_counter, self.RESOLUTION, self.slots
        released = int(perf() / step) - 1
        while self.waiting or not stop.is_set():
            now = int(perf() / step)
            for slot in range(released + 1, now + 1) if slots else ():
                for future in slots.pop(slot, ()):
                    self.waiting -= 1
                    if not future.done():
                        future.set_result(None)
            released = now
            await asyncio.sleep((now + 1) * step - perf())


async def _paced(wire: _Wire, data: Sequence[bytes], start: float, offsets: Sequence[float]) -> AsyncIterator[bytes]:
    perf = time.perf_counter
    for chunk, offset in zip(data, offsets, strict=True):
        due = start + offset
        if due > perf():
            await wire.until(due)
        yield chunk


class _Latency:
    """Sync ``on_text`` subscriber: writes each delta's due->seen latency into the table."""

    __slots__ = ("base", "j", "lat", "offsets", "start")

    def __init__(self, lat: array.array[float], base: int, start: float, offsets: Sequence[float]) -> None:
        self.lat, self.base, self.start, self.offsets, self.j = lat, base, start, offsets, 0

    def on_text(self, event: object) -> None:
        j = self.j
        self.lat[self.base + j] = time.perf_counter() - (self.start + self.offsets[j])
        self.j = j + 1


async def _child(contender: str, k: int) -> dict[str, Any]:
    from contenders import SdkClient, run_ours
    from memory import reset_peak, status_kib
    from workloads import chunks, make

    import pipeline

    w = make(f"text:{DELTAS}")
    data = chunks(w.body, "live")
    want = w.expected["content"][0]["text"]
    offsets = [i / RATE for i in range(len(data))]
    text_offsets = [offsets[i] for i, c in enumerate(data) if b'"text_delta"' in c]
    assert len(text_offsets) == DELTAS
    sdk = SdkClient() if contender == "sdk" else None
    decode = msgspec.json.Decoder().decode
    for _ in range(3):  # warm-up, unpaced
        if contender != "floor":
            await (sdk.run(data) if sdk is not None else run_ours(data))
    lat = array.array("d", [math.nan]) * (k * DELTAS)
    starts = array.array("d", [0.0]) * k
    good = [0]

    wire = _Wire()

    async def ours(i: int) -> None:
        await wire.until(starts[i])
        sub = _Latency(lat, i * DELTAS, starts[i], text_offsets)
        async with pipeline.open_stream(_paced(wire, data, starts[i], offsets), subscribers=[sub]) as stream:
            message = await stream.get_final_message()
        block = message.content[0]
        good[0] += sub.j == DELTAS and isinstance(block, pipeline.TextBlock) and block.text == want

    async def theirs(i: int) -> None:
        assert sdk is not None
        await wire.until(starts[i])
        key, base, start, j = str(i), i * DELTAS, starts[i], 0
        sdk.sources[key] = lambda: _paced(wire, data, start, offsets)
        async with sdk.stream(key) as stream:
            async for event in stream:
                if event.type == "text":
                    lat[base + j] = time.perf_counter() - (start + text_offsets[j])
                    j += 1
            message = await stream.get_final_message()
        good[0] += j == DELTAS and message.content[0].text == want

    async def floor(i: int) -> None:
        await wire.until(starts[i])
        base, start, j, buf = i * DELTAS, starts[i], 0, b""
        async for chunk in _paced(wire, data, start, offsets):
            buf += chunk
            cut = buf.rfind(b"\n\n")
            if cut < 0:
                continue
            for line in buf[:cut].split(b"\n"):
                if line[:5] == b"data:":
                    obj = decode(line[5:])
                    if obj["type"] == "content_block_delta" and obj["delta"]["type"] == "text_delta":
                        lat[base + j] = time.perf_counter() - (start + text_offsets[j])
                        j += 1
            buf = buf[cut + 2 :]
        good[0] += j == DELTAS

    one = {"ours": ours, "sdk": theirs, "floor": floor}[contender]
    gc.collect()
    gc.freeze()  # the set-up heap (imports, workload, tables), as bench/throughput.py does
    reset = reset_peak()
    rss0 = status_kib("VmRSS")
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(k):
        starts[i] = t0 + 0.05 + SPREAD * i / k
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(wire.run(stop))
        async with asyncio.TaskGroup() as streams:
            for i in range(k):
                streams.create_task(one(i))
        stop.set()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = status_kib("VmHWM")
    values = sorted(x for x in lat if not math.isnan(x))
    events = k * w.wire_events

    def pct(q: float) -> float:
        return values[min(len(values) - 1, int(q * (len(values) - 1)))] if values else math.nan

    return {
        "contender": contender,
        "k": k,
        "events": events,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_wall": cpu / wall,
        "cpu_us_per_event": cpu / events * 1e6,
        "p50_s": pct(0.5),
        "p99_s": pct(0.99),
        "max_s": pct(1.0),
        "rss_per_stream_kib": (peak - rss0) / k,
        "peak_reset": reset,
        "skipped": "",
        "correctness": "ok" if good[0] == k and len(values) == k * DELTAS else f"FAIL: {good[0]}/{k} streams complete",
    }


def run_many(
    ks: list[int],
    contenders: list[str],
    *,
    sdk_max_k: int,
    repeat: int = 1,
    parallel: bool = False,
    timeout: float = 900,
) -> list[dict[str, Any]]:
    """Run every (contender, K) cell *repeat* times, each run in a fresh subprocess; one row
    per cell, in contender then K order, with the median of its runs (:func:`aggregate`).

    The runs go round by round: in each, every K ascending, and at each K the contenders
    one after the other, their order rotated each round, so that the runs of a round share
    the machine's state (the runs of one cell moved by up to 40% in CPU per event, and
    their p99 by 10x). The SDK runs in the first round only: it saturates at a few hundred
    streams, far from any target's edge, and one run of it at K = 1,000 takes half a
    minute; above ``sdk_max_k`` it does not run at all once it saturated at a smaller K.
    With *parallel* (``--quick``: correctness only), every run of every cell starts at once.
    """
    from memory import run_children

    rows = {
        (c, k): {"contender": c, "k": k, "skipped": "", "correctness": "", "runs": []}
        for c in contenders
        for k in sorted(ks)
    }
    todo: list[tuple[dict[str, Any], int]] = []  # parallel: (row, round)
    saturated_at: dict[str, int] = {}
    for round_ in range(repeat):
        for k in sorted(ks):
            for contender in contenders[round_ % len(contenders) :] + contenders[: round_ % len(contenders)]:
                row = rows[contender, k]
                if row["skipped"] or (contender == "sdk" and round_ > 0):
                    continue
                if contender == "sdk" and k > sdk_max_k and "sdk" in saturated_at:
                    row["skipped"] = f"skipped (saturated at K={saturated_at['sdk']})"
                elif parallel:
                    todo.append((row, round_))
                else:
                    result, error = run_children([_command(contender, k)], parallel=False, timeout=timeout)[0]
                    _add_run(row, round_, result, error)
                    if result is not None and saturated(result):
                        saturated_at.setdefault(contender, k)
    if todo:
        results = run_children([_command(r["contender"], r["k"]) for r, _ in todo], parallel=True, timeout=timeout)
        for (row, round_), (result, error) in zip(todo, results, strict=True):
            _add_run(row, round_, result, error)
    return [aggregate(row) for row in rows.values()]


_MEDIAN_FIELDS = ("wall_s", "cpu_s", "cpu_wall", "cpu_us_per_event", "p50_s", "p99_s", "max_s", "rss_per_stream_kib")


def _add_run(row: dict[str, Any], round_: int, result: dict[str, Any] | None, error: str) -> None:
    if result is None:
        row["correctness"] = row["correctness"] or error
    else:
        row["runs"].append({**result, "round": round_})


def aggregate(row: dict[str, Any]) -> dict[str, Any]:
    """Fill *row* with the median of each measured figure over its runs (``runs``), and
    its correctness: ``ok`` if every run was, else the first failure."""
    runs = row["runs"]
    if not runs:
        return row
    row["events"] = runs[0]["events"]
    for field in _MEDIAN_FIELDS:
        row[field] = statistics.median(r[field] for r in runs)
    bad = next((r["correctness"] for r in runs if r["correctness"] != "ok"), None)
    row["correctness"] = row["correctness"] or bad or "ok"
    return row


def paired_ratios(rows: Sequence[dict[str, Any]], k: int, field: str = "cpu_us_per_event") -> list[float]:
    """Ours' *field* over the floor's at *k*, run by run: the two runs of the same round."""
    by = {r["contender"]: {run["round"]: run[field] for run in r.get("runs", ())} for r in rows if r["k"] == k}
    ours, floor = by.get("ours", {}), by.get("floor", {})
    return [ours[n] / floor[n] for n in sorted(ours.keys() & floor.keys()) if floor[n]]


def _command(contender: str, k: int) -> list[str]:
    return [str(HERE / "many_streams.py"), contender, str(k)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("contender", choices=["ours", "sdk", "floor"])
    parser.add_argument("k", type=int)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_child(args.contender, args.k))))


if __name__ == "__main__":
    main()
