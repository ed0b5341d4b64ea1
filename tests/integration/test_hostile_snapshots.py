"""Snapshots as an attacker who controls one sidecar writes them: real restic, real
MariaDB, real client processes.

Promises proved here:
- a dump carrying client commands (``\\!``, ``system``, ``\\.``/``source`` of a local
  file, a ``DELIMITER`` trick) is refused by restore and by the drill, and none of
  the commands runs, even when its record's SHA-256 matches;
- a snapshot dated in the future is never the "latest" that a restore, a drill or the
  files job's parent uses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backup_agent import cli, drill, restic, snapshots
from backup_agent.jobs import files, mysql
from backup_agent.jobs.base import RestoreRequest
from backup_agent.manifest import Manifest
from tests.conftest import ManifestFactory, files_spec
from tests.forge import forge
from tests.integration.conftest import mysql_service, scratch_drill
from tests.mariadb_server import MariaDB

pytestmark = pytest.mark.integration

HEADER = (
    "-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)\n"
    "/*!40101 SET NAMES utf8mb4 */;\n"
)
TRAILER = "-- Dump completed on 2026-12-01 10:00:00\n"


def attacks(work: Path, database: str) -> dict[str, str]:
    """Dump bodies that try to make the loading client run something; each leaves a
    marker file (or a marker database) if it succeeds."""
    local = work / "local.sql"  # the fixture writes it: it creates {database}_sourced
    marker = work / "pwned"
    return {
        "bang": f"\\! touch {marker}-bang\n",
        "system": f"system touch {marker}-system\n",
        "source-short": f"\\. {local}\n",
        "source": f"source {local}\n",
        "delimiter": f"DELIMITER ;;\nSELECT 1;;\n\\! touch {marker}-delimiter\n;;\nDELIMITER ;\n",
        "inline": f"SELECT 1; \\! touch {marker}-inline\n",
        "comment": f"/*!40101 \\! touch {marker}-comment */\n",
        "crlf": f"SELECT 1;\r\nsystem touch {marker}-crlf\r\n",
    }


def hostile_dump(database: str, body: str) -> bytes:
    """A dump of ``database`` with one table, laid out as mariadb-dump writes it (so the
    parallel loader is already loading the table when ``body`` arrives in its data)."""
    return (
        f"{HEADER}\n--\n-- Current Database: `{database}`\n--\n\n"
        f"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `{database}`;\n\nUSE `{database}`;\n\n"
        "--\n-- Table structure for table `t`\n--\n\n"
        "CREATE TABLE `t` (`id` int NOT NULL, PRIMARY KEY (`id`));\n\n"
        "--\n-- Dumping data for table `t`\n--\n\n"
        f"{body}INSERT INTO `t` VALUES (1);\n\n{TRAILER}"
    ).encode()


def plant(loaded: Manifest, dump: bytes, databases: list[str], when: datetime) -> str:
    """A forged MySQL snapshot and a record whose SHA-256 matches it."""
    repo = loaded.repository
    tags = {"service": "db", "kind": "full"}
    dump_id = forge(repo, when, tags, dump, filename="db.sql")
    record = {
        "snapshot": dump_id,
        "bytes": len(dump),
        "sha256": hashlib.sha256(dump).hexdigest(),
        "databases": databases,
        "tables": {databases[0]: {"t": 1}},
    }
    meta_tags = {"service": "db", "kind": "meta", "of": dump_id}
    forge(repo, when, meta_tags, json.dumps(record).encode(), filename="db.meta.json")
    return dump_id


@pytest.fixture
def hostile(
    mariadb: MariaDB,
    scratch_mariadb: MariaDB,
    backup_defaults: str,
    root_defaults: str,
    database: str,
    make_manifest: ManifestFactory,
    tmp_path: Path,
) -> Callable[[str], tuple[Manifest, Path, str]]:
    """Plant the attack ``name``; return the manifest, the work dir and the target db."""

    def make(name: str) -> tuple[Manifest, Path, str]:
        work = tmp_path / name
        work.mkdir()
        target = f"{database}_{name.replace('-', '_')}"
        service = mysql_service(mariadb, backup_defaults, database)
        service["mysql"]["restore_defaults_file"] = root_defaults
        loaded = make_manifest({"db": service}, drill=scratch_drill(scratch_mariadb, tmp_path))
        (work / "local.sql").write_text(f"CREATE DATABASE {target}_sourced;\n")
        body = attacks(work, target)[name]
        plant(loaded, hostile_dump(target, body), [target], datetime.now(UTC))
        return loaded, work, target

    return make


def nothing_ran(work: Path, target: str, *servers: MariaDB) -> None:
    assert sorted(p.name for p in work.glob("pwned*")) == []
    for server in servers:
        assert server.execute(f"SHOW DATABASES LIKE '{target}_sourced'") == []


ATTACKS = sorted(attacks(Path("/nonexistent"), "x"))


@pytest.mark.parametrize("name", ATTACKS)
def test_restore_refuses_a_dump_with_client_commands_and_nothing_runs(
    name: str,
    hostile: Callable[[str], tuple[Manifest, Path, str]],
    mariadb: MariaDB,
    capfd: pytest.CaptureFixture[str],
) -> None:
    loaded, work, target = hostile(name)
    capfd.readouterr()
    code = cli.main(["-m", loaded.source, "restore", "db", "--force"])
    err = capfd.readouterr().err
    assert code == 1, err
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert len(errors) == 1, err
    nothing_ran(work, target, mariadb)


@pytest.mark.parametrize("name", ATTACKS)
def test_the_drill_fails_on_a_dump_with_client_commands_and_nothing_runs(
    name: str,
    hostile: Callable[[str], tuple[Manifest, Path, str]],
    mariadb: MariaDB,
    scratch_mariadb: MariaDB,
) -> None:
    loaded, work, target = hostile(name)
    result = drill.drill(loaded, loaded.service("db"))
    assert not result.passed and result.error
    nothing_ran(work, target, mariadb, scratch_mariadb)
    assert scratch_mariadb.execute(f"SHOW DATABASES LIKE '{target}'") == []


# --- "latest" never trusts the future ---------------------------------------------------

NEXT_MONTH = timedelta(days=30)


def test_restore_and_drill_ignore_a_future_dated_dump(
    mariadb: MariaDB,
    scratch_mariadb: MariaDB,
    database: str,
    backup_defaults: str,
    root_defaults: str,
    make_manifest: ManifestFactory,
    tmp_path: Path,
) -> None:
    service = mysql_service(mariadb, backup_defaults, database)
    loaded = make_manifest({"db": service}, drill=scratch_drill(scratch_mariadb, tmp_path))
    genuine = mysql.backup(loaded, loaded.service("db"), "full").snapshot_id
    forged_db = f"{database}_forged"
    forged = plant(
        loaded,
        hostile_dump(forged_db, ""),
        [forged_db],
        datetime.now(UTC) + NEXT_MONTH,
    )
    chosen, _ = mysql.record.select_dump(loaded, loaded.service("db"), "latest")
    assert chosen.id == genuine != forged
    result = drill.drill(loaded, loaded.service("db"))
    assert result.passed, result.error
    assert result.snapshot == genuine
    dry = mysql.restore(loaded, loaded.service("db"), RestoreRequest(dry_run=True, force=True))
    assert dry.snapshot_id == genuine


def test_the_files_parent_and_restore_ignore_a_future_dated_snapshot(
    make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("genuine\n")
    loaded = make_manifest({"docs": files_spec([str(source)])})
    docs = loaded.service("docs")
    genuine = files.backup(loaded, docs, "full").snapshot_id
    tags: dict[str, Any] = {"service": "docs", "kind": "full"}
    forge(loaded.repository, datetime.now(UTC) + NEXT_MONTH, tags, b"forged")
    (source / "b.txt").write_text("more\n")
    second = files.backup(loaded, docs, "incremental")
    assert second.details["parent"] == genuine
    listed = snapshots.of_service(loaded, docs)
    assert snapshots.select(loaded, docs, "latest", listed).id == second.snapshot_id
    out = tmp_path / "restored"
    files.restore(loaded, docs, RestoreRequest(target=str(out)))
    assert (out / str(source).lstrip("/") / "b.txt").read_text() == "more\n"
    assert restic.snapshots(loaded.repository, {"service": "docs"})[-1].time > datetime.now(UTC)
