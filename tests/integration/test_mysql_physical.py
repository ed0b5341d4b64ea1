"""The physical method (mariadb-backup) against a real MariaDB server and restic."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from backup_agent import drill, restic
from backup_agent.errors import BackupError
from backup_agent.jobs import mysql
from backup_agent.jobs.base import RestoreRequest
from backup_agent.jobs.mysql import record
from backup_agent.jobs.mysql.scratch import LABEL, owner
from backup_agent.jobs.mysql.xbstream import StreamError
from backup_agent.manifest import Manifest
from tests.conftest import ManifestFactory, docker_with, need
from tests.integration.conftest import mysql_service
from tests.integration.test_mysql import table_checksums
from tests.mariadb_server import MariaDB
from tests.unit.test_xbstream import GOOD, chunk

pytestmark = pytest.mark.integration

PHYSICAL_PRIVILEGES = "RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR"


@pytest.fixture
def physical_defaults(mariadb: MariaDB, tmp_path: Path, database: str) -> str:
    """A user with what mariadb-backup and the pre-flight check need, nothing more."""
    need("mariadb-backup")
    need("mbstream")
    user, password = f"pb_{os.urandom(4).hex()}", os.urandom(12).hex()
    mariadb.execute(
        f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'",
        f"GRANT {PHYSICAL_PRIVILEGES} ON *.* TO '{user}'@'localhost'",
        f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON {database}.* TO '{user}'@'localhost'",
        f"GRANT SELECT ON mysql.proc TO '{user}'@'localhost'",
    )
    return mariadb.defaults_file(tmp_path / f"{user}.cnf", user, password)


def physical_manifest(
    make_manifest: ManifestFactory, mariadb: MariaDB, defaults: str, database: str, **top: Any
) -> Manifest:
    return make_manifest(
        {"db": mysql_service(mariadb, defaults, database, method="physical")}, **top
    )


@pytest.fixture
def loaded(
    make_manifest: ManifestFactory, mariadb: MariaDB, physical_defaults: str, database: str
) -> Manifest:
    """The manifest of one MySQL service backed up with ``method: physical``."""
    return physical_manifest(make_manifest, mariadb, physical_defaults, database)


def stored(repository: restic.Repository, snapshot: str, path: str) -> bytes:
    return subprocess.run(
        ["restic", "dump", snapshot, path],
        env={**repository.env(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
    ).stdout


def test_a_physical_backup_restores_into_a_directory_a_server_starts_on(
    loaded: Manifest,
    mariadb: MariaDB,
    database: str,
    repository: restic.Repository,
    tmp_path: Path,
) -> None:
    service = loaded.service("db")
    before = table_checksums(mariadb, database)

    result = mysql.backup(loaded, service, "full")

    snaps = restic.snapshots(repository, {"service": "db"})
    (data,) = [s for s in snaps if s.tag("kind") == "full"]
    assert (data.id, data.tag("method"), data.paths) == (
        result.snapshot_id,
        "physical",
        ("/db.xbstream",),
    )
    (meta,) = [s for s in snaps if s.tag("kind") == "meta"]
    content = record.read(loaded, service, meta)
    bytes_ = stored(repository, data.id, "/db.xbstream")
    assert content["sha256"] == hashlib.sha256(bytes_).hexdigest()
    assert content["bytes"] == len(bytes_) and bytes_.startswith(b"XBSTCK01")
    assert content["method"] == "physical"
    assert content["server_version"].startswith("10.11.")
    assert content["tables"] == {database: ["audit", "customer"]}

    server = MariaDB()  # a second server, started on the restored directory
    try:
        started = time.monotonic()
        restored = mysql.restore(loaded, service, RestoreRequest(target=str(server.datadir)))
        seconds = time.monotonic() - started
        assert restored.snapshot_id == data.id
        assert any("SHA-256" in line for line in restored.verified)
        assert any(line.startswith("next: chown -R mysql:mysql") for line in restored.verified)
        checkpoints = (server.datadir / "xtrabackup_checkpoints").read_text()
        # Prepared: MariaDB 10.11 says log-applied, XtraBackup full-prepared.
        assert checkpoints.split("\n")[0] in {
            "backup_type = log-applied",
            "backup_type = full-prepared",
        }
        print(f"physical restore (unpack + prepare) of {len(bytes_)} bytes: {seconds:.2f} s")
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "mysql:mysql", str(server.datadir)], check=True)
        server.start(initialize=False)
        assert table_checksums(server, database) == before
    finally:
        server.stop()


def test_restoring_into_a_directory_that_is_not_empty_is_refused(
    loaded: Manifest,
    tmp_path: Path,
) -> None:
    service = loaded.service("db")
    mysql.backup(loaded, service, "full")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "ibdata1").write_bytes(b"production")
    with pytest.raises(BackupError, match="not empty"):
        mysql.restore(loaded, service, RestoreRequest(target=str(tmp_path / "busy")))
    assert (tmp_path / "busy" / "ibdata1").read_bytes() == b"production"
    with pytest.raises(BackupError, match="--to /ABSOLUTE/DIR"):
        mysql.restore(loaded, service, RestoreRequest())


def test_the_backup_tool_killed_mid_stream_leaves_no_snapshot(
    loaded: Manifest,
    repository: restic.Repository,
    tmp_path: Path,
) -> None:
    killed: list[int] = []
    stop = threading.Event()

    def kill_after_a_megabyte() -> None:
        """SIGKILL the real mariadb-backup of this test once it wrote 1 MB."""
        marker = f"--target-dir={tmp_path / 'work'}".encode()
        while not stop.is_set():
            for pid in (p for p in os.listdir("/proc") if p.isdigit()):
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    io = Path(f"/proc/{pid}/io").read_text()
                except OSError:
                    continue
                written = int(io.split("wchar:")[1].split()[0])
                if any(arg.startswith(marker) for arg in argv) and written > 1_000_000:
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(written)
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_after_a_megabyte, daemon=True)
    killer.start()
    try:
        with pytest.raises(BackupError, match="mariadb-backup"):
            mysql.backup(loaded, loaded.service("db"), "full")
    finally:
        stop.set()
        killer.join()
    assert killed, "mariadb-backup finished before it could be killed"
    assert restic.snapshots(repository) == []


def test_a_hostile_stream_is_refused_before_its_names_reach_the_unpacking_tool(
    loaded: Manifest,
    mariadb: MariaDB,
    database: str,
    repository: restic.Repository,
    tmp_path: Path,
) -> None:
    """A compromised sidecar can write a snapshot and a record that agree with each
    other: the reader refuses a name leaving the target before mbstream sees it."""
    service = loaded.service("db")
    hostile = GOOD + chunk(b"../escaped", b"owned") + chunk(b"../escaped", end=True)
    tags = {"service": "db", "kind": "full", "method": "physical"}
    summary = restic.backup_bytes(repository, "db.xbstream", hostile, tags)
    meta = {
        "sha256": hashlib.sha256(hostile).hexdigest(),
        "bytes": len(hostile),
        "method": "physical",
        "family": "mariadb",
        "server_version": mariadb.execute("SELECT VERSION()")[0][0],
        "databases": [database],
        "tables": {database: ["audit", "customer"]},
    }
    record.seal(record.start(loaded, service, summary.snapshot_id), meta)
    target = tmp_path / "restore" / "data"

    with pytest.raises(StreamError, match="leaves the target directory"):
        mysql.restore(loaded, service, RestoreRequest(target=str(target)))
    assert not (tmp_path / "restore" / "escaped").exists()
    assert "escaped" not in {p.name for p in tmp_path.rglob("*")}


def test_method_both_makes_a_dump_and_a_copy_each_with_its_record(
    mariadb: MariaDB,
    database: str,
    physical_defaults: str,
    make_manifest: ManifestFactory,
    repository: restic.Repository,
    tmp_path: Path,
) -> None:
    loaded = make_manifest(
        {"db": mysql_service(mariadb, physical_defaults, database, method="both")}
    )
    service = loaded.service("db")
    result = mysql.backup(loaded, service, "full")
    snaps = restic.snapshots(repository, {"service": "db"})
    data = {s.tag("method") or "logical": s for s in snaps if s.tag("kind") == "full"}
    assert set(data) == {"logical", "physical"}
    assert sorted(s.tag("of") or "" for s in snaps if s.tag("kind") == "meta") == sorted(
        s.tag("link") or "" for s in data.values()
    )
    assert result.snapshot_id == data["logical"].id
    dump, meta = record.select_dump(loaded, service, "latest")
    copy, copied = record.select_dump(loaded, service, "latest", "physical")
    assert (dump.id, copy.id) == (data["logical"].id, data["physical"].id)
    assert meta["tables"] == {database: {"customer": 2000, "audit": 2000}}
    assert copied["tables"] == {database: ["audit", "customer"]}
    # The physical one is restored by its id, into a directory.
    request = RestoreRequest(snapshot=copy.id[:8], target=str(tmp_path / "copy"))
    restored = mysql.restore(loaded, service, request)
    assert restored.snapshot_id == copy.id and (tmp_path / "copy" / "ibdata1").is_file()
    assert any("SHA-256" in line for line in restored.verified)


def test_a_physical_drill_without_an_image_is_refused(
    mariadb: MariaDB,
    database: str,
    physical_defaults: str,
    make_manifest: ManifestFactory,
    tmp_path: Path,
) -> None:
    settings = {"schedule": "0 6 * * 1", "scratch_dir": str(tmp_path / "drill")}
    loaded = physical_manifest(make_manifest, mariadb, physical_defaults, database, drill=settings)
    with pytest.raises(BackupError, match="only drilled in containers"):
        mysql.drill(loaded, loaded.service("db"))


# The drill image must be of the backed-up server's series: the hosts' MariaDB is 10.11.
PHYSICAL_DRILL_IMAGE = os.environ.get("PHYSICAL_DRILL_IMAGE", "local/mariadb:10.11")
OTHER_SERIES_IMAGE = os.environ.get("DRILL_IMAGE", "local/mariadb:11.8")


def labelled(client: Any, loaded: Manifest) -> tuple[list[Any], list[Any]]:
    """The drill containers and volumes of the manifest's verifier."""
    assert loaded.drill is not None
    mine = {"label": f"{LABEL}={owner(loaded.drill.mysql, loaded.drill.scratch_dir)}"}
    return client.containers.list(all=True, filters=mine), client.volumes.list(filters=mine)


