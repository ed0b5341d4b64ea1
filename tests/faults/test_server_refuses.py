"""A backup server that answers but cannot store: its disk is full (rest-server
``--max-size``) or the repository is read-only. The MySQL backup fails in seconds, named
for it, and no dump is left streaming into a server that cannot take it."""

from __future__ import annotations

import pytest

from backup_agent import repository_errors as causes
from backup_agent import repository_guard
from tests.agent_process import one_shot
from tests.faults.conftest import REPO, Database, Site, failures, one_error

pytestmark = pytest.mark.integration


@pytest.mark.timeout(120)
def test_a_full_backup_server_stops_the_dump_at_its_first_refusal(
    site: Site, bulk: Database
) -> None:
    """Promise: when the backup server is full (HTTP 507), a MySQL backup stops at the
    first refused upload, within seconds, as "backup server HOST:PORT cannot store the
    repository: server out of space", reason repository_not_writable; the dump and its
    transaction end with it, and no snapshot exists."""
    site.server.stop()
    site.server.start("--max-size", str(site.server.used_bytes() + (2 << 20)))
    path = site.manifest({"db": bulk.service()})
    finished = one_shot(path, "backup", "db", timeout=100)
    message = one_error(finished)
    assert message.startswith(
        f"backup server {site.server.netloc} cannot store the repository:"
        " server out of space (HTTP 507 Insufficient Storage)"
    )
    # The first 507 is hopeless: nothing waits for a retry budget.
    assert finished.seconds < repository_guard.LONG.retry_budget / 4
    assert failures(path, "db") == {causes.NOT_WRITABLE: 1}
    assert bulk.sessions() == 0, "the dump's session (and its transaction) is still open"
    assert site.snapshots() == []


@pytest.mark.timeout(120)
def test_a_read_only_repository_fails_the_preflight_before_any_dump(
    site: Site, bulk: Database
) -> None:
    """Promise: when the repository on the backup server is read-only, a MySQL backup
    fails in the pre-flight, within its bound, as "backup server HOST:PORT cannot store
    the repository", reason repository_not_writable, before the database is touched."""
    site.server.stop()
    site.server.serve_as("nobody")
    for path in [site.server.data / REPO, *(site.server.data / REPO).rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    site.server.start()
    manifest_path = site.manifest({"db": bulk.service()})
    before = bulk.connections()
    finished = one_shot(manifest_path, "backup", "db", timeout=100)
    message = one_error(finished)
    assert message.startswith(
        f"backup server {site.server.netloc} cannot store the repository: server cannot write"
    )
    bound = repository_guard.PREFLIGHT
    assert finished.seconds < bound.retry_budget + bound.grace + 5
    assert failures(manifest_path, "db") == {causes.NOT_WRITABLE: 1}
    assert bulk.connections() == before, "the database was touched"
