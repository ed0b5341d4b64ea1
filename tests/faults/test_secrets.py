"""The secrets canary: the repository password, the rest-server password and the database
password, each unique to this test, are searched for everywhere they must not be while
the agent backs up, fails, checks, applies retention and drills."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.agent_process import Agent, Finished, one_shot, scrape
from tests.conftest import wait_for
from tests.faults.conftest import Database, Site, files_service, metrics_port
from tests.mariadb_server import MariaDB
from tests.net import HOST

pytestmark = pytest.mark.integration


@dataclass
class Sightings:
    """What a watcher of /proc saw: where each secret appeared, and which programs ran."""

    places: set[tuple[str, str, str]] = field(default_factory=set)  # (secret, program, where)
    programs: set[str] = field(default_factory=set)


class ProcWatcher:
    """Reads every process's command line and environment every few milliseconds."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = {name: value.encode() for name, value in secrets.items()}
        self.seen = Sightings()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopped.wait(0.005):
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    program = (proc / "comm").read_text().strip()
                    cmdline = (proc / "cmdline").read_bytes()
                    environ = (proc / "environ").read_bytes()
                except OSError:  # gone while we looked
                    continue
                self.seen.programs.add(program)
                for name, secret in self.secrets.items():
                    if secret in cmdline:
                        self.seen.places.add((name, program, "command line"))
                    for variable in environ.split(b"\0"):
                        if secret in variable:
                            where = variable.split(b"=", 1)[0].decode()
                            self.seen.places.add((name, program, f"environment {where}"))

    def stop(self) -> Sightings:
        self.stopped.set()
        self.thread.join()
        return self.seen


@pytest.fixture
def small(mariadb: MariaDB, tmp_path: Path) -> Iterator[Database]:
    database = Database(mariadb, tmp_path, 24)  # a dump that lasts long enough to be seen
    try:
        yield database
    finally:
        database.drop()


@pytest.mark.timeout(240)
def test_no_secret_in_any_command_line_environment_log_metric_or_error(
    site: Site, small: Database, scratch_mariadb: MariaDB, tmp_path: Path
) -> None:
    """Promise: the restic password, the rest-server password and the database password
    appear in no process's command line; in no environment except the rest-server
    credentials in restic's own (RESTIC_REST_PASSWORD: restic accepts them nowhere else;
    the repository password reaches it as a file); and in no log line, metric, error,
    state file or drill report, through backups, a failure, a check, retention and
    drills."""
    mysql_password = next(
        line.split("=", 1)[1]
        for line in Path(small.defaults_file).read_text().splitlines()
        if line.startswith("password=")
    )
    secrets = {
        "restic password": site.restic_password,
        "rest-server password": site.rest_password,
        "database password": mysql_password,
    }
    source = tmp_path / "data"
    source.mkdir()
    (source / "notes.txt").write_text("canary test\n")
    scratch = scratch_mariadb.defaults_file(tmp_path / "scratch.cnf", "root", "")
    drill = {
        "schedule": "0 6 * * 1",
        "scratch_dir": str(tmp_path / "drills"),
        "mysql": {"socket": scratch_mariadb.socket, "defaults_file": scratch},
    }
    path = site.manifest({"db": small.service(), "files": files_service(source)}, drill=drill)
    watcher = ProcWatcher(secrets)
    agent = Agent(path, tmp_path / "agent.log", metrics_port(path))
    outputs: list[Finished] = []
    try:
        agent.start()
        wait_for("both first backups", lambda: len(agent.find("finished")) == 2, 90)
        metrics = scrape(agent.port, HOST) or ""
        assert "backup_last_success_timestamp_seconds" in metrics
        # A failure whose messages name the server and the repository.
        elsewhere = site.manifest(
            {"files": files_service(source)}, name="elsewhere.yaml", url=site.server.url("gone")
        )
        outputs.append(one_shot(elsewhere, "backup", "files", "--kind", "full", timeout=100))
        assert outputs[-1].code == 1
        for verb in ("check", "retention", "drill"):
            outputs.append(one_shot(path, verb, timeout=120))
            assert outputs[-1].code == 0, outputs[-1].stderr[-2000:]
        assert agent.stop()[0] == 0
    finally:
        agent.kill()
        seen = watcher.stop()

    assert {"restic", "mariadb-dump"} <= seen.programs, "the watcher missed the commands"
    # restic's environment, also seen in the instant before setpriv becomes restic, and
    # in the instant before `env -i` starts a sealed record's feeder without it.
    documented = {
        ("rest-server password", program, "environment RESTIC_REST_PASSWORD")
        for program in ("restic", "setpriv", "env")
    }
    assert seen.places <= documented and seen.places, seen.places
    texts = {
        "agent log": agent.log.read_text(),
        "metrics": metrics,
        "rest-server access log": site.server.access_log.read_text(),
        "rest-server log": site.server.log.read_text(),
        **{f"command {n}": done.stdout + done.stderr for n, done in enumerate(outputs)},
        # the state file and the drill report
        **{str(p): p.read_text() for p in site.state_dir.rglob("*") if p.is_file()},
    }
    leaks = [(name, where) for where, text in texts.items() for name, value in secrets.items()
             if value in text]  # fmt: skip
    assert leaks == []
