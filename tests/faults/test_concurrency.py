"""Things happening at once: two agents backing up while maintenance checks the
repository and applies retention, and two one-shot backups of one service."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backup_agent.state import State, backup_task
from tests.agent_process import Agent, metric, one_shot
from tests.conftest import wait_for
from tests.faults.conftest import REPO, Database, Site, files_service, metrics_port, random_tree
from tests.faults.proxy import Proxy
from tests.forge import forge
from tests.net import HOST, free_port

pytestmark = pytest.mark.integration


@pytest.mark.timeout(240)
def test_maintenance_waits_for_two_live_backups_then_checks_and_applies_retention(
    site: Site, bulk: Database, tmp_path: Path
) -> None:
    """Promise: while two agents back up (a MySQL dump and files, each holding its lock),
    the maintenance role's check and retention wait for their locks (restic's
    --retry-lock) instead of failing: both backups succeed, then the check passes and
    retention removes exactly the snapshots the policy names, nothing the backups made."""
    now = datetime.now(UTC)
    agent_repo = site.agent_repository()
    expired = {
        forge(agent_repo, now - timedelta(days=days), {"service": "files", "kind": "full"},
              bytes(days))
        for days in (25, 40)
    }  # fmt: skip
    source = random_tree(tmp_path / "data", 32)
    proxy = Proxy((site.server.address, site.server.port), rate=8 << 20)  # ~10 s of backups
    agents: list[Agent] = []
    try:
        for name, service in (("db", bulk.service()), ("files", files_service(source))):
            path = site.manifest(
                {name: service},
                name=f"{name}.yaml",
                url=proxy.url(REPO),
                agent={"state_dir": str(tmp_path / f"state-{name}"),
                       "metrics_port": free_port(HOST), "metrics_address": HOST},
            )  # fmt: skip
            agents.append(Agent(path, tmp_path / f"{name}.log", metrics_port(path)))
            agents[-1].start()
        wait_for("both backups to hold their locks", lambda: len(site.locks()) >= 2, 60, 0.05)

        maintenance = site.manifest(
            {"db": bulk.service(), "files": files_service(source)}, name="maintenance.yaml"
        )
        checked = one_shot(maintenance, "check", timeout=200)
        check_ended = time.time()
        retention = one_shot(maintenance, "retention", timeout=200)

        for agent, task in zip(agents, ("db/full", "files/full"), strict=True):
            finished = agent.find("finished", task=task)
            assert finished, agent.entries()[-5:]
            assert metric(agent.port, "backup_last_run_success", HOST, service=task[:-5]) == 1
            if task == "files/full":  # one snapshot: the check waited for its whole lock
                # (the dump's record is a second snapshot, which may wait for the check)
                assert datetime.fromisoformat(finished[0]["time"]).timestamp() < check_ended
            assert agent.stop()[0] == 0
    finally:
        for agent in agents:
            agent.kill()
        proxy.close()
    assert checked.code == 0, checked.stderr[-2000:]
    assert "repository check passed" in checked.stdout
    assert retention.code == 0, retention.stderr[-2000:]
    assert "files: keep 1, removed 2" in retention.stdout
    left = site.snapshots()
    assert not expired & {s.id for s in left}
    assert sorted(f"{s.tag('service')}/{s.tag('kind')}" for s in left) == [
        "db/full",
        "db/meta",
        "files/full",
    ]


@pytest.mark.timeout(120)
def test_two_one_shot_backups_of_one_service_at_once_both_count(site: Site, tmp_path: Path) -> None:
    """Promise: two ``backup-agent backup`` of the same service started together (an
    operator and a script, say) both succeed and both count in the state file."""
    source = tmp_path / "data"
    source.mkdir()
    (source / "report.csv").write_text("1,2,3\n")
    path = site.manifest({"files": files_service(source)})
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: one_shot(path, "backup", "files", "--kind", "full"), "ab"))
    assert [run.code for run in runs] == [0, 0], [run.stderr[-1000:] for run in runs]
    assert State(str(site.state_dir)).run(backup_task("files", "full")).successes == 2
    assert len(site.snapshots()) == 2
