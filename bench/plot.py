"""The scaling plot: us per SSE event against stream size, text and tool input, log-log.

Needs matplotlib (the ``bench`` extra); without it the plot is skipped with a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from throughput import Cell

__all__ = ["plot_scaling"]

SERIES = (
    ("ours", "ours", "o-"),
    ("sdk", "sdk (AsyncAnthropic)", "s-"),
    ("floor_decode_async", "floor_decode_async", "^--"),
)


def plot_scaling(cells: Sequence[Cell], path: Path) -> str:
    """Draw us/event of each contender for the text and tool cells; return a status line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return "matplotlib is not installed (`pip install matplotlib`): no plot"
    groups = {
        "text": [c for c in cells if c.workload.startswith("text")],
        "tool input": [c for c in cells if c.workload.startswith("tool")],
    }
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for ax, (title, group) in zip(axes, groups.items(), strict=True):
        for name, label, style in SERIES:
            points = [(c.bytes / 1e6, c.us_per_event(name)) for c in group]
            xs = [x for x, y in points if y is not None]
            ys = [y for _, y in points if y is not None]
            if xs:
                ax.plot(xs, ys, style, label=label)
        for c in group:
            ax.annotate(
                c.workload,
                (c.bytes / 1e6, c.us_per_event("ours") or 1),
                textcoords="offset points",
                xytext=(0, -12),
                ha="center",
                fontsize=7,
            )
        ax.set(
            xscale="log",
            yscale="log",
            title=f"{title} (live: one SSE event per chunk)",
            xlabel="body size (MB)",
            ylabel="us per SSE event (median)",
        )
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot written to {path}"
