"""`backup-agent plan`: upcoming runs, overlaps and simulated restore points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from backup_agent import drill, manifest, plan

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


def with_method(tmp_path: Path, method: str) -> manifest.Manifest:
    """agama.yaml with ``mysql.method`` set (binlogs need dumps: removed for physical)."""
    data: dict[str, Any] = yaml.safe_load(AGAMA.read_text())
    data["services"]["mysql"]["mysql"]["method"] = method
    if method == "physical":
        del data["services"]["mysql"]["binlog"]
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(data))
    return manifest.load(path)


def drilled(tmp_path: Path, *results: drill.DrillResult) -> dict[str, Any]:
    """The drill report after ``results``, one drill run each, read back."""
    path = str(tmp_path / "report.json")
    for result in results:
        drill.update_report(path, [result], {"passed": True})
    return drill.read_report(path)


def drill_of(method: str, size: int, seconds: float, passed: bool = True) -> drill.DrillResult:
    snapshot = "abc" if passed else None
    return drill.DrillResult(
        "mysql", passed, seconds, 1800.0, 7200.0, 1.8e9, snapshot, [], None, size, method
    )


def test_without_a_drill_the_restore_time_is_not_measured_yet() -> None:
    text = plan.render(manifest.load(AGAMA), START, {})
    assert (
        "Expected restore time (newest backup / throughput of the last drill by its method):"
        in text
    )
    assert "  mysql        logical  not measured yet (no drill has restored by this method)" in text
    assert "physical" not in text  # agama.yaml makes dumps only
    assert "grafana   " not in text.split("Expected restore time")[1]  # MySQL only


def test_the_expected_restore_time_is_the_newest_size_over_the_drilled_throughput(
    tmp_path: Path,
) -> None:
    """The physical drill measured 500 MB in 100 s (5 MB/s), the logical one 200 MB in
    400 s (0.5 MB/s): with 1 GB backed up by each, 200 s and 2000 s, which is above the
    30-minute RTO target. A later failed drill measures nothing and keeps both."""
    loaded = with_method(tmp_path, "both")
    report = drilled(
        tmp_path,
        drill_of("physical", 500_000_000, 100.0),
        drill_of("logical", 200_000_000, 400.0),
        drill_of("logical", 0, 3.0, passed=False),
    )
    rates = plan.restore_rates(report)
    assert rates["mysql"]["physical"] == plan.RestoreRate(500_000_000, 100.0, 1.8e9)
    sizes = {"mysql": {"logical": 1_000_000_000, "physical": 1_000_000_000}}
    text = plan.render(loaded, START, {}, rates, sizes)
    assert (
        "  mysql        logical  ~33m for 1000 MB at 0.5 MB/s (drill of 2027-01-15: 200 MB in 7m)"
        "  WARNING: above the RTO target 30m"
    ) in text
    physical = "physical ~3m for 1000 MB at 5.0 MB/s (drill of 2027-01-15: 500 MB in 100s)"
    assert f"  mysql        {physical}\n" in f"{text}\n"  # within its target: no warning


def test_a_measured_method_without_a_backup_size_says_so(tmp_path: Path) -> None:
    loaded = with_method(tmp_path, "physical")
    rates = plan.restore_rates(drilled(tmp_path, drill_of("physical", 500_000_000, 100.0)))
    text = plan.render(loaded, START, {}, rates, {})
    assert "  mysql        physical size of the newest backup unknown (drill of 2027-01-15" in text
    assert "logical" not in text.split("Expected restore time")[1]
