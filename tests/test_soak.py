"""The soak run (bench/soak.py), scaled down: 300 streams through one worker with every kind
of fault; each job ends as its fate says, surviving messages are exact, nothing leaks.
The memory slope is a figure of the full run (RELIABILITY.md), not checked here."""

from __future__ import annotations

import pytest

from bench.soak import EXPECTED_ERROR, soak


@pytest.mark.timeout(120)
async def test_a_scaled_down_soak_ends_clean() -> None:
    report = await soak(300, 40, seed=7, sample_every=0.2)
    assert report.wrong == []
    assert (report.leaked_tasks, report.leaked_fds) == (0, 0)
    assert sum(report.outcomes.values()) == 300
    assert set(report.fates) == set(EXPECTED_ERROR)  # every fate was drawn
    clean = sum(n for fate, n in report.fates.items() if EXPECTED_ERROR[fate] is None)
    assert report.outcomes["ok"] == clean
    # every cancelled job closed its connection mid-body; the server saw each one go
    assert report.server["client_disconnects"] >= report.fates["cancelled"]
