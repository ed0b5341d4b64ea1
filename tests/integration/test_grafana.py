"""Grafana job against a real SQLite database (Grafana's table layout, see
``tests/grafana_db.py``), real files and a real restic repository."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from backup_agent import cli, restic
from backup_agent.errors import BackupError
from backup_agent.jobs import grafana
from backup_agent.jobs.base import RestoreRequest
from tests import grafana_db
from tests.conftest import ManifestFactory
from tests.grafana_db import GrafanaDirs
from tests.integration.conftest import grafana_service

pytestmark = pytest.mark.integration

SERVICE = "grafana"
OBJECT_TABLES = ("dashboard", "folder", "data_source", "alert_rule")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file below ``root`` by relative path, with its bytes."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def count(db: sqlite3.Connection, query: str) -> int:
    return int(db.execute(query).fetchone()[0])


def independent_counts(path: Path) -> dict[str, int]:
    """The object counts, by queries written here rather than taken from the job."""
    with closing(sqlite3.connect(path)) as db:
        return {
            "dashboards": count(db, "SELECT COUNT(*) FROM dashboard WHERE NOT is_folder"),
            "folders": count(db, "SELECT COUNT(*) FROM folder"),
            "data_sources": count(db, "SELECT COUNT(*) FROM data_source"),
            "alert_rules": count(db, "SELECT COUNT(*) FROM alert_rule"),
        }


def fresh_grafana(
    root: Path, journal_mode: str = "delete"
) -> tuple[GrafanaDirs, grafana_db.Contents]:
    dirs = grafana_db.make_grafana_dirs(root / "data", root / "conf", journal_mode)
    with closing(grafana_db.connect(dirs.database)) as db:
        contents = grafana_db.populate(db, dashboards=200)
    return dirs, contents


class Writer(threading.Thread):
    """Grafana under load: keeps saving dashboards through its own connection.

    Every transaction adds a dashboard and an alert rule pointing at it, so a copy
    that caught half a transaction would have one without the other.
    """

    def __init__(self, database: Path, contents: grafana_db.Contents) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.contents = contents
        self.written = 0
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.progress = threading.Condition()

    def run(self) -> None:
        try:
            with closing(grafana_db.connect(self.database)) as db:
                while not self.stopping.is_set():
                    with db:
                        uid = grafana_db.add_dashboard(
                            db,
                            f"Load {self.written}",
                            folder_uid=self.contents.folder_uids[0],
                            datasource_uid=self.contents.datasource_uids[0],
                            panels=20,
                        )
                        grafana_db.add_alert_rule(
                            db,
                            f"Load rule {self.written}",
                            folder_uid=self.contents.folder_uids[0],
                            datasource_uid=self.contents.datasource_uids[0],
                            dashboard_uid=uid,
                        )
                    with self.progress:
                        self.written += 1
                        self.progress.notify_all()
                    time.sleep(0.002)
        except BaseException as exc:
            self.error = exc
            with self.progress:
                self.progress.notify_all()

    def wait_until(self, written: int, timeout: float = 30.0) -> None:
        with self.progress:
            self.progress.wait_for(lambda: self.written >= written or bool(self.error), timeout)
        self.check()
        assert self.written >= written, f"writer stuck at {self.written} transactions"

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"writer failed: {self.error!r}") from self.error


@contextmanager
def writing(database: Path, contents: grafana_db.Contents) -> Iterator[Writer]:
    writer = Writer(database, contents)
    writer.start()
    try:
        yield writer
    finally:
        writer.stopping.set()
        writer.join(30)
    writer.check()


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_backup_while_grafana_writes_is_a_consistent_copy(
    journal_mode: str,
    make_manifest: ManifestFactory,
    repository: restic.Repository,
    tmp_path: Path,
) -> None:
    dirs, contents = fresh_grafana(tmp_path / "grafana", journal_mode)
    loaded = make_manifest({SERVICE: grafana_service(dirs)})
    before = independent_counts(dirs.database)

    with writing(dirs.database, contents) as writer:
        writer.wait_until(20)
        result = grafana.backup(loaded, loaded.service(SERVICE), "full")
        writer.wait_until(writer.written + 20)
    live = independent_counts(dirs.database)

    snaps = restic.snapshots(repository)
    assert [(s.id, s.hostname) for s in snaps] == [(result.snapshot_id, "testhost")]
    assert sorted(snaps[0].tags) == ["kind=full", f"service={SERVICE}"]
    paths = result.details["paths"]
    assert isinstance(paths, list)
    assert sorted(snaps[0].paths) == sorted(paths)

    restored = tmp_path / "restored"
    restic.restore(repository, result.snapshot_id, str(restored))
    staging = restored / str(result.details["staging"]).lstrip("/")
    copy = staging / grafana.DATABASE_NAME
    assert sha256(copy) == result.details["sha256"]
    assert copy.stat().st_size == result.details["bytes"]
    with closing(sqlite3.connect(copy)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # No half transaction: each load dashboard came with its alert rule, and no
        # row is missing in the middle of the id sequence.
        assert count(db, "SELECT COUNT(*) - MAX(id) FROM dashboard") == 0
        orphans = (
            "SELECT COUNT(*) FROM dashboard d WHERE d.title LIKE 'Load %'"
            " AND NOT EXISTS (SELECT 1 FROM alert_rule r WHERE r.dashboard_uid = d.uid)"
        )
        assert count(db, orphans) == 0
        dangling = (
            "SELECT COUNT(*) FROM alert_rule r WHERE r.dashboard_uid IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM dashboard d WHERE d.uid = r.dashboard_uid)"
        )
        assert count(db, dangling) == 0
    counts = independent_counts(copy)
    assert result.details["counts"] == counts
    # The copy was taken while the writer ran: after its first 20 saves, before its last 20.
    assert before["dashboards"] + 20 <= counts["dashboards"] <= live["dashboards"] - 20
    meta = json.loads((staging / grafana.META_NAME).read_text())
    assert meta == {k: v for k, v in result.details.items() if k != "paths"}
    assert not list(Path(loaded.work_dir).glob(f"{SERVICE}-*")), "staging copy left behind"


LAYOUTS = [
    pytest.param("work-dir-first", id="work-dir-sorts-first"),
    pytest.param("agama", id="config-sorts-first-as-in-agama-yaml"),
]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_restore_gives_back_what_was_backed_up(
    layout: str, make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    if layout == "agama":
        # The package layout of manifests/agama.yaml, below tmp_path.
        dirs = grafana_db.make_grafana_dirs(tmp_path / "var/lib/grafana", tmp_path / "etc/grafana")
        work_dir = tmp_path / "var/tmp/backup-agent"
    else:
        # The staging dir (work_dir/grafana) sorts before Grafana's files (restic sorts
        # a snapshot's paths): restore must find it whatever the order.
        dirs = grafana_db.make_grafana_dirs(tmp_path / "srv/grafana", tmp_path / "srv/etc")
        work_dir = tmp_path / "a-work"
    with closing(grafana_db.connect(dirs.database)) as db:
        grafana_db.populate(db, dashboards=30, alert_rules=6)
    loaded = make_manifest({SERVICE: grafana_service(dirs)}, work_dir=str(work_dir))
    service = loaded.service(SERVICE)
    rows = {table: grafana_db.read_rows(dirs.database, table) for table in OBJECT_TABLES}
    config = {
        "grafana.ini": dirs.config_file.read_bytes(),
        "provisioning": files_under(dirs.provisioning_dir),
        "plugins": files_under(dirs.plugins_dir),
    }
    result = grafana.backup(loaded, service, "full")
    assert result.details["counts"] == {
        "dashboards": 30,
        "folders": 2,
        "data_sources": 3,
        "alert_rules": 6,
    }

    target = tmp_path / "restore-here"
    restored = grafana.restore(loaded, service, RestoreRequest(target=str(target)))

    assert restored.snapshot_id == result.snapshot_id
    assert any("SHA-256" in line for line in restored.verified)
    assert sorted(p.name for p in target.iterdir()) == [
        "grafana.db",
        "grafana.ini",
        "plugins",
        "provisioning",
    ]
    database = target / grafana.DATABASE_NAME
    assert sha256(database) == result.details["sha256"]
    assert {table: grafana_db.read_rows(database, table) for table in OBJECT_TABLES} == rows
    assert {
        "grafana.ini": (target / "grafana.ini").read_bytes(),
        "provisioning": files_under(target / "provisioning"),
        "plugins": files_under(target / "plugins"),
    } == config

    with pytest.raises(BackupError, match=r"already holds grafana\.db, grafana\.ini, provisioning"):
        grafana.restore(loaded, service, RestoreRequest(target=str(target)))

    database.write_bytes(b"not what was backed up")
    (target / "provisioning" / "stray.yaml").write_text("left over\n")
    dry = grafana.restore(
        loaded, service, RestoreRequest(target=str(target), force=True, dry_run=True)
    )
    assert dry.verified == ["dry run: nothing written"]
    assert database.read_bytes() == b"not what was backed up"
    nowhere = tmp_path / "dry-run-target"
    grafana.restore(loaded, service, RestoreRequest(target=str(nowhere), dry_run=True))
    assert not nowhere.exists()

    grafana.restore(loaded, service, RestoreRequest(target=str(target), force=True))
    assert sha256(database) == result.details["sha256"]
    assert files_under(target / "provisioning") == config["provisioning"]


def test_refused_sources_leave_no_snapshot_and_are_not_touched(
    make_manifest: ManifestFactory, repository: restic.Repository, tmp_path: Path
) -> None:
    """A wrong path, a file that is not SQLite, an empty file and another program's
    database are each refused with a clear message; none is created or changed."""
    dirs = grafana_db.make_grafana_dirs(tmp_path / "data", tmp_path / "conf")
    sources = tmp_path / "sources"
    sources.mkdir()
    missing = sources / "grafana.db"
    not_sqlite = sources / "not-sqlite.db"
    not_sqlite.write_bytes(b"SQLite format 2\x00 but not really\n" * 200)
    empty = sources / "empty.db"
    empty.touch()
    other = sources / "other-app.db"
    with closing(sqlite3.connect(other)) as db, db:
        db.execute("CREATE TABLE note (id INTEGER PRIMARY KEY, body TEXT)")
        db.execute("INSERT INTO note (body) VALUES ('not grafana')")
    before = {path.name: path.read_bytes() for path in sources.iterdir()}
    cases = {
        missing: f"cannot copy Grafana database {missing}: unable to open database file",
        not_sqlite: f"cannot copy Grafana database {not_sqlite}: file is not a database",
        empty: rf"{empty} is not a Grafana database \(no table dashboard, data_source\)",
        other: rf"{other} is not a Grafana database \(no table dashboard, data_source\)",
    }

    for source, message in cases.items():
        loaded = make_manifest({SERVICE: grafana_service(dirs, database=str(source))})
        with pytest.raises(BackupError, match=message):
            grafana.backup(loaded, loaded.service(SERVICE), "full")

    loaded = make_manifest({SERVICE: grafana_service(dirs)})
    with pytest.raises(BackupError, match="always full, not 'incremental'"):
        grafana.backup(loaded, loaded.service(SERVICE), "incremental")

    # Read-only: the wrong path was not created, nor any journal beside the others.
    assert {path.name: path.read_bytes() for path in sources.iterdir()} == before
    assert not list(Path(loaded.work_dir).glob(f"{SERVICE}-*")), "staging copy left behind"
    assert restic.snapshots(repository) == []


def test_cli_reports_a_wrong_path_in_one_error_line(
    make_manifest: ManifestFactory,
    repository: restic.Repository,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    dirs = grafana_db.make_grafana_dirs(tmp_path / "data", tmp_path / "conf")
    wrong_dir = tmp_path / "not-grafana"
    wrong_dir.mkdir()
    missing = wrong_dir / "grafana.db"
    state_dir = tmp_path / "state"
    loaded = make_manifest(
        {SERVICE: grafana_service(dirs, database=str(missing))},
        agent={"state_dir": str(state_dir)},
    )

    code = cli.main(["-m", loaded.source, "backup", SERVICE])

    out, err = capfd.readouterr()
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert code == 1
    assert len(errors) == 1 and str(missing) in errors[0], err
    assert "Traceback" not in err
    assert out == ""
    assert list(wrong_dir.iterdir()) == [], "the read-only open created a file"
    assert (state_dir / "state.json").is_file(), "the failed run was not recorded"
    assert restic.snapshots(repository) == []


def test_wrong_repository_password_fails_without_a_snapshot(
    make_manifest: ManifestFactory, repository: restic.Repository, tmp_path: Path
) -> None:
    dirs, _ = fresh_grafana(tmp_path / "grafana")
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the repository password\n")
    impostor = restic.Repository(
        url=repository.url,
        password_file=str(wrong),
        host=repository.host,
        cache_dir=repository.cache_dir,
    )
    loaded = make_manifest(
        {SERVICE: grafana_service(dirs)},
        repository={
            "url": impostor.url,
            "password_file": impostor.password_file,
            "host": impostor.host,
            "cache_dir": impostor.cache_dir,
        },
    )
    assert loaded.repository == impostor

    with pytest.raises(restic.WrongPassword) as caught:
        grafana.backup(loaded, loaded.service(SERVICE), "full")

    assert caught.value.returncode == 12
    assert "wrong password" in str(caught.value)
    assert "not the repository password" not in str(caught.value)
    assert not list(Path(loaded.work_dir).glob(f"{SERVICE}-*")), "staging copy left behind"
    assert restic.snapshots(repository) == []
