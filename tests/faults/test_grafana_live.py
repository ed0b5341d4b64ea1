"""Grafana keeps writing its database while the agent backs it up."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests.agent_process import one_shot
from tests.conftest import wait_for
from tests.faults.conftest import Site
from tests.grafana_db import connect, make_grafana_dirs, populate
from tests.integration.conftest import grafana_service

pytestmark = pytest.mark.integration

# A second process standing in for Grafana: one transaction after another, each adding a
# folder (a dashboard row with is_folder=1 and a folder row) and a dashboard in it.
WRITER = """
import sys
from pathlib import Path
from tests.grafana_db import add_dashboard, add_folder, connect
db = connect(Path(sys.argv[1]))
n = 0
while True:
    with db:
        uid = add_folder(db, f"Live folder {n}")
        add_dashboard(db, f"Live dashboard {n}", folder_uid=uid)
    n += 1
"""


def commits(database: Path) -> int:
    """Transactions the writer has committed so far."""
    with closing(connect(database)) as db:
        query = "SELECT COUNT(*) FROM folder WHERE title LIKE 'Live folder %'"
        return int(db.execute(query).fetchone()[0])


@pytest.mark.timeout(180)
@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_grafana_written_during_its_backup_gives_a_consistent_copy_that_drills(
    site: Site, tmp_path: Path, journal_mode: str
) -> None:
    """Promise: while Grafana commits one transaction after another, its backup is a
    consistent copy: it passes integrity_check, holds whole transactions only (every
    folder row with its dashboard row), and its drill passes."""
    dirs = make_grafana_dirs(tmp_path / "grafana", tmp_path / "etc-grafana", journal_mode)
    with closing(connect(dirs.database)) as db:
        populate(db, folders=20, dashboards=2000)  # a few MB: the copy takes a moment
    drill = {"schedule": "0 6 * * 1", "scratch_dir": str(tmp_path / "drills")}
    path = site.manifest({"grafana": grafana_service(dirs)}, drill=drill)
    root = Path(__file__).resolve().parents[2]
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(dirs.database)], cwd=root)
    try:
        wait_for("the writer to commit", lambda: commits(dirs.database) > 10, 30, every=0.1)
        before = commits(dirs.database)
        backup = one_shot(path, "backup", "grafana", timeout=120)
        during = commits(dirs.database) - before
    finally:
        writer.kill()
        writer.wait()
    assert backup.code == 0, backup.stderr[-2000:]
    assert during > 0, "the writer committed nothing while the backup ran"

    drilled = one_shot(path, "drill", "grafana", timeout=120)
    assert drilled.code == 0, drilled.stdout + drilled.stderr[-2000:]
    assert "PASS grafana" in drilled.stdout
    restored = tmp_path / "restored"
    done = one_shot(path, "restore", "grafana", "--to", str(restored), timeout=120)
    assert done.code == 0, done.stderr[-2000:]
    with closing(sqlite3.connect(restored / "grafana.db")) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        folders = copy.execute("SELECT COUNT(*) FROM folder").fetchone()[0]
        folder_rows = copy.execute("SELECT COUNT(*) FROM dashboard WHERE is_folder = 1")
        assert folder_rows.fetchone()[0] == folders
        live = copy.execute(
            "SELECT COUNT(*) FROM dashboard WHERE title LIKE 'Live dashboard %'"
        ).fetchone()[0]
        assert live == folders - 20 >= before
