"""The agent is stopped in the middle of a MySQL backup: SIGTERM (a clean shutdown) or
SIGKILL (the OOM killer, a crash). Nothing half-done is left behind, and the next start
recovers with no person: no partial snapshot, no lock in the way."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup_agent.restic import ABORT_ACK_WAIT
from tests.agent_process import Agent, metric
from tests.conftest import wait_for
from tests.faults.conftest import REPO, Database, Site, metrics_port, processes
from tests.faults.proxy import Proxy
from tests.net import HOST

pytestmark = pytest.mark.integration

RATE = 4 << 20  # bytes per second to the backup server: the upload takes ~10 s


@pytest.fixture
def slow(site: Site) -> Iterator[Proxy]:
    """The backup server behind a throttled link."""
    proxy = Proxy((site.server.address, site.server.port), rate=RATE)
    try:
        yield proxy
    finally:
        proxy.close()


def start_mid_dump(site: Site, bulk: Database, proxy: Proxy, tmp_path: Path) -> Agent:
    """A fresh agent whose first-start MySQL backup is mid-dump (16 of 80 MB dumped)."""
    path = site.manifest({"db": bulk.service()}, url=proxy.url(REPO))
    agent = Agent(path, tmp_path / "agent.log", metrics_port(path))
    agent.start()
    dumped = lambda: agent.written("mariadb-dump") > 16 << 20  # noqa: E731
    wait_for("16 MiB of the 80 MB dump", dumped, 60, every=0.02)
    assert agent.running("restic")
    return agent


def restarted(agent: Agent, proxy: Proxy) -> None:
    """Start the agent again, on a fast link, and wait for its backup to succeed."""
    proxy.rate = None
    agent.start()
    wait_for("the backup at the next start", lambda: agent.find("finished", task="db/full"), 120)
    assert metric(agent.port, "backup_last_run_success", HOST, service="db") == 1


@pytest.mark.timeout(240)
def test_sigterm_mid_backup_stops_cleanly_and_the_next_start_catches_up(
    site: Site, bulk: Database, slow: Proxy, tmp_path: Path
) -> None:
    """Promise: SIGTERM during a MySQL backup makes the agent exit 0 within seconds;
    restic saves nothing and removes its lock, the dump and its transaction end; the
    interrupted run is not recorded, so the next start runs it again and it succeeds."""
    agent = start_mid_dump(site, bulk, slow, tmp_path)
    try:
        code, took = agent.stop()
        assert code == 0
        assert took < ABORT_ACK_WAIT + 5
        assert agent.find("interrupted", task="db/full")
        assert site.locks() == []
        assert site.snapshots() == []
        wait_for("the dump's session to close", lambda: bulk.sessions() == 0, 10)

        restarted(agent, slow)
        assert agent.find("first start: running now db/full")
        assert sorted(str(s.tag("kind")) for s in site.snapshots()) == ["full", "meta"]
        assert site.locks() == []
        assert agent.stop()[0] == 0
    finally:
        agent.kill()


@pytest.mark.timeout(240)
def test_sigkill_mid_backup_leaves_no_partial_snapshot_and_no_lock_in_the_way(
    site: Site, bulk: Database, slow: Proxy, tmp_path: Path
) -> None:
    """Promise: after SIGKILL of the agent during a MySQL backup, no snapshot of the partial
    dump is ever saved, the dump and its transaction end, and the next start removes the
    dead restic's lock and backs up, with nobody stepping in: afterwards the repository
    holds exactly one dump and its record, and no lock."""
    agent = start_mid_dump(site, bulk, slow, tmp_path)
    try:
        assert agent.process is not None
        agent.process.send_signal(signal.SIGKILL)
        agent.process.wait(10)
        wait_for("the dump's session to close", lambda: bulk.sessions() == 0, 10)
        wait_for("restic to be gone", lambda: not processes("restic", slow.url(REPO)), 10)
        assert site.snapshots() == [], "the partial dump became a snapshot"

        restarted(agent, slow)
        assert sorted(str(s.tag("kind")) for s in site.snapshots()) == ["full", "meta"]
        assert site.locks() == [], "the killed restic's lock is still there"
        assert agent.stop()[0] == 0
    finally:
        agent.kill()
