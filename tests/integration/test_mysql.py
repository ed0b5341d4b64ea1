"""MySQL job against a real MariaDB server and a real restic repository."""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from backup_agent import cli, restic
from backup_agent.errors import BackupError
from backup_agent.jobs import mysql
from backup_agent.jobs.base import RestoreRequest
from backup_agent.jobs.mysql import record
from backup_agent.jobs.mysql.dump import dump_command
from backup_agent.jobs.mysql.load import prepare_target
from backup_agent.jobs.mysql.preflight import ServerInfo
from backup_agent.manifest import Manifest, MysqlOptions
from tests.conftest import ManifestFactory
from tests.integration.conftest import grant_user, mysql_service
from tests.mariadb_server import MariaDB

pytestmark = pytest.mark.integration


def refused(loaded: Manifest, repository: restic.Repository, match: str) -> BackupError:
    """The backup of service ``db`` fails saying ``match`` and leaves no snapshot."""
    with pytest.raises(BackupError, match=match) as caught:
        mysql.backup(loaded, loaded.service("db"), "full")
    assert restic.snapshots(repository) == []
    return caught.value


def table_checksums(mariadb: MariaDB, database: str) -> dict[str, object]:
    rows = mariadb.execute("CHECKSUM TABLE customer, audit EXTENDED", database=database)
    return {str(name).split(".")[-1]: value for name, value in rows}


SCHEMA_QUERIES = {
    "tables": "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES"
    " WHERE TABLE_SCHEMA = %s ORDER BY 1",
    "triggers": "SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS"
    " WHERE TRIGGER_SCHEMA = %s",
    "routines": "SELECT ROUTINE_NAME, ROUTINE_DEFINITION FROM information_schema.ROUTINES"
    " WHERE ROUTINE_SCHEMA = %s",
    "events": "SELECT EVENT_NAME, EVENT_DEFINITION FROM information_schema.EVENTS"
    " WHERE EVENT_SCHEMA = %s",
}


def schema_objects(mariadb: MariaDB, database: str) -> dict[str, list[object]]:
    conn = mariadb.connect()
    try:
        with conn.cursor() as cur:
            found: dict[str, list[object]] = {}
            for key, query in SCHEMA_QUERIES.items():
                cur.execute(query, (database,))
                found[key] = list(cur.fetchall())
            return found
    finally:
        conn.close()


