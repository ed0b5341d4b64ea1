"""A backup server that is down, a repository that is missing and a wrong password: each
is named for what it is, within the pre-flight's bound, before any source is read."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from backup_agent import repository_errors as causes
from backup_agent import repository_guard
from tests.agent_process import Agent, Finished, metric, one_shot
from tests.conftest import wait_for
from tests.faults.conftest import (
    REPO,
    Database,
    Site,
    checked_line,
    failures,
    files_service,
    metrics_port,
    one_error,
)
from tests.net import HOST, free_port
from tests.prometheus import Prometheus

pytestmark = pytest.mark.integration

# The pre-flight gives up after its retry budget; restic then gets a grace period.
PREFLIGHT_BOUND = repository_guard.PREFLIGHT.retry_budget + repository_guard.PREFLIGHT.grace + 5


@pytest.mark.timeout(120)
def test_wrong_password_missing_repository_and_unreachable_server_are_three_errors(
    site: Site, tmp_path: Path
) -> None:
    """Promise: a wrong repository password, a missing repository and an unreachable backup
    server each fail ``backup-agent backup`` with its own one-line error and its own
    ``reason`` on backup_failures_total, within the pre-flight's bound (not restic's 15
    minutes, and without restic's "Is there a repository" hint for a server that is down).
    """
    source = tmp_path / "data"
    source.mkdir()
    (source / "report.csv").write_text("1,2,3\n")
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the password\n")
    cases = {
        "wrong_password": site.manifest(
            {"files": files_service(source)},
            name="wrong.yaml",
            repository={**repository(site), "password_file": str(wrong)},
            agent={"state_dir": str(tmp_path / "state-wrong")},
        ),
        "missing": site.manifest(
            {"files": files_service(source)},
            name="missing.yaml",
            url=site.server.url("nothing-here"),
            agent={"state_dir": str(tmp_path / "state-missing")},
        ),
        "unreachable": site.manifest(
            {"files": files_service(source)},
            name="unreachable.yaml",
            url=f"rest:http://{HOST}:{free_port(HOST)}/{REPO}",
            agent={"state_dir": str(tmp_path / "state-unreachable")},
        ),
    }
    with ThreadPoolExecutor(len(cases)) as pool:
        runs = dict(zip(cases, pool.map(backup_files, cases.values()), strict=True))

    messages = {case: one_error(run) for case, run in runs.items()}
    assert messages["wrong_password"] == (f"wrong password for the restic repository at {site.url}")
    assert messages["missing"].startswith(
        f"no restic repository at {site.server.url('nothing-here')} (backup-agent init creates it)"
    )
    assert messages["unreachable"].startswith("backup server ")
    assert " unreachable: connection refused" in messages["unreachable"]
    assert len(set(messages.values())) == 3
    reasons = {case: failures(path, "files") for case, path in cases.items()}
    assert reasons == {
        "wrong_password": {causes.WRONG_PASSWORD: 1},
        "missing": {causes.MISSING: 1},
        "unreachable": {causes.UNREACHABLE: 1},
    }
    assert all(run.seconds < PREFLIGHT_BOUND for run in runs.values()), runs
    for run in runs.values():
        assert site.rest_password not in str(run) and site.restic_password not in str(run)


def repository(site: Site) -> dict[str, str]:
    return {
        "url": site.url,
        "password_file": str(site.password_file),
        "credentials_file": str(site.credentials_file),
        "host": "agama",
    }


def backup_files(manifest_path: Path) -> Finished:
    return one_shot(manifest_path, "backup", "files", "--kind", "full", timeout=100)


@pytest.mark.timeout(150)
def test_a_stopped_backup_server_fails_the_backup_before_the_dump_starts(
    site: Site, bulk: Database, tmp_path: Path
) -> None:
    """Promise: with the backup server stopped, a scheduled MySQL backup fails in the
    pre-flight, within its bound, as "backup server HOST:PORT unreachable" with reason
    server_unreachable on backup_failures_total, and BackupLastRunFailed fires; the
    database is never touched (no dump, no transaction held open against a dead server).
    """
    path = site.manifest({"db": bulk.service()})
    port = metrics_port(path)
    site.server.stop()
    before = bulk.connections()
    agent = Agent(path, tmp_path / "agent.log", port)
    agent.start()  # a first start runs the backup at once
    prometheus = Prometheus(tmp_path / "prometheus", f"{HOST}:{port}")
    try:
        failed = wait_for(
            "the backup to fail",
            lambda: [e for e in agent.entries() if e["level"] == "error"],
            PREFLIGHT_BOUND + 10,
        )
        message = checked_line(failed[0]["msg"])
        assert message.startswith(f"backup server {site.server.netloc} unreachable: ")
        assert "connection refused" in message
        assert failed[0]["task"] == "db/full"
        labels = {"service": "db", "reason": causes.UNREACHABLE}
        counted = wait_for(
            "the failure metric", lambda: metric(port, "backup_failures_total", HOST, **labels), 10
        )
        assert counted == 1
        assert metric(port, "backup_last_run_success", HOST, service="db") == 0
        started = agent.find("started", task="db/full")[0]["time"]
        assert seconds_between(started, failed[0]["time"]) < PREFLIGHT_BOUND
        assert bulk.connections() == before, "the database was touched"
        alert = "BackupLastRunFailed"
        wait_for(alert, lambda: prometheus.firing(alert, service="db"), 30)
        assert agent.stop()[0] == 0
    finally:
        agent.kill()
        prometheus.stop()


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
