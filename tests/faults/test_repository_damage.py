"""Attempts on the repository's contents: an agent's stolen credentials trying to delete,
and one flipped byte in a pack file on the backup server's disk."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.agent_process import Agent, metric, one_shot
from tests.conftest import wait_for
from tests.faults.conftest import (
    REPO,
    Site,
    checked_line,
    files_service,
    metrics_port,
    one_error,
    random_tree,
)
from tests.forge import forge
from tests.net import HOST
from tests.prometheus import Prometheus

pytestmark = pytest.mark.integration


def repository_files(site: Site) -> set[Path]:
    """Every file of the repository on the server's disk, locks left out."""
    return {
        p for p in (site.server.data / REPO).rglob("*") if p.is_file() and "locks" not in p.parts
    }


@pytest.mark.timeout(120)
def test_agent_credentials_cannot_forget_or_prune_and_the_attempt_is_visible(
    site: Site, tmp_path: Path
) -> None:
    """Promise: with an agent's credentials (append-only on rest-server), ``restic forget
    --prune`` deletes nothing: every snapshot and pack stays, each refused deletion is in
    the backup server's access log (HTTP 403), and the agent's own retention attempt
    fails with one line naming the refusal."""
    source = random_tree(tmp_path / "data", 4)
    path = site.manifest({"files": files_service(source)})
    for _ in range(2):
        assert one_shot(path, "backup", "files", "--kind", "full").code == 0
    forge(site.agent_repository(), datetime.now(UTC) - timedelta(days=40),
          {"service": "files", "kind": "full"})  # fmt: skip
    before = repository_files(site)
    snapshots = {s.id for s in site.snapshots()}

    attacker = subprocess.run(
        ["restic", "forget", "--prune", "--keep-last", "1"],
        env={**os.environ, **site.agent_repository().env()},
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert "unable to remove" in attacker.stderr, attacker.stderr[-2000:]
    assert repository_files(site) >= before
    assert {s.id for s in site.snapshots()} == snapshots
    # rest-server's access log (``--log``) names the client's address, not the user.
    refused = site.server.requests("DELETE", 403)
    assert [line for line in refused if f"/{REPO}/snapshots/" in line], refused

    # The agent itself, pointed at the server with its own role's view.
    attempt = one_shot(path, "--role", "backup", "retention")
    message = one_error(attempt)
    assert message.startswith(
        f"backup server {site.server.netloc} refused access: server refuses deletions (HTTP 403"
    )
    assert {s.id for s in site.snapshots()} == snapshots


@pytest.mark.timeout(150)
def test_one_flipped_byte_in_a_pack_fails_the_next_check_with_metric_and_alert(
    site: Site, tmp_path: Path
) -> None:
    """Promise: one byte flipped in a pack file on the backup server's disk makes the next
    repository check fail loudly: one error line naming the damage,
    backup_maintenance_last_success{task="check"} 0, and RepositoryCheckFailing fires."""
    source = random_tree(tmp_path / "data", 8)
    path = site.manifest({"files": files_service(source)})
    assert one_shot(path, "backup", "files", "--kind", "full").code == 0
    pack = max(site.server.files(REPO, "data"), key=lambda p: p.stat().st_size)
    with pack.open("r+b") as handle:
        handle.seek(pack.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x01]))

    maintenance = Agent(path, tmp_path / "maintenance.log", metrics_port(path), "maintenance")
    maintenance.start()  # a first start runs retention and the check at once
    prometheus = Prometheus(
        tmp_path / "prometheus", f"{HOST}:{maintenance.port}", job="backup-maintenance"
    )
    try:
        failed = wait_for(
            "the check to fail",
            lambda: [e for e in maintenance.entries() if e.get("task") == "check"
                     and e["level"] == "error"],
            120,
        )  # fmt: skip
        message = checked_line(failed[0]["msg"])
        assert "check" in message and pack.name[:8] in message, message
        assert metric(maintenance.port, "backup_maintenance_last_success", HOST, task="check") == 0
        wait_for("RepositoryCheckFailing", lambda: prometheus.firing("RepositoryCheckFailing"), 30)
        assert maintenance.stop()[0] == 0
    finally:
        maintenance.kill()
        prometheus.stop()