def test_backup_then_restore_gives_identical_data(
    mariadb: MariaDB,
    database: str,
    backup_defaults: str,
    root_defaults: str,
    make_manifest: ManifestFactory,
    repository: restic.Repository,
) -> None:
    loaded = make_manifest(
        {
            "db": mysql_service(
                mariadb, backup_defaults, database, restore_defaults_file=root_defaults
            )
        }
    )
    service = loaded.service("db")
    before = (table_checksums(mariadb, database), schema_objects(mariadb, database))

    result = mysql.backup(loaded, service, "full")

    snaps = restic.snapshots(repository, {"service": "db"})
    data = [s for s in snaps if s.tag("kind") == "full"]
    meta = [s for s in snaps if s.tag("kind") == "meta"]
    assert [s.id for s in data] == [result.snapshot_id]
    # The record names the dump by the random link it carries (written beside it).
    assert [s.tag("of") for s in meta] == [data[0].tag("link")]
    assert len(data[0].tag("link") or "") == 32
    assert all(s.hostname == "testhost" for s in snaps)
    # The stored bytes are exactly the dump whose size and hash were recorded.
    stored = subprocess.run(
        ["restic", "dump", result.snapshot_id, "/db.sql"],
        env={**repository.env(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
    ).stdout
    assert len(stored) == result.details["bytes"]
    assert hashlib.sha256(stored).hexdigest() == result.details["sha256"]
    assert stored.rstrip().splitlines()[-1].startswith(b"-- Dump completed")
    # Row counts read from the dump equal the server's (the trigger filled audit).
    assert result.details["tables"] == {database: {"customer": 2000, "audit": 2000}}

    mariadb.execute(f"DROP DATABASE {database}")
    restored = mysql.restore(loaded, service, RestoreRequest())
    assert restored.snapshot_id == result.snapshot_id
    assert any("SHA-256" in line for line in restored.verified)
    assert (table_checksums(mariadb, database), schema_objects(mariadb, database)) == before


def test_restore_refuses_a_database_that_has_tables(
    mariadb: MariaDB,
    database: str,
    backup_defaults: str,
    root_defaults: str,
    make_manifest: ManifestFactory,
) -> None:
    loaded = make_manifest(
        {
            "db": mysql_service(
                mariadb, backup_defaults, database, restore_defaults_file=root_defaults
            )
        }
    )
    service = loaded.service("db")
    mysql.backup(loaded, service, "full")
    with pytest.raises(BackupError, match="already hold tables"):
        mysql.restore(loaded, service, RestoreRequest())


def test_a_new_servers_heartbeat_table_alone_does_not_count_as_data(
    mariadb: MariaDB, root_defaults: str
) -> None:
    """A new MySQL host's init script creates the agent's heartbeat table: a restore
    there needs no --force, while any other table still refuses it."""
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    mariadb.execute(
        f"CREATE DATABASE {name}",
        f"CREATE TABLE {name}.backup_heartbeat (id INT PRIMARY KEY, ts DATETIME(6))",
    )
    target = MysqlOptions(defaults_file=root_defaults, socket=mariadb.socket, client="mariadb")
    meta = {"databases": [name]}
    heartbeat = f"{name}.backup_heartbeat"
    try:
        assert prepare_target(target, meta, force=False, own=heartbeat) == "mariadb"
        with pytest.raises(BackupError, match=f"{name} on .* already hold tables"):
            prepare_target(target, meta, force=False)
        mariadb.execute(f"CREATE TABLE {name}.orders (id INT PRIMARY KEY)")
        with pytest.raises(BackupError, match=f"{name} on .* already hold tables"):
            prepare_target(target, meta, force=False, own=heartbeat)
    finally:
        mariadb.execute(f"DROP DATABASE {name}")


def write_script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


FAILURES = {
    "empty": ("exit 0", "wrote nothing"),
    "failing": (
        'mariadb-dump "$@" >/dev/null; echo "mariadb-dump: Got error: 1146" >&2; exit 2',
        "exit code 2",
    ),
    "killed": ('mariadb-dump "$@" | head -c 5000; kill -9 $$', "killed by SIGKILL"),
    "truncated": ('mariadb-dump "$@" | head -c 5000', "Dump completed"),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_a_broken_dump_leaves_no_snapshot(
    case: str,
    mariadb: MariaDB,
    database: str,
    backup_defaults: str,
    make_manifest: ManifestFactory,
    repository: restic.Repository,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    body, expected = FAILURES[case]
    program = write_script(tmp_path / f"{case}-dump", body)
    loaded = make_manifest(
        {"db": mysql_service(mariadb, backup_defaults, database, dump_program=program)}
    )

    code = cli.main(["-m", loaded.source, "backup", "db"])

    err = capfd.readouterr().err.strip().splitlines()
    errors = [line for line in err if " ERROR " in line]
    assert code == 1
    assert len(errors) == 1 and expected in errors[0], err
    assert restic.snapshots(repository) == []


def test_a_view_on_a_dropped_table_makes_the_real_dump_fail(
    mariadb: MariaDB,
    database: str,
    backup_defaults: str,
    make_manifest: ManifestFactory,
    repository: restic.Repository,
) -> None:
    mariadb.execute(
        "CREATE TABLE doomed (id INT)",
        "CREATE VIEW broken AS SELECT id FROM doomed",
        "DROP TABLE doomed",
        database=database,
    )
    loaded = make_manifest({"db": mysql_service(mariadb, backup_defaults, database)})
    refused(loaded, repository, "mariadb-dump")


def test_wrong_password_is_reported_before_dumping(
    mariadb: MariaDB,
    database: str,
    backup_defaults: str,
    make_manifest: ManifestFactory,
    repository: restic.Repository,
    tmp_path: Path,
) -> None:
    user = Path(backup_defaults).read_text().split("user=")[1].split()[0]
    wrong = mariadb.defaults_file(tmp_path / "wrong.cnf", user, "not-the-password")
    loaded = make_manifest({"db": mysql_service(mariadb, wrong, database)})
    error = refused(loaded, repository, "Access denied")
    assert "not-the-password" not in str(error)


def test_missing_privileges_are_named(
    mariadb: MariaDB,
    database: str,
    make_manifest: ManifestFactory,
    repository: restic.Repository,
    tmp_path: Path,
) -> None:
    select_only = grant_user(mariadb, tmp_path, "SELECT", database, routines=False)
    loaded = make_manifest({"db": mysql_service(mariadb, select_only, database)})
    refused(
        loaded, repository, f"{database}: SHOW VIEW, TRIGGER, EVENT; routines: SELECT ON mysql.proc"
    )


def test_non_innodb_tables_are_warned_about(
    mariadb: MariaDB,
    database: str,
    backup_defaults: str,
    make_manifest: ManifestFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mariadb.execute("CREATE TABLE legacy (id INT) ENGINE=MyISAM", database=database)
    loaded = make_manifest({"db": mysql_service(mariadb, backup_defaults, database)})
    mysql.backup(loaded, loaded.service("db"), "full")
    assert f"{database}.legacy (MyISAM) is not InnoDB" in caplog.text


def test_metadata_is_readable_for_restore(
    mariadb: MariaDB, database: str, backup_defaults: str, make_manifest: ManifestFactory
) -> None:
    loaded = make_manifest({"db": mysql_service(mariadb, backup_defaults, database)})
    service = loaded.service("db")
    result = mysql.backup(loaded, service, "full")
    snapshot, meta = record.select_dump(loaded, service, "latest")
    assert snapshot.id == result.snapshot_id
    assert json.loads(json.dumps(meta))["sha256"] == result.details["sha256"]
    assert meta["databases"] == [database]


def test_mysql_family_with_mariadbs_mysqldump_is_a_clear_error() -> None:
    """Debian's mysqldump is MariaDB's; against MySQL 8 that must be said, not tried."""
    info = ServerInfo("8.4.3", "mysql", ("agama",), ())
    options = MysqlOptions(defaults_file="/run/secrets/x.cnf", client="auto")
    with pytest.raises(BackupError, match="MariaDB's dump tool: install Oracle's mysqldump"):
        dump_command(options, info)
