"""The agent as it runs in production: a container of the agent image (``make
base-images`` builds ``local/backup-agent:dev``; ``BACKUP_AGENT_TEST_AGENT_IMAGE`` picks
another). ``docker stop`` in the middle of a backup, and a container recreated under a
new host name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.agent_process import one_shot
from tests.conftest import docker_with, wait_for
from tests.faults.conftest import HOST_NAME, REPO, Site, files_service, random_tree
from tests.faults.proxy import Proxy
from tests.forge import forge
from tests.net import HOST, free_port

pytestmark = pytest.mark.integration

IMAGE = os.environ.get("BACKUP_AGENT_TEST_AGENT_IMAGE", "local/backup-agent:dev")
UID = 10001  # the image's backup user
MANIFEST = "/etc/backup-agent/manifest.yaml"


class Containers:
    """Agent containers of one test, named ``fs-agent-...``, sharing a state directory,
    the site's secrets (mounted as docker secrets are) and a source directory."""

    def __init__(self, site: Site, source: Path, url: str) -> None:
        docker_with(IMAGE)
        self.names: list[str] = []
        self.secrets = site.base / "container-secrets"
        self.secrets.mkdir()
        for name, path in (("restic_password", site.password_file),
                           ("rest_credentials", site.credentials_file)):  # fmt: skip
            shutil.copy(path, self.secrets / name)
        self.state = site.base / "container-state"
        self.state.mkdir()
        for path in (self.secrets, *self.secrets.iterdir(), self.state):
            os.chown(path, UID, UID)
        self.source = source
        self.port = free_port(HOST)
        repository = {
            "url": url,
            "password_file": "/run/secrets/restic_password",
            "credentials_file": "/run/secrets/rest_credentials",
            "host": HOST_NAME,
            "cache_dir": "/var/lib/backup-agent/cache",
        }
        agent = {"state_dir": "/var/lib/backup-agent", "metrics_port": self.port,
                 "metrics_address": HOST}  # fmt: skip
        service = files_service(Path("/data"))
        self.manifest = site.manifest(
            {"files": service}, name="container.yaml", repository=repository, agent=agent,
            work_dir="/var/tmp/backup-agent",
        )  # fmt: skip
        self.manifest.chmod(0o644)

    def run(self, *argv: str, hostname: str = "fs-agent", detach: bool = False) -> str:
        """``backup-agent ARGV`` in a new container; its name (detached) or its output."""
        name = f"fs-agent-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        command = ["docker", "run", "--name", name, "--hostname", hostname, "--network", "host"]
        command += ["--stop-timeout", "60", "--env", "BACKUP_AGENT_LOG_FORMAT=json"]
        for host_path, path, mode in (
            (self.manifest, MANIFEST, "ro"),
            (self.secrets, "/run/secrets", "ro"),
            (self.source, "/data", "ro"),
            (self.state, "/var/lib/backup-agent", "rw"),
        ):
            command += ["--volume", f"{host_path}:{path}:{mode}"]
        command += ["--detach"] if detach else []
        done = docker(*command[1:], IMAGE, "-m", MANIFEST, *argv)
        return name if detach else done.stdout + done.stderr

    def logs(self, name: str) -> list[dict[str, Any]]:
        out = docker("logs", name).stderr
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def find(self, name: str, msg: str, **fields: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.logs(name)
            if e["msg"] == msg and all(e.get(k) == v for k, v in fields.items())
        ]

    def remove(self) -> None:
        if self.names:
            subprocess.run(["docker", "rm", "--force", *self.names], capture_output=True)


def docker(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(argv)}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done


@pytest.fixture
def slow(site: Site) -> Iterator[Proxy]:
    proxy = Proxy((site.server.address, site.server.port), rate=4 << 20)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.mark.timeout(240)
def test_docker_stop_mid_backup_exits_cleanly_and_the_restart_catches_up(
    site: Site, slow: Proxy, tmp_path: Path
) -> None:
    """Promise: ``docker stop`` of an agent container in the middle of an upload ends the
    container with exit code 0 well within docker's grace period; restic saves nothing
    and removes its lock; ``docker start`` runs the interrupted backup again, and it
    succeeds, with nobody stepping in."""
    source = random_tree(tmp_path / "data", 48)
    containers = Containers(site, source, slow.url(REPO))
    try:
        name = containers.run("run", "--role", "backup", detach=True)
        wait_for("8 MiB uploaded", lambda: slow.uploaded > 8 << 20, 90, every=0.05)
        started = datetime.now(UTC)
        docker("stop", "--time", "60", name)
        took = (datetime.now(UTC) - started).total_seconds()
        state = json.loads(docker("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0, containers.logs(name)[-5:]
        assert took < 20, f"docker stop took {took:.1f} s"
        assert containers.find(name, "interrupted", task="files/full")
        assert site.locks() == []
        assert site.snapshots() == []

        slow.rate = None
        docker("start", name)
        wait_for(
            "the backup after docker start",
            lambda: containers.find(name, "finished", task="files/full"),
            120,
        )
        assert [s.tag("service") for s in site.snapshots()] == ["files"]
        assert site.locks() == []
        docker("stop", name)
    finally:
        containers.remove()


@pytest.mark.timeout(240)
def test_a_container_recreated_with_a_new_host_name_keeps_retention_exact(
    site: Site, tmp_path: Path
) -> None:
    """Promise: snapshots carry the manifest's ``repository.host``, never the container's
    host name, so a container recreated under a new host name continues the same
    history, and retention removes exactly what the policy says across both."""
    source = tmp_path / "data"
    source.mkdir()
    (source / "report.csv").write_text("first\n")
    source.chmod(0o755)
    (source / "report.csv").chmod(0o644)
    containers = Containers(site, source, site.url)
    agent = site.agent_repository()
    now = datetime.now(UTC)
    old = {
        forge(agent, now - timedelta(days=days), {"service": "files", "kind": "full"}, bytes(days))
        for days in (25, 40)
    }
    try:
        containers.run("backup", "files", "--kind", "full", hostname="fs-old-container")
        (source / "report.csv").write_text("second\n")
        containers.run("backup", "files", "--kind", "full", hostname="fs-new-container")
    finally:
        containers.remove()
    made = {s.id for s in site.snapshots()} - old
    assert len(made) == 2
    assert {s.hostname for s in site.snapshots()} == {HOST_NAME}

    maintenance = site.manifest({"files": files_service(source)}, name="maintenance.yaml")
    retention = one_shot(maintenance, "retention")
    assert retention.code == 0, retention.stderr[-2000:]
    assert {s.id for s in site.snapshots()} == made