def test_the_physical_drill_prepares_and_starts_in_containers_and_leaves_nothing(
    mariadb: MariaDB,
    database: str,
    physical_defaults: str,
    make_manifest: ManifestFactory,
    tmp_path: Path,
) -> None:
    client = docker_with(PHYSICAL_DRILL_IMAGE, OTHER_SERIES_IMAGE)
    sanity = [{"name": "customers", "sql": f"SELECT COUNT(*) = 2000 FROM {database}.customer"}]
    settings: dict[str, Any] = {
        "schedule": "0 6 * * 1",
        "scratch_dir": str(tmp_path / "drill"),
        "mysql": {"image": PHYSICAL_DRILL_IMAGE, "server_args": ["--innodb-buffer-pool-size=64M"]},
    }
    service = mysql_service(
        mariadb, physical_defaults, database, method="physical", sanity_queries=sanity
    )
    loaded = make_manifest({"db": service}, drill=settings)
    try:
        backed_up = mysql.backup(loaded, loaded.service("db"), "full")

        result = drill.drill(loaded, loaded.service("db"))

        assert result.passed, result.error
        assert result.snapshot == backed_up.snapshot_id
        checks = " / ".join(result.checks)
        assert "SHA-256" in checks and "2 tables present as recorded, 4000 rows" in checks
        assert "'customers' holds" in checks and "started on the copy" in checks
        print(f"physical drill (prepare, start, count) in containers: {result.seconds:.1f} s")
        assert labelled(client, loaded) == ([], [])

        # An image of another series is refused before anything is unpacked.
        other = {**settings, "mysql": {**settings["mysql"], "image": OTHER_SERIES_IMAGE}}
        loaded = make_manifest({"db": service}, drill=other)
        failed = drill.drill(loaded, loaded.service("db"))
        assert not failed.passed and "same major.minor series" in (failed.error or "")
        assert labelled(client, loaded) == ([], [])
    finally:
        client.close()
