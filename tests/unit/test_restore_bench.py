"""The restore bench's bookkeeping: pair order, medians and ratios, the README tables."""

from __future__ import annotations

from bench.agent_run import Sample
from bench.restore_bench import SIDES, run_pair, summarize, table


def test_the_agent_and_the_raw_tools_take_turns_going_first() -> None:
    order: list[list[str]] = []

    def run(side: str) -> dict[str, Sample]:
        order[-1].append(side)
        return {}

    for index in range(3):
        order.append([])
        run_pair(index, run)
    forward = ["agent", "physical", "raw"]
    assert order == [forward, forward[::-1], forward]


def agent(seconds: float, peak: float) -> Sample:
    return Sample(seconds, 1.0, 2.0, peak, peak - 5)


def test_medians_ratios_and_the_tables() -> None:
    """Two pairs: the drill takes 1.5x and 2x the raw restore, the physical restore a
    quarter and a fifth; the tables print restores as raw / agent."""
    pairs = [
        {
            "agent": {"restore": agent(30.0, 50.0)},
            "physical": {"restore": agent(5.0, 45.0)},
            "raw": {"restore": Sample(20.0, 0.1, 3.0)},
        },
        {
            "agent": {"restore": agent(40.0, 52.0)},
            "physical": {"restore": agent(4.0, 44.0)},
            "raw": {"restore": Sample(20.0, 0.1, 3.0)},
        },
    ]
    summary = summarize(pairs)["restore"]
    assert summary["ratio_over_raw_per_pair"] == {"agent": [1.5, 2.0], "physical": [0.25, 0.2]}
    assert summary["median_seconds"] == {"agent": 35.0, "physical": 4.5, "raw": 20.0}
    assert summary["rss_peak_mib_max"] == {"agent": 52.0, "physical": 45.0}
    backups = {side: {"first": agent(10.0, 40.0), "unchanged": agent(5.0, 41.0)} for side in SIDES}
    entry = {
        "shape": "big",
        "dump_bytes": 250_000_000,
        "physical_bytes": 400_000_000,
        **summarize([backups, backups]),
        "restore": summary,
    }
    printed = table({"results": [entry]})
    assert "| 35.0 s / 20.0 s | **0.58x** (0.67, 0.50) |" in printed
    assert "| big | 250 MB / 400 MB | 10.0 s / 10.0 s | **1.00x** (1.00, 1.00) |" in printed
    assert "| 4.5 s / 20.0 s | **4.50x** (4.00, 5.00) |" in printed
    assert "| big | 250 MB | 41 MiB (+5) | 52 MiB (+5) | 41 MiB (+5) | 45 MiB (+5) |" in printed
