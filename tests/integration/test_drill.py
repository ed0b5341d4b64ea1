"""Restore drills against real restic, MariaDB, SQLite and files (scratch-server mode).

The docker-based drill is in test_drill_docker.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from backup_agent import cli, drill, restic
from backup_agent.errors import BackupError
from backup_agent.jobs import files, grafana, mysql
from backup_agent.jobs.base import RestoreRequest
from backup_agent.metrics import Metrics
from tests import grafana_db
from tests.conftest import ManifestFactory, files_spec
from tests.integration.conftest import grafana_service, mysql_service, scratch_drill
from tests.mariadb_server import MariaDB

pytestmark = pytest.mark.integration


@pytest.fixture
def plan(
    mariadb: MariaDB,
    scratch_mariadb: MariaDB,
    database: str,
    backup_defaults: str,
    root_defaults: str,
    make_manifest: ManifestFactory,
    tmp_path: Path,
) -> dict[str, Any]:
    """Services of every type plus a drill section using the scratch server."""
    dirs = grafana_db.make_grafana_dirs(tmp_path / "grafana", tmp_path / "etc-grafana")
    with grafana_db.connect(dirs.database) as db:
        grafana_db.populate(db, dashboards=8, alert_rules=3)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    for n in range(30):
        (tree / "sub" / f"f{n}.bin").write_bytes(bytes([n]) * (1000 + n))
    sanity = [
        {"name": "customers present", "sql": f"SELECT COUNT(*) >= 2000 FROM {database}.customer"},
        {
            "name": "newest row within RPO of the snapshot",
            "sql": "SELECT TIMESTAMPDIFF(SECOND, MAX(created), {snapshot_time})"
            f" <= {{rpo_seconds}} FROM {database}.customer",
        },
    ]
    mariadb.execute(f"UPDATE {database}.customer SET created = UTC_TIMESTAMP() WHERE id = 1")
    return {
        "services": {
            "db": mysql_service(mariadb, backup_defaults, database, sanity_queries=sanity),
            "grafana": grafana_service(dirs),
            "files": files_spec([str(tree)]),
        },
        "drill": scratch_drill(scratch_mariadb, tmp_path, file_sample=10),
    }


def back_up_everything(loaded: Any) -> None:
    mysql.backup(loaded, loaded.service("db"), "full")
    grafana.backup(loaded, loaded.service("grafana"), "full")
    files.backup(loaded, loaded.service("files"), "full")


def test_drills_prove_every_service_and_feed_metrics(
    plan: dict[str, Any],
    make_manifest: ManifestFactory,
    scratch_mariadb: MariaDB,
    database: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    loaded = make_manifest(plan["services"], drill=plan["drill"])
    back_up_everything(loaded)

    code = cli.main(["-m", loaded.source, "drill"])

    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(Path(plan["drill"]["report_file"]).read_text())
    for name in ("db", "grafana", "files"):
        entry = report["services"][name]
        assert entry["passed"] and entry["error"] is None, entry
        assert 0 < entry["seconds"] < entry["rto_target_seconds"]
    db_checks = " / ".join(report["services"]["db"]["checks"])
    assert "SHA-256" in db_checks and "2 tables present" in db_checks
    assert "sanity query 'newest row within RPO of the snapshot' holds" in db_checks
    assert "10 sampled file(s)" in " / ".join(report["services"]["files"]["checks"])
    assert report["repository_check"]["passed"]
    # Nothing is left behind: the scratch server no longer has the database, no scratch files.
    assert scratch_mariadb.execute(f"SHOW DATABASES LIKE '{database}'") == []
    assert not any(Path(plan["drill"]["scratch_dir"]).glob("*/*"))
    # The verifier's /metrics read the report.
    registry = CollectorRegistry()
    Metrics(registry, "verifier", plan["drill"]["report_file"])
    assert registry.get_sample_value("backup_drill_last_success", {"service": "db"}) == 1
    seconds = registry.get_sample_value("backup_drill_duration_seconds", {"service": "db"})
    assert seconds == pytest.approx(report["services"]["db"]["seconds"])
    assert "PASS db:" in out and "PASS repository check" in out
    # plan: the dump's size (from the repository) over the drill's measured throughput.
    rate = report["services"]["db"]["restore_rates"]["logical"]
    assert rate["bytes"] > 0
    assert rate["seconds"] == pytest.approx(report["services"]["db"]["seconds"], abs=0.001)
    assert cli.main(["-m", loaded.source, "plan"]) == 0
    planned = capsys.readouterr().out
    expected = r"\n  db +logical  ~\d+s for \d+ (MB|bytes) at [\d.]+ MB/s \(drill of "
    assert re.search(expected, planned), planned


def test_a_drill_slower_than_its_rto_target_fails(
    plan: dict[str, Any], make_manifest: ManifestFactory
) -> None:
    plan["services"]["db"]["rto"] = {"target": "1s", "limit": "2h"}
    slow = "SELECT SLEEP(1.5) = 0"
    plan["services"]["db"]["mysql"]["sanity_queries"] = [{"name": "slow", "sql": slow}]
    loaded = make_manifest(plan["services"], drill=plan["drill"])
    mysql.backup(loaded, loaded.service("db"), "full")

    result = drill.drill(loaded, loaded.service("db"))

    assert not result.passed and result.error is not None
    assert "above the RTO target 1s" in result.error


def test_a_failing_sanity_query_fails_the_drill_and_cleans_up(
    plan: dict[str, Any], make_manifest: ManifestFactory, scratch_mariadb: MariaDB, database: str
) -> None:
    plan["services"]["db"]["mysql"]["sanity_queries"] = [
        {"name": "impossible", "sql": f"SELECT COUNT(*) > 1000000 FROM {database}.customer"}
    ]
    loaded = make_manifest(plan["services"], drill=plan["drill"])
    mysql.backup(loaded, loaded.service("db"), "full")
    result = drill.drill(loaded, loaded.service("db"))
    assert not result.passed and result.error == "sanity query 'impossible' returned 0"
    assert scratch_mariadb.execute(f"SHOW DATABASES LIKE '{database}'") == []


def test_a_corrupted_pack_fails_with_one_clear_error(
    plan: dict[str, Any],
    make_manifest: ManifestFactory,
    repository: restic.Repository,
    capfd: pytest.CaptureFixture[str],
) -> None:
    loaded = make_manifest({"files": plan["services"]["files"]}, drill=plan["drill"])
    files.backup(loaded, loaded.service("files"), "full")
    # Flip one byte in every data pack (tree blobs may be served from restic's cache).
    for pack in (p for p in (Path(repository.url) / "data").rglob("*") if p.is_file()):
        data = bytearray(pack.read_bytes())
        data[len(data) // 2] ^= 0xFF
        pack.chmod(0o644)
        pack.write_bytes(bytes(data))

    code = cli.main(
        ["-m", loaded.source, "restore", "files", "--to", str(Path(loaded.work_dir) / "out")]
    )

    errors = [line for line in capfd.readouterr().err.splitlines() if " ERROR " in line]
    assert code == 1 and len(errors) == 1, errors
    result = drill.drill(loaded, loaded.service("files"))
    assert not result.passed and result.error


def test_missing_snapshot_and_occupied_target_are_refused(
    plan: dict[str, Any], make_manifest: ManifestFactory, mariadb: MariaDB, database: str
) -> None:
    loaded = make_manifest(plan["services"], drill=plan["drill"])
    with pytest.raises(BackupError, match="no trusted snapshot of service db"):
        mysql.restore(loaded, loaded.service("db"), RestoreRequest())
    with pytest.raises(BackupError, match="no snapshot 'deadbeef'"):
        files.restore(
            loaded, loaded.service("files"), RestoreRequest(snapshot="deadbeef", target="/tmp/x")
        )
    mysql.backup(loaded, loaded.service("db"), "full")
    with pytest.raises(BackupError, match=f"{database} on .* already hold tables"):
        mysql.restore(loaded, loaded.service("db"), RestoreRequest())


def test_restore_with_a_wrong_password_fails_clearly(
    plan: dict[str, Any],
    make_manifest: ManifestFactory,
    repository: restic.Repository,
    tmp_path: Path,
) -> None:
    loaded = make_manifest({"files": plan["services"]["files"]}, drill=plan["drill"])
    files.backup(loaded, loaded.service("files"), "full")
    Path(repository.password_file).write_text("wrong\n")
    with pytest.raises(restic.WrongPassword, match="wrong password"):
        files.restore(loaded, loaded.service("files"), RestoreRequest(target=str(tmp_path / "o")))


def test_a_drill_never_loads_into_or_drops_a_database_it_did_not_create(
    plan: dict[str, Any], make_manifest: ManifestFactory, scratch_mariadb: MariaDB, database: str
) -> None:
    """The databases a drill drops afterwards are named by the snapshot's record (hostile
    input): one that already exists on the scratch server, even empty, is refused."""
    loaded = make_manifest({"db": plan["services"]["db"]}, drill=plan["drill"])
    mysql.backup(loaded, loaded.service("db"), "full")
    scratch_mariadb.execute(
        f"CREATE DATABASE {database}",
        f"CREATE PROCEDURE {database}.keep_me() SELECT 1",
    )
    try:
        result = drill.drill(loaded, loaded.service("db"))
        assert not result.passed and result.error is not None
        assert "already exist on the drill server" in result.error
        assert scratch_mariadb.execute(f"SHOW DATABASES LIKE '{database}'") == [(database,)]
    finally:
        scratch_mariadb.execute(f"DROP DATABASE IF EXISTS {database}")
