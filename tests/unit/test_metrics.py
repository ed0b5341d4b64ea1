"""Backup metrics, read back with the client's own registry API."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from backup_agent import manifest, runs
from backup_agent.metrics import Metrics
from backup_agent.state import State

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

    job = state.job("mysql", "full")
    job.last_run, job.last_success, job.last_duration, job.last_bytes = 1000.0, 1060.0, 60.0, 5000
    runs.publish(metrics, state, loaded.services["mysql"])
    assert value(registry, "backup_last_success_timestamp_seconds", service="mysql") == 1060
    assert value(registry, "backup_last_run_success", service="mysql") == 1
    assert value(registry, "backup_last_read_bytes", service="mysql") == 5000

    job.last_run, job.last_duration = 2000.0, 3.0  # a later attempt that failed
    runs.publish(metrics, state, loaded.services["mysql"])
    assert value(registry, "backup_last_run_success", service="mysql") == 0
    assert value(registry, "backup_last_success_timestamp_seconds", service="mysql") == 1060
    assert value(registry, "backup_last_attempt_timestamp_seconds", service="mysql") == 2000


def test_the_state_file_is_shared_between_processes(tmp_path: Path) -> None:
    """Two State objects on one file (agent and operator) keep each other's records."""
    agent, operator = State(str(tmp_path)), State(str(tmp_path))
    agent.job("db", "full").last_success = 1.0
    agent.save_job("db", "full")
    operator.job("files", "full").last_success = 2.0
    operator.save_job("files", "full")
    agent.job("db", "full").last_success = 3.0
    agent.save_job("db", "full")
    again = State(str(tmp_path))
    assert again.job("db", "full").last_success == 3.0
    assert again.job("files", "full").last_success == 2.0
    agent.reload()
    assert agent.known("files", "full")
