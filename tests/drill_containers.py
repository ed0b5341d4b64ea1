"""Docker helpers for the drill containment tests: the drill image, containers and
networks the tests make (each run under its own name prefix and label, so that parallel
runs and other containers on the engine are never touched), and a TCP probe run
inside a container."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from backup_agent.jobs.mysql.scratch import LABEL, owner
from backup_agent.manifest import DrillServer
from tests.conftest import docker_with, wait_for

IMAGE = os.environ.get("DRILL_IMAGE", "local/mariadb:11.8")
TEST_LABEL = "backup-agent.test"  # on everything a test makes; the value is its prefix
SMALL = ("--innodb-buffer-pool-size=64M", "--skip-log-bin")

# bash's /dev/tcp, which every MySQL/MariaDB image has: "HOST:PORT open|closed" per target.
PROBE = (
    'for t in "$@"; do '
    'if timeout 3 bash -c "exec 3<>/dev/tcp/${t%:*}/${t##*:}" 2>/dev/null; '
    'then echo "$t open"; else echo "$t closed"; fi; done'
)


class Engine:
    """The docker SDK client, and what one test made on it (removed by ``cleanup``)."""

    def __init__(self) -> None:
        self.client = docker_with(IMAGE)
        self.prefix = f"verifier-test-{uuid.uuid4().hex[:8]}"

    def network(self, name: str, **options: Any) -> Any:
        return self.client.networks.create(
            f"{self.prefix}-{name}", labels={TEST_LABEL: self.prefix}, **options
        )

    def container(self, name: str, network: str | None = None, **options: Any) -> Any:
        """A container of the drill image, by default idle (``sleep``) on ``network``."""
        options.setdefault("entrypoint", ["sleep", "600"])
        labels = {TEST_LABEL: self.prefix, **options.pop("labels", {})}
        return self.client.containers.run(
            IMAGE,
            name=f"{self.prefix}-{name}",
            network=network,
            labels=labels,
            detach=True,
            **options,
        )

    def drill_containers(self, config: DrillServer, work_dir: str) -> list[Any]:
        """Containers labelled as drills of the verifier with this config and directory."""
        label = f"{LABEL}={owner(config, work_dir)}"
        return list(self.client.containers.list(all=True, filters={"label": label}))

    def cleanup(self) -> None:
        mine = {"label": f"{TEST_LABEL}={self.prefix}"}
        for container in self.client.containers.list(all=True, filters=mine):
            container.remove(force=True, v=True)
        for network in self.client.networks.list(filters=mine):
            network.remove()
        self.client.close()


@contextmanager
def engine() -> Iterator[Engine]:
    made = Engine()
    try:
        yield made
    finally:
        made.cleanup()


def address(container: Any, network: str) -> str:
    container.reload()
    ip: str = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    return ip


def gateway(network: Any) -> str:
    """The host's address on a bridge network."""
    network.reload()
    ip: str = network.attrs["IPAM"]["Config"][0]["Gateway"]
    return ip


def reachable(container: Any, targets: Sequence[str]) -> dict[str, bool]:
    """Which HOST:PORT targets a TCP connection from inside ``container`` reaches."""
    code, output = container.exec_run(["bash", "-c", PROBE, "probe", *targets])
    assert code == 0, output
    lines = dict(line.rsplit(" ", 1) for line in output.decode().split("\n") if line)
    assert lines.keys() == set(targets), output
    return {target: lines[target] == "open" for target in targets}


@contextmanager
def listener(host: str) -> Iterator[str]:
    """A TCP listener on ``host`` (a port the kernel picks): ``HOST:PORT``. Connections
    complete in the kernel's backlog; nothing is ever read."""
    with socket.socket() as server:
        server.bind((host, 0))
        server.listen(16)
        yield f"{host}:{server.getsockname()[1]}"


def production(made: Engine) -> tuple[Any, Any, str]:
    """A "production" network with a MariaDB server on it, like the stack's mysql:
    (network, bystander container on it, the server's HOST:PORT)."""
    network = made.network("production")
    made.container(
        "mysql",
        network.name,
        entrypoint=None,
        command=list(SMALL),
        environment={"MARIADB_ALLOW_EMPTY_ROOT_PASSWORD": "1"},
    )
    bystander = made.container("bystander", network.name)
    target = f"{address(made.client.containers.get(f'{made.prefix}-mysql'), network.name)}:3306"
    wait_for("the production server", lambda: reachable(bystander, [target])[target], 120)
    return network, bystander, target
