"""Backup metrics, read back with the client's own registry API."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from backup_agent import manifest
from backup_agent.metrics import Metrics
from backup_agent.repository_errors import REASONS
from backup_agent.state import Run, State, backup_task

AGAMA = Path(__file__).resolve().parents[2] / "manifests" / "agama.yaml"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[CollectorRegistry, Metrics, State, manifest.Manifest]:
    loaded = manifest.load(AGAMA)
    registry = CollectorRegistry()
    metrics = Metrics(registry, "backup")
    metrics.declare(loaded, list(loaded.services))
    return registry, metrics, State(str(tmp_path)), loaded


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_targets_come_from_the_manifest(
    setup: tuple[CollectorRegistry, Metrics, State, manifest.Manifest],
) -> None:
    registry, _, _, _ = setup
    assert value(registry, "backup_rpo_seconds", service="mysql") == 86400
    assert value(registry, "backup_rpo_seconds", service="grafana") == 32 * 86400
    assert value(registry, "backup_rto_target_seconds", service="files") == 1800
    assert value(registry, "backup_rto_limit_seconds", service="files") == 7200
    assert value(registry, "backup_agent_build_info", role="backup", version="0.1.0") == 1


def test_never_ran_succeeded_and_failed_look_different(
    setup: tuple[CollectorRegistry, Metrics, State, manifest.Manifest],
) -> None:
    registry, metrics, state, loaded = setup
    # Never ran: last success 0 (the freshness alert fires), no result, no runs counted.
    assert value(registry, "backup_last_success_timestamp_seconds", service="mysql") == 0
    assert value(registry, "backup_last_run_success", service="mysql") is None
    assert value(registry, "backup_runs_total", service="mysql", kind="full", result="success") == 0

    mysql = loaded.services["mysql"]

    def succeeded(run: Run) -> None:
        run.last_run, run.last_success, run.last_duration, run.last_bytes = 1000, 1060, 60, 5000

    state.update(backup_task("mysql", "full"), succeeded)
    metrics.publish_backups(mysql, state)
    assert value(registry, "backup_last_success_timestamp_seconds", service="mysql") == 1060
    assert value(registry, "backup_last_run_success", service="mysql") == 1
    assert value(registry, "backup_last_read_bytes", service="mysql") == 5000

    def failed(run: Run) -> None:
        run.last_run, run.last_duration = 2000.0, 3.0  # a later attempt that failed

    state.update(backup_task("mysql", "full"), failed)
    metrics.publish_backups(mysql, state)
    assert value(registry, "backup_last_run_success", service="mysql") == 0
    assert value(registry, "backup_last_success_timestamp_seconds", service="mysql") == 1060
    assert value(registry, "backup_last_attempt_timestamp_seconds", service="mysql") == 2000


def test_failure_causes_start_at_zero(
    setup: tuple[CollectorRegistry, Metrics, State, manifest.Manifest],
) -> None:
    """Every cause exists at zero from the start: the first failure is an increase that
    BackupServerUnreachable sees (a series that appears at 1 has no increase)."""
    registry = setup[0]
    for reason in ("server_unreachable", "access_refused", "repository_not_writable", "timeout"):
        assert value(registry, "backup_failures_total", service="files", reason=reason) == 0


def test_the_size_limit_is_published_by_the_maintenance_role() -> None:
    loaded = manifest.load(AGAMA)
    registry = CollectorRegistry()
    Metrics(registry, "maintenance").declare_limits(loaded)
    assert value(registry, "backup_repository_size_limit_bytes") == 0  # agama.yaml sets none
    limited = dataclasses.replace(loaded, size_limit=500 * 2**30)
    registry = CollectorRegistry()
    Metrics(registry, "maintenance").declare_limits(limited)
    assert value(registry, "backup_repository_size_limit_bytes") == 500 * 2**30


def test_failures_are_counted_by_reason_from_the_state_file(
    setup: tuple[CollectorRegistry, Metrics, State, manifest.Manifest], tmp_path: Path
) -> None:
    """A one-shot run (another process, its own State) counts in the agent's metric."""
    registry, metrics, state, loaded = setup
    files = loaded.services["files"]

    def failed(reason: str) -> Callable[[Run], None]:
        def change(run: Run) -> None:
            run.last_run = 3000.0
            run.failures[reason] = run.failures.get(reason, 0) + 1

        return change

    one_shot = State(str(tmp_path))
    one_shot.update(backup_task("files", "incremental"), failed("server_unreachable"))
    one_shot.update(backup_task("files", "full"), failed("server_unreachable"))
    one_shot.update(backup_task("files", "full"), failed("wrong_password"))
    assert value(registry, "backup_failures_total", service="files", reason="wrong_password") == 0
    state.reload()
    metrics.publish_backups(files, state)
    unreachable = {"service": "files", "reason": "server_unreachable"}
    assert value(registry, "backup_failures_total", **unreachable) == 2
    assert value(registry, "backup_failures_total", service="files", reason="wrong_password") == 1


def test_every_named_cause_starts_at_zero(
    setup: tuple[CollectorRegistry, Metrics, State, manifest.Manifest],
) -> None:
    """Also the S3 store's own causes (clock_skew, wrong_endpoint)."""
    registry = setup[0]
    assert {"clock_skew", "wrong_endpoint"} <= set(REASONS)
    for reason in REASONS:
        assert value(registry, "backup_failures_total", service="files", reason=reason) == 0
