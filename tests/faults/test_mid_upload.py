"""The backup server goes away in the middle of an upload: stopped, or cut off by a dead
network link. The job ends at its deadline, named for the server, with no snapshot and
nothing left running; the next run, with the server back, succeeds on its own."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backup_agent import repository_errors as causes
from backup_agent import repository_guard
from backup_agent.execute import Deadline
from tests.agent_process import Command, one_shot
from tests.conftest import wait_for
from tests.faults.conftest import (
    REPO,
    Database,
    Site,
    failures,
    files_service,
    one_error,
    random_tree,
)
from tests.faults.proxy import Proxy

pytestmark = pytest.mark.integration

DEADLINE = 25  # seconds: the MySQL service's deadline (its dump streams for ~5 s)


@pytest.mark.timeout(300)
def test_backup_server_gone_mid_upload_ends_at_the_deadline_named_for_it(
    site: Site, bulk: Database, tmp_path: Path
) -> None:
    """Promise: when the backup server goes away in the middle of an upload, the backup
    ends at its deadline (plus the grace to stop restic), named for the server with
    reason server_unreachable, no snapshot stored and nothing left running, and the next
    run succeeds by itself. Both ways at once (they wait for the same minutes):

    - the server is stopped while a MySQL dump streams into it: "backup server
      HOST:PORT unreachable: connection refused"; the dump and its transaction end too;
    - the network dies during a files upload, every connection open and no byte moving:
      restic's stuck-request watchdog reports it, "unreachable: no answer (request stuck)".
    """
    (tmp_path / "cut").mkdir()
    other = Site(tmp_path / "cut")
    try:
        with ThreadPoolExecutor(2) as pool:
            jobs = [pool.submit(stopped_mid_dump, site, bulk),
                    pool.submit(cut_mid_upload, other, tmp_path)]  # fmt: skip
            for job in jobs:
                job.result()
    finally:
        other.remove()


def stopped_mid_dump(site: Site, bulk: Database) -> None:
    """The backup server is stopped while a MySQL dump streams into it."""
    path = site.manifest({"db": bulk.service(deadline=f"{DEADLINE}s")})
    backup = Command(path, "backup", "db")
    try:
        wait_for("the first pack on the server", lambda: site.server.files(REPO, "data"), 60, 0.02)
        site.server.stop()
        finished = backup.wait()
    finally:
        backup.kill()
    message = one_error(finished)
    assert message == (
        f"backup server {site.server.netloc} unreachable: connection refused"
        f" (backup of db stopped at its deadline of {DEADLINE} s)"
    )
    assert finished.seconds < DEADLINE + Deadline.GRACE + 10
    assert failures(path, "db") == {causes.UNREACHABLE: 1}
    assert bulk.sessions() == 0, "the dump's session (and its transaction) is still open"

    site.server.start()
    assert site.snapshots() == []
    again = one_shot(path, "backup", "db", timeout=120)
    assert again.code == 0, again.stderr[-2000:]
    kinds = sorted(str(s.tag("kind")) for s in site.snapshots())
    assert kinds == ["full", "meta"]


def cut_mid_upload(site: Site, tmp_path: Path) -> None:
    """The network to the backup server dies during a files upload."""
    # restic 0.18 reports a stuck upload after twice --stuck-request-timeout (measured:
    # 39 s for 20s, 60 s for 30s); the agent passes 60s for uploads.
    stuck = float(repository_guard.LONG.stuck_request.rstrip("s"))
    deadline = int(2 * stuck + 15)
    source = random_tree(tmp_path / "data", 48)
    proxy = Proxy((site.server.address, site.server.port), rate=4 << 20)
    try:
        service = files_service(source, deadline=f"{deadline}s")
        path = site.manifest({"files": service}, url=proxy.url(REPO))
        backup = Command(path, "backup", "files", "--kind", "full")
        try:
            wait_for("8 MiB uploaded", lambda: proxy.uploaded > 8 << 20, 60, every=0.05)
            proxy.stall()
            finished = backup.wait()
        finally:
            backup.kill()
    finally:
        proxy.close()
    message = one_error(finished)
    assert message == (
        f"backup server {proxy.address}:{proxy.port} unreachable: no answer (request stuck)"
        f" (backup of files stopped at its deadline of {deadline} s)"
    )
    assert finished.seconds < deadline + Deadline.GRACE + 10
    assert failures(path, "files") == {causes.UNREACHABLE: 1}
    assert site.snapshots() == []

    direct = site.manifest({"files": files_service(source)}, name="direct.yaml")
    again = one_shot(direct, "backup", "files", "--kind", "full", timeout=120)
    assert again.code == 0, again.stderr[-2000:]
    assert [s.tag("service") for s in site.snapshots()] == ["files"]
