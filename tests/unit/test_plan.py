"""`backup-agent plan`: upcoming runs, overlaps and simulated restore points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from backup_agent import manifest, plan

AGAMA = Path(__file__).resolve().parents[2] / "manifests" / "agama.yaml"
START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_the_reference_policy_has_no_overlaps_and_says_grafana_keeps_one_point() -> None:
    loaded = manifest.load(AGAMA)
    runs = plan.upcoming_runs(loaded, START, {})
    assert plan.overlaps(runs) == []
    kinds = {(r.owner, r.what) for r in runs}
    assert {("mysql", "full"), ("files", "incremental"), ("files", "full")} <= kinds
    assert ("grafana", "full") in kinds  # the 28th falls in the two weeks from Nov 26
    assert {("maintenance", "retention"), ("maintenance", "check")} <= kinds
    points = {
        s: plan.simulate_retention(loaded, loaded.services[s], START) for s in loaded.services
    }
    assert points["grafana"].fewest == 1  # monthly with keep_within 3w: one restore point
    assert points["mysql"].fewest >= 21 and points["files"].fewest >= 21
    assert points["mysql"].oldest_max <= timedelta(days=22)
    text = plan.render(loaded, START, {})
    assert "grafana      restore points 1-1" in text and "WARNING" in text
    assert "Overlaps: none" in text


def test_measured_durations_reveal_overlaps(tmp_path: Path) -> None:
    data: dict[str, Any] = yaml.safe_load(AGAMA.read_text())
    data["services"]["mysql"]["schedule"] = "30 23 * * *"  # 23:30, half an hour before files
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    loaded = manifest.load(path)
    assert plan.overlaps(plan.upcoming_runs(loaded, START, {})) == []  # 10 min expected
    clashes = plan.overlaps(plan.upcoming_runs(loaded, START, {"mysql": timedelta(hours=1)}))
    assert clashes and all({a.owner, b.owner} == {"mysql", "files"} for a, b in clashes)
    assert "files/incremental starts while mysql/full" in plan.render(
        loaded, START, {"mysql": timedelta(hours=1)}
    )


def test_the_drill_is_planned_too() -> None:
    """The verifier's weekly drill is listed (Monday 06:00) with the other runs."""
    loaded = manifest.load(AGAMA)
    drills = [r for r in plan.upcoming_runs(loaded, START, {}) if r.what == "drill"]
    assert [r.start.strftime("%a %H:%M") for r in drills] == ["Mon 06:00", "Mon 06:00"]
    assert all(r.owner == "verifier" for r in drills)
    assert "verifier     drill" in plan.render(loaded, START, {})


def test_the_point_in_time_window_over_a_year() -> None:
    """agama.yaml ships MySQL's binlogs every 5 minutes: shipping is summed up, not
    listed or counted in the overlaps, and the window runs from the oldest dump kept
    (3 weeks and the hours to the next retention run) to the newest shipment."""
    loaded = manifest.load(AGAMA)
    runs = plan.upcoming_runs(loaded, START, {})
    assert not any(r.what == "binlog" for r in runs)
    window = plan.simulate_window(loaded, loaded.services["mysql"], START)
    assert timedelta(days=21) <= window.shortest <= window.longest <= timedelta(days=22)
    text = plan.render(loaded, START, {})
    assert "(and every 5m: mysql binlog shipping, 288 runs a day, not listed)" in text
    assert "Point-in-time recovery (binlogs shipped between dumps), simulated over a year:" in text
    assert "mysql        any second of the last 21." in text and "to within 5m" in text


def test_without_binlogs_there_is_no_window(tmp_path: Path) -> None:
    data: dict[str, Any] = yaml.safe_load(AGAMA.read_text())
    del data["services"]["mysql"]["binlog"]
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    text = plan.render(manifest.load(path), START, {})
    assert "binlog" not in text and "Point-in-time" not in text


def test_a_shorter_retention_shortens_the_window(tmp_path: Path) -> None:
    data: dict[str, Any] = yaml.safe_load(AGAMA.read_text())
    data["retention"] = {"keep_within": "1w", "max_age": "10d"}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    loaded = manifest.load(path)
    window = plan.simulate_window(loaded, loaded.services["mysql"], START)
    assert timedelta(days=7) <= window.shortest <= window.longest <= timedelta(days=8)
