"""The verifier refuses to start with the wrong Docker access, and cleans up when it starts.

``backup-agent run --role verifier`` with a drill image runs here as compose runs it:
in the agent image as its unprivileged ``backup`` user, the Docker socket mounted,
supplementary groups given like compose's ``group_add`` (and this worktree's code in
front of the image's). With the root group it refuses, without the socket's group it
refuses, both with one line naming DOCKER_GID; a drill network that is not internal
is refused too; with the socket's group it starts and removes the drill containers a
crashed run of the same verifier left. A drill without a network, from a container,
fails saying it needs one. And compose itself refuses a stack without DOCKER_GID,
while scripts/compose.sh fills it in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from backup_agent import manifest
from backup_agent.jobs.mysql.scratch import LABEL, owner
from tests.conftest import docker_with, need, service_spec, wait_for
from tests.drill_containers import IMAGE, SMALL, TEST_LABEL, Engine, engine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
SOCKET = "/var/run/docker.sock"
AGENT_IMAGE = os.environ.get("AGENT_IMAGE", "local/backup-agent:dev")
AGENT_UID = 10001  # the image's backup user
HOME = "/verifier"  # where the test's directory is mounted in the verifier container


@pytest.fixture
def made() -> Iterator[Engine]:
    with engine() as made:
        docker_with(AGENT_IMAGE)
        yield made


@pytest.fixture
def home() -> Iterator[Path]:
    """The verifier's directory on the host, writable by the image's backup user."""
    path = Path(tempfile.mkdtemp(prefix="backup-agent-verifier-"))
    shutil.chown(path, AGENT_UID, AGENT_UID)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def verifier_manifest(home: Path, network: str | None = None) -> manifest.Manifest:
    """A verifier's manifest with a drill image (and network), with the paths the
    container sees; nothing in it is reached at start-up but the Docker engine."""
    server: dict[str, Any] = {"image": IMAGE, "server_args": list(SMALL)}
    if network:
        server["network"] = network
    data = {
        "version": 1,
        "work_dir": f"{HOME}/work",
        "agent": {"state_dir": f"{HOME}/state", "metrics_port": 0},
        "repository": {
            "url": f"{HOME}/repo",
            "password_file": f"{HOME}/password",
            "host": "verifier",
        },
        "services": {"db": service_spec("mysql", {"defaults_file": f"{HOME}/db.cnf"})},
        "retention": {"keep_within": "3w", "max_age": "31d"},
        "drill": {"schedule": "0 6 * * 1", "mysql": server},
    }
    path = home / "manifest.yaml"
    path.write_text(yaml.safe_dump(data))
    return manifest.load(path)


VERIFIER = ["backup-agent", "-m", f"{HOME}/manifest.yaml", "run", "--role", "verifier"]


def start_verifier(made: Engine, home: Path, groups: list[int], argv: list[str] = VERIFIER) -> Any:
    """``argv`` (the verifier role) in a container of the agent image, as its backup
    user with ``groups`` added, the Docker socket and ``home`` mounted."""
    return made.client.containers.run(
        AGENT_IMAGE,
        ["tini", "-g", "--", *argv],
        entrypoint=[],
        name=f"{made.prefix}-verifier",
        labels={TEST_LABEL: made.prefix},
        group_add=[str(g) for g in groups],
        environment={"PYTHONPATH": "/src/agents"},
        volumes={
            SOCKET: {"bind": SOCKET, "mode": "rw"},
            str(home): {"bind": HOME, "mode": "rw"},
            str(ROOT / "agents"): {"bind": "/src/agents", "mode": "ro"},
        },
        network_mode="none",
        detach=True,
    )


def refusal(container: Any) -> str:
    """The one line a refused start printed (the agent must exit 1)."""
    status = container.wait(timeout=60)
    lines = container.logs().decode().strip().splitlines()
    assert status["StatusCode"] == 1 and len(lines) == 1, (status, lines)
    line: str = lines[0]
    return line


def test_the_verifier_refuses_the_root_group(made: Engine, home: Path) -> None:
    verifier_manifest(home)
    line = refusal(start_verifier(made, home, [0, os.stat(SOCKET).st_gid]))
    assert "ERROR" in line and "root group (gid 0)" in line and "set DOCKER_GID" in line


def test_the_verifier_refuses_without_the_docker_socket_group(made: Engine, home: Path) -> None:
    verifier_manifest(home)
    line = refusal(start_verifier(made, home, []))
    assert "ERROR" in line and "cannot reach the Docker engine" in line
    assert "Permission denied" in line and "set DOCKER_GID" in line


def test_the_verifier_refuses_a_drill_network_that_is_not_internal(
    made: Engine, home: Path
) -> None:
    plain = made.network("plain")
    verifier_manifest(home, plain.name)
    line = refusal(start_verifier(made, home, [os.stat(SOCKET).st_gid]))
    assert "ERROR" in line and f"{plain.name} is not an internal network" in line


# A drill server without a network, started from inside a container.
NO_NETWORK_DRILL = f"""
from backup_agent.errors import BackupError
from backup_agent.jobs.mysql.scratch import scratch_mysql
from backup_agent.manifest import DrillServer, MysqlOptions
try:
    with scratch_mysql(DrillServer(image="{IMAGE}"), MysqlOptions(""), "{HOME}/drill"):
        pass
