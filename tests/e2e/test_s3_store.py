"""The compose stack with its repositories on S3 (BACKUP_STORE=s3, no rest-server runs) or
copied to S3 beside rest-server (BACKUP_STORE=rest+s3), for real: the Ceph RGW stand-in
image, the s3-setup one-shot, the repository init, an agent's backup, the store refusing
the agent's deletion, the maintenance role's retention, check and copy, a restore.

Only the services these need are started (no database, Grafana or Prometheus: test_stack
covers them with rest-server); the images are those `make base-images` builds, or
AGENT_IMAGE, SERVER_IMAGE and S3_IMAGE.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.test_stack import Stack, docker_ids, require_docker, say, write_files

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {
    "AGENT_IMAGE": "local/backup-agent:dev",
    "SERVER_IMAGE": "local/backup-server:dev",
    "S3_IMAGE": "local/ceph-rgw:debian",
}


def ensure_images() -> None:
    """The images this test runs (environment or defaults); `make base-images` if missing."""
    wanted = [os.environ.get(name, default) for name, default in IMAGES.items()]
    missing = [
        image
        for image in wanted
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode
    ]
    if missing:
        say(f"building images ({', '.join(missing)} missing): make base-images")
        subprocess.run(["make", "--no-print-directory", "base-images"], cwd=ROOT, check=True)


@pytest.fixture
def store_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of its own project name, no e2e manifest override, secrets created."""
    require_docker()
    ensure_images()
    stack = Stack(tmp_path)  # its project name: BACKUP_AGENT_E2E_PROJECT-RANDOM
    stack.env["STACK_FILES"] = ""
    stack.files.mkdir()
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "secrets.sh")],
        env=stack.env,
        check=True,
        capture_output=True,
    )
    try:
        yield stack
    finally:
        stack.down(check=False)
        shutil.rmtree(stack.secrets, ignore_errors=True)


def up(stack: Stack, *services: str) -> None:
    say(f"starting {', '.join(services)} (BACKUP_STORE={stack.env['BACKUP_STORE']})")
    result = stack.compose("up", "-d", "--wait", *services, check=False, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"up failed:\n{result.stderr[-3000:]}\n{stack.logs()[-6000:]}")


def first_snapshot(stack: Stack, service: str = "files-agent") -> None:
    """The agent backs up at its first start; wait until its snapshot is listed."""

    def listed() -> bool:
        out = stack.compose(
            "exec", "-T", service, "backup-agent", "snapshots", "files", "--json", check=False
        ).stdout
        return '"id"' in out

    wait_for("the files agent's first backup", listed, timeout=300, every=5)


def first_copy_done(stack: Stack) -> bool:
    """Whether the maintenance role's scheduled copy has ended (passed or failed)."""
    for line in stack.compose("logs", "--no-color", "maintenance").stdout.splitlines():
        text = line.partition("| ")[2]
        if not text.startswith("{"):
            continue
        record = json.loads(text)
        if record.get("task") == "copy" and (
            record.get("msg") == "finished" or record.get("level") == "error"
        ):
            return True
    return False


def assert_nothing_left(stack: Stack) -> None:
    label = f"label=com.docker.compose.project={stack.project}"
    assert docker_ids("container", label) == set()
    assert docker_ids("network", label) == set()
    assert docker_ids("volume", label) == set()


def test_the_repositories_on_s3_with_one_setting(store_stack: Stack) -> None:
    stack = store_stack
    stack.env["BACKUP_STORE"] = "s3"
    written = write_files(stack.files)
    up(stack, "files-agent", "maintenance")
    setup_log = stack.compose("logs", "--no-color", "s3-setup").stdout
    assert "bucket policy set" in setup_log, setup_log
    services = stack.compose("ps", "--all", "--format", "{{.Service}}").stdout.split()
    assert "s3" in services and "backup-server" not in services, services  # S3 instead
    # Prometheus' backup-server job scrapes the store instead (prometheus-s3.yml).
    scrape = "import urllib.request as u; print(u.urlopen('http://s3:9283/metrics').read())"
    assert "s3_gateway_up 1" in stack.exec("maintenance", "python3", "-c", scrape).stdout
    first_snapshot(stack)

    # The agent's own key pair: the store refuses deleting its snapshot.
    script = (
        "export RESTIC_REPOSITORY=s3:http://s3:7480/agama-files"
        " RESTIC_PASSWORD_FILE=/run/secrets/restic_password_files"
        " AWS_SHARED_CREDENTIALS_FILE=/run/secrets/s3_credentials AWS_PROFILE=default;"
        # --retry-lock: the agent itself may hold a lock a moment (listing its snapshots).
        " restic forget --retry-lock 2m latest 2>&1; restic snapshots --json"
    )
    forget = stack.exec("files-agent", "sh", "-c", script, check=False).stdout
    assert "Access Denied" in forget and '"hostname":"agama"' in forget, forget

    # The maintenance role opens the buckets with the owner's key pair.
    stack.exec("maintenance", "backup-agent", "retention")
    stack.exec("maintenance", "backup-agent", "check")
    restored = stack.exec(
        "files-agent", "backup-agent", "restore", "files", "--to", "/var/tmp/backup-agent/r"
    )
    assert restored.returncode == 0
    out = stack.exec("files-agent", "sh", "-c", "cd /var/tmp/backup-agent/r/home/backup/backup"
                     " && find . -type f | wc -l").stdout  # fmt: skip
    assert int(out.strip()) == len(written)
    say("S3 store: backup, refused deletion, retention, check and restore done")
    stack.down()
    assert_nothing_left(stack)


def test_a_second_copy_on_s3_beside_rest_server(store_stack: Stack) -> None:
    stack = store_stack
    stack.env["BACKUP_STORE"] = "rest+s3"
    write_files(stack.files)
    # The role files start an agent without waiting for its backup server (another
    # machine): the server first, so that the agent's first-start backup finds it.
    up(stack, "backup-server")
    up(stack, "files-agent", "maintenance")
    services = stack.compose("ps", "--format", "{{.Service}}").stdout.split()
    assert {"s3", "backup-server"} <= set(services), services  # S3 beside rest-server
    first_snapshot(stack)
    # The maintenance role's first start copies too, maybe before the agent's snapshot
    # existed: two copies at once would both create the copy repositories.
    wait_for("the first start's copy", lambda: first_copy_done(stack), timeout=300, every=5)
    copied = stack.exec("maintenance", "backup-agent", "copy")
    assert "files: newest trusted snapshot in the copy: 20" in copied.stdout, copied.stdout
    logs = stack.compose("logs", "--no-color", "maintenance").stdout + copied.stderr
    assert "created the copy repository" in logs and "copied 1 snapshot(s)" in logs, logs
    say("rest+s3: the maintenance role copied the repository to S3")
    stack.down()
    assert_nothing_left(stack)
