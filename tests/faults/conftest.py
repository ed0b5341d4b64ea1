"""The fault-injection suite's world: a backup server (rest-server, append-only) holding a
repository, the secrets and manifest an agent needs, a database worth dumping, and
ways to see what happened: snapshots and locks on the server's disk, the failure
metric, the one error line.

Every test breaks something real (a process, a disk, a connection) and states in its
docstring the promise it proves; each bounds its own time with a timeout marker.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from backup_agent import manifest, restic
from backup_agent.metrics import Metrics
from backup_agent.state import State
from tests.agent_process import Finished
from tests.conftest import files_spec, need
from tests.integration.conftest import grant_user, mysql_service
from tests.mariadb_server import MariaDB
from tests.net import HOST, free_port
from tests.rest_server import RestServer

REPO = "agama"  # the repository's path on the backup server
HOST_NAME = "agama"  # the manifest's repository.host
USER = "agent"  # the agents' rest-server user


class Site:
    """A backup server with an initialised repository, and everything an agent needs to
    use it. Passwords are random per site, so that a leak can be searched for."""

    def __init__(self, base: Path) -> None:
        need("restic")
        self.base = base
        self.restic_password = f"restic-{secrets.token_hex(8)}"
        self.rest_password = f"rest-{secrets.token_hex(8)}"
        self.server = RestServer({USER: self.rest_password})
        folder = base / "secrets"
        folder.mkdir(mode=0o700)
        self.password_file = folder / "restic-password"
        self.password_file.write_text(f"{self.restic_password}\n")
        self.credentials_file = folder / "rest-credentials"
        self.credentials_file.write_text(f"{USER}:{self.rest_password}\n")
        self.url = self.server.url(REPO)
        self.state_dir = base / "state"
        restic.init(self.agent_repository())

    def agent_repository(self) -> restic.Repository:
        """The repository as an agent reaches it: through rest-server, append-only."""
        return restic.Repository(
            self.url, str(self.password_file), HOST_NAME, str(self.credentials_file),
            str(self.base / "cache-agent"),
        )  # fmt: skip

    def direct(self) -> restic.Repository:
        """The repository as the maintenance role reaches it: its directory."""
        return restic.Repository(
            str(self.server.data / REPO), str(self.password_file), HOST_NAME,
            cache_dir=str(self.base / "cache-direct"),
        )  # fmt: skip

    def snapshots(self) -> list[restic.Snapshot]:
        return restic.snapshots(self.direct())

    def locks(self) -> list[Path]:
        return self.server.locks(REPO)

    def manifest(
        self,
        services: dict[str, Any],
        *,
        url: str | None = None,
        name: str = "manifest.yaml",
        **top: Any,
    ) -> Path:
        """Write a manifest for ``services`` (repository through ``url``, default the
        server); ``top`` replaces or adds top-level sections."""
        data: dict[str, Any] = {
            "version": 1,
            "work_dir": str(self.base / "work"),
            "repository": {
                "url": url or self.url,
                "password_file": str(self.password_file),
                "credentials_file": str(self.credentials_file),
                "host": HOST_NAME,
                "cache_dir": str(self.base / "cache"),
            },
            "agent": {
                "state_dir": str(self.state_dir),
                "metrics_port": free_port(HOST),
                "metrics_address": HOST,
            },
            "maintenance": {"repository_url": str(self.server.data / REPO), "read_data_subsets": 1},
            "services": services,
            "retention": {"keep_within": "3w", "max_age": "31d"},
            **top,
        }
        path = self.base / name
        path.write_text(yaml.safe_dump(data))
        return path

    def remove(self) -> None:
        self.server.remove()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    made = Site(tmp_path)
    try:
        yield made
    finally:
        made.remove()


def metrics_port(manifest_path: Path) -> int:
    port: int = manifest.load(manifest_path).agent.metrics_port
    return port


def failures(manifest_path: Path, service: str) -> dict[str, float]:
    """``backup_failures_total`` of ``service`` by reason, as an agent publishes it from
    the state file (the way a one-shot run's failure reaches the running agent)."""
    loaded = manifest.load(manifest_path)
    registry = CollectorRegistry()
    Metrics(registry).publish_backups(loaded.service(service), State(loaded.agent.state_dir))
    return {
        sample.labels["reason"]: sample.value
        for family in registry.collect()
        if family.name == "backup_failures"
        for sample in family.samples
        if sample.name == "backup_failures_total" and sample.labels["service"] == service
    }


def processes(name: str, marker: str) -> list[int]:
    """Live processes called ``name`` whose environment contains ``marker`` (a URL)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            named = (proc / "comm").read_text().strip() == name
            if named and marker.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:  # it ended while we looked
            continue
    return found


def one_error(finished: Finished) -> str:
    """The single error line of a failed run, checked to be one readable line."""
    assert finished.code == 1, f"exit {finished.code}: {finished.stderr[-2000:]}"
    errors = finished.errors()
    assert len(errors) == 1, errors
    return checked_line(errors[0])


def checked_line(message: str) -> str:
    """``message``, asserted to be one line naming its own cause, not restic's noise."""
    assert "\n" not in message and "\\n" not in message, message
    assert "Is there a repository" not in message, message
    return message


def files_service(path: Path, **extra: Any) -> dict[str, Any]:
    """A files service, scheduled at night (a test's agent runs it at its first start)."""
    spec = files_spec([str(path)])
    spec.update(extra)
    return spec


def random_tree(root: Path, megabytes: int, files: int = 8) -> Path:
    """``files`` files of random (incompressible) bytes, ``megabytes`` in all."""
    root.mkdir(parents=True, exist_ok=True)
    size = (megabytes << 20) // files
    for n in range(files):
        with (root / f"blob-{n:02d}.bin").open("wb") as out:
            for _ in range(0, size, 1 << 20):
                out.write(secrets.token_bytes(min(1 << 20, size)))
    return root


class Database:
    """A database of about ``megabytes`` of random bytes, and a backup user's option file."""

    def __init__(self, server: MariaDB, base: Path, megabytes: int) -> None:
        self.server = server
        self.name = f"bulk_{uuid.uuid4().hex[:8]}"
        server.execute(f"CREATE DATABASE {self.name}")
        server.execute(
            "CREATE TABLE blobs (id INT PRIMARY KEY, data BLOB) ENGINE=InnoDB",
            f"INSERT INTO blobs SELECT seq, RANDOM_BYTES(1024) FROM seq_1_to_{megabytes * 1024}",
            database=self.name,
        )
        self.defaults_file = grant_user(
            server, base, "SELECT, SHOW VIEW, TRIGGER, EVENT", self.name
        )
        self.user = next(
            line.split("=", 1)[1]
            for line in Path(self.defaults_file).read_text().splitlines()
            if line.startswith("user=")
        )

    def service(self, **extra: Any) -> dict[str, Any]:
        spec = mysql_service(self.server, self.defaults_file, self.name)
        spec.update(extra)
        return spec

    def connections(self) -> int:
        """Connections the backup user ever made (MariaDB's user statistics)."""
        rows = self.server.execute(
            "SET GLOBAL userstat = 1",
            "SELECT TOTAL_CONNECTIONS FROM information_schema.USER_STATISTICS"
            f" WHERE USER = '{self.user}'",
        )
        return int(str(rows[0][0])) if rows else 0

    def sessions(self) -> int:
        """The backup user's open sessions (a dump holds one, with its transaction)."""
        rows = self.server.execute(
            f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{self.user}'"
        )
        return int(str(rows[0][0]))

    def drop(self) -> None:
        self.server.execute(f"DROP DATABASE IF EXISTS {self.name}")


@pytest.fixture(scope="session")
def bulk(mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """40 MiB of random rows (an 80 MB dump): long enough to interrupt mid-stream."""
    mariadb.execute("SET GLOBAL userstat = 1")
    database = Database(mariadb, tmp_path_factory.mktemp("bulk"), 40)
    try:
        yield database
    finally:
        database.drop()