except BackupError as exc:
    print(exc)
"""


def test_a_drill_without_network_from_a_container_says_it_needs_one(
    made: Engine, home: Path
) -> None:
    """Without a network the socket directory is bound from the engine's file system,
    which a verifier in a container does not share."""
    drill = start_verifier(
        made, home, [os.stat(SOCKET).st_gid], ["python3", "-c", NO_NETWORK_DRILL]
    )
    assert drill.wait(timeout=60)["StatusCode"] == 0, drill.logs().decode()
    message = drill.logs().decode()
    assert "bind source path does not exist" in message
    assert "a verifier in a container needs an internal drill network" in message


def test_the_verifier_starts_with_the_socket_group_and_removes_its_leftovers(
    made: Engine, home: Path
) -> None:
    drill_net = made.network("drill", internal=True)
    drill = verifier_manifest(home, drill_net.name).drill
    assert drill is not None
    label = {LABEL: owner(drill.mysql, drill.scratch_dir)}
    leftover = made.container("crashed-drill", labels=label)
    unlabelled = made.container("unlabelled")

    verifier = start_verifier(made, home, [os.stat(SOCKET).st_gid])

    def started() -> bool:
        verifier.reload()
        assert verifier.status == "running", verifier.logs().decode()
        return "agent started: role verifier" in verifier.logs().decode()

    wait_for("the verifier's start", started, 120)
    logs = verifier.logs().decode()
    assert "left by an earlier drill" in logs
    assert made.drill_containers(drill.mysql, drill.scratch_dir) == []
    assert leftover.id not in {c.id for c in made.client.containers.list(all=True)}
    unlabelled.reload()
    assert unlabelled.status == "running"
    verifier.stop(timeout=30)
    assert verifier.wait(timeout=30)["StatusCode"] == 0, verifier.logs().decode()


def compose_config(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    need("docker")
    environ = {k: v for k, v in os.environ.items() if k != "DOCKER_GID"}
    return subprocess.run(
        [*argv, "config", "--format", "json"],
        env={**environ, "AIRGAP": "0", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_refuses_a_stack_without_docker_gid() -> None:
    result = compose_config("docker", "compose", "-f", "compose/docker-compose.yml")
    assert result.returncode != 0
    assert "required variable DOCKER_GID is missing a value" in result.stderr
    assert "stat -c %g /var/run/docker.sock" in result.stderr


def test_compose_sh_gives_the_verifier_the_socket_group_and_the_drill_network() -> None:
    result = compose_config(str(ROOT / "scripts" / "compose.sh"))
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    verifier = config["services"]["verifier"]
    assert verifier["group_add"] == [str(os.stat(SOCKET).st_gid)]
    assert set(verifier["networks"]) == {"backup-net", "drill-net"}
    drill_net = config["networks"]["drill-net"]
    assert drill_net["internal"] is True
    assert drill_net["driver_opts"] == {"com.docker.network.bridge.inhibit_ipv4": "true"}
    on_drill_net = {name for name, s in config["services"].items() if "drill-net" in s["networks"]}
    assert on_drill_net == {"verifier"}
    assert verifier["environment"]["DRILL_NETWORK"] == drill_net["name"]
