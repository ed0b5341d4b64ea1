"""Empty is not success: a volume that failed to mount (Docker then makes an empty
directory), a missing path, a database without tables. Each fails with its own line and
reason ``empty`` unless the manifest says ``allow_empty: true``; a drill that restores
nothing fails too."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_process import one_shot
from tests.faults.conftest import Site, failures, files_service, one_error
from tests.integration.conftest import grant_user, mysql_service
from tests.mariadb_server import MariaDB

pytestmark = pytest.mark.integration


def drill_section(tmp_path: Path) -> dict[str, str]:
    return {"schedule": "0 6 * * 1", "scratch_dir": str(tmp_path / "drills")}


@pytest.mark.timeout(120)
def test_a_missing_or_empty_files_path_fails_and_an_empty_drill_fails(
    site: Site, tmp_path: Path
) -> None:
    """Promise: a files path that is missing, or an empty directory, fails the backup with
    reason ``empty`` and stores nothing; with ``allow_empty: true`` the empty directory is
    backed up, but a drill restoring no file fails unless the manifest allows it."""
    missing, empty = tmp_path / "not-mounted", tmp_path / "mounted-empty"
    empty.mkdir()
    drill = drill_section(tmp_path)
    gone = site.manifest({"files": files_service(missing)}, name="missing.yaml")
    message = one_error(one_shot(gone, "backup", "files", "--kind", "full"))
    assert message == f"files: path(s) not found: {missing}"
    path = site.manifest({"files": files_service(empty)}, name="empty.yaml", drill=drill)
    message = one_error(one_shot(path, "backup", "files", "--kind", "full"))
    assert message == f"files: {empty} is empty (files.allow_empty permits it)"
    assert failures(path, "files") == {"empty": 2}  # one state file: both runs
    assert site.snapshots() == []

    allowed = files_service(empty)
    allowed["files"]["allow_empty"] = True
    allowing = site.manifest({"files": allowed}, name="allowed.yaml", drill=drill)
    assert one_shot(allowing, "backup", "files", "--kind", "full").code == 0
    assert one_shot(allowing, "drill", "files").code == 0
    refused = one_shot(path, "drill", "files")
    assert refused.code == 1
    assert "FAIL files" in refused.stdout
    assert "error: the newest snapshot of files restored no file" in refused.stdout


@pytest.fixture
def tableless(mariadb: MariaDB, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A database without tables, and a backup user's option file for it."""
    name = f"empty_{uuid.uuid4().hex[:8]}"
    mariadb.execute(f"CREATE DATABASE {name}")
    try:
        yield name, grant_user(mariadb, tmp_path, "SELECT, SHOW VIEW, TRIGGER, EVENT", name)
    finally:
        mariadb.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.mark.timeout(120)
def test_a_database_without_tables_fails_and_so_does_its_drill(
    site: Site, mariadb: MariaDB, scratch_mariadb: MariaDB, tableless: tuple[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Promise: backing up databases that hold no table fails with reason ``empty``, no
    dump stored; with ``allow_empty: true`` it is backed up, but a drill restoring no
    table fails unless the manifest allows it."""
    name, defaults = tableless
    scratch = scratch_mariadb.defaults_file(tmp_path / "scratch.cnf", "root", "")
    drill = {
        **drill_section(tmp_path),
        "mysql": {"socket": scratch_mariadb.socket, "defaults_file": scratch},
    }
    service = mysql_service(mariadb, defaults, name)
    path = site.manifest({"db": service}, drill=drill)
    message = one_error(one_shot(path, "backup", "db"))
    assert message == f"database(s) {name} hold no table (mysql.allow_empty permits it)"
    assert failures(path, "db") == {"empty": 1}
    assert site.snapshots() == []

    allowing = site.manifest(
        {"db": mysql_service(mariadb, defaults, name, allow_empty=True)},
        name="allowed.yaml",
        drill=drill,
    )
    assert one_shot(allowing, "backup", "db").code == 0
    refused = one_shot(path, "drill", "db")
    assert refused.code == 1
    assert "error: the dump restored no table (mysql.allow_empty permits it)" in refused.stdout
