"""A drill server runs SQL from a backup, so it is started as if it ran attacker code.

These tests start drill servers as the verifier does (through ``scratch_mysql``, or
with the very keyword arguments it uses) next to a "production" MariaDB server on
another network and a service on the host, and try to get out: from inside the
drill container, neither is reachable, while a container on the production network
reaches both (the targets are real). They also check the container's confinement as
the server sees it, the memory limit's failure message, and that what a crashed
verifier left behind is removed by its next drill, and nothing else.

Needs a Docker engine and the drill image (``make base-images``), like
test_drill_docker.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from backup_agent.errors import BackupError
from backup_agent.jobs.mysql.client import connect
from backup_agent.jobs.mysql.scratch import LABEL, container_spec, owner, scratch_mysql
from backup_agent.manifest import DrillServer, MysqlOptions
from tests.conftest import wait_for
from tests.drill_containers import (
    IMAGE,
    SMALL,
    TEST_LABEL,
    Engine,
    address,
    engine,
    gateway,
    listener,
    production,
    reachable,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TEMPLATE = MysqlOptions(defaults_file="(the drill writes its own)")
# As compose/docker-compose.yml defines drill-net.
NO_HOST_ADDRESS = {"com.docker.network.bridge.inhibit_ipv4": "true"}


@pytest.fixture
def made() -> Iterator[Engine]:
    with engine() as made:
        yield made


def assert_confined(container: Any, config: DrillServer) -> None:
    """Limits and privileges as configured, and as the server process has them."""
    host = container.attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Memory"] == host["MemorySwap"] == 2 * 1024**3  # the default "2g"
    assert host["NanoCpus"] > 0 and host["PidsLimit"] == config.pids_limit
    # PID 1 is the server (the entrypoint execs it).
    code, out = container.exec_run(
        ["grep", "-E", "^(Name|Uid|CapEff|NoNewPrivs):", "/proc/1/status"]
    )
    status = dict(line.split(":\t", 1) for line in out.decode().splitlines())
    assert code == 0 and status["Name"] == "mariadbd", out
    assert status["Uid"].split()[0] != "0"
    assert int(status["CapEff"], 16) == 0 and status["NoNewPrivs"] == "1"
    code, out = container.exec_run(["touch", "/usr/lib/planted"])
    assert code != 0 and b"Read-only file system" in out


def test_a_drill_server_without_network_reaches_nothing(made: Engine, tmp_path: Path) -> None:
    """The verifier on the engine's host: the server has no network at all; the
    verifier reaches it through its socket."""
    network, bystander, mysql = production(made)
    config = DrillServer(image=IMAGE, server_args=SMALL)
    work = str(tmp_path / "drill")
    with listener(gateway(network)) as host_service:
        targets = [mysql, host_service]
        assert reachable(bystander, targets) == {mysql: True, host_service: True}

        with scratch_mysql(config, TEMPLATE, work) as options:
            (server,) = made.drill_containers(config, work)
            assert server.attrs["HostConfig"]["NetworkMode"] == "none"
            assert reachable(server, targets) == {mysql: False, host_service: False}
            assert_confined(server, config)
            with connect(options) as conn, conn.cursor() as cur:
                cur.execute("SELECT CURRENT_USER()")
                assert cur.fetchone() == ("root@localhost",)

    assert made.drill_containers(config, work) == []


def test_a_drill_server_on_the_drill_network_reaches_only_that_network(
    made: Engine, tmp_path: Path
) -> None:
    """The verifier in a container (compose): the server joins only the internal drill
    network, which the host has no address on; the verifier reaches it there."""
    network, bystander, mysql = production(made)
    drill_net = made.network("drill", internal=True, options=NO_HOST_ADDRESS)
    verifier = made.container("verifier", network.name)  # on both networks, as in compose
    drill_net.connect(verifier)
    config = DrillServer(image=IMAGE, network=drill_net.name, server_args=SMALL)
    spec = container_spec(config, owner(config, str(tmp_path)), "drill-password", None, 1.0)
    spec["labels"] = {**spec["labels"], TEST_LABEL: made.prefix}
    server = made.client.containers.run(IMAGE, name=f"{made.prefix}-drill", **spec)
    drill_server = f"{address(server, drill_net.name)}:3306"
    wait_for(
        "the drill server, from the verifier's place",
        lambda: reachable(verifier, [drill_server])[drill_server],
        120,
    )

    with listener(gateway(network)) as host_service:
        targets = [mysql, host_service]
        assert reachable(bystander, targets) == {mysql: True, host_service: True}
        assert reachable(server, targets) == {mysql: False, host_service: False}
    with pytest.raises(OSError, match="Cannot assign requested address"):
        listener(gateway(drill_net)).__enter__()  # no host address on the drill network
    server.reload()
    assert set(server.attrs["NetworkSettings"]["Networks"]) == {drill_net.name}
    assert_confined(server, config)


def test_a_network_that_is_not_internal_is_refused_before_a_server_starts(
    made: Engine, tmp_path: Path
) -> None:
    plain = made.network("plain")
    config = DrillServer(image=IMAGE, network=plain.name, server_args=SMALL)
    work = str(tmp_path / "drill")
    with (
        pytest.raises(BackupError, match=f"{plain.name} is not an internal network"),
        scratch_mysql(config, TEMPLATE, work),
    ):
        pass
    assert made.drill_containers(config, work) == []
    assert plain.containers == []


def test_a_drill_server_out_of_memory_fails_naming_the_limit(made: Engine, tmp_path: Path) -> None:
    config = DrillServer(image=IMAGE, server_args=SMALL, memory="32m")
    work = str(tmp_path / "drill")
    with (
        pytest.raises(BackupError, match=r"ran out of memory \(drill\.mysql\.memory: 32m\)"),
        scratch_mysql(config, TEMPLATE, work),
    ):
        pass
    assert made.drill_containers(config, work) == []


# A verifier killed (SIGKILL) while its drill server runs.
CRASHING = """
import sys, time
from backup_agent.jobs.mysql.scratch import scratch_mysql
from backup_agent.manifest import DrillServer, MysqlOptions
config = DrillServer(image=sys.argv[1], server_args=tuple(sys.argv[3:]))
with scratch_mysql(config, MysqlOptions(defaults_file=""), sys.argv[2]):
    print("ready", flush=True)
    time.sleep(600)
"""


def crashed_drill(made: Engine, config: DrillServer, work: str) -> tuple[Any, str]:
    """The drill container a crashed verifier left, and its data volume."""
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHING, IMAGE, work, *config.server_args],
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
    finally:
        process.kill()
        process.wait()
    (left,) = made.drill_containers(config, work)
    (volume,) = [m["Name"] for m in left.attrs["Mounts"] if m["Type"] == "volume"]
    return left, volume


def test_what_a_crashed_drill_left_is_removed_by_the_next_drill_and_nothing_else(
    made: Engine, tmp_path: Path
) -> None:
    config = DrillServer(image=IMAGE, server_args=SMALL)
    work = str(tmp_path / "drill")
    removed_by_hand, orphan = crashed_drill(made, config, work)
    removed_by_hand.remove(force=True)  # as `docker rm -f` does: the data volume stays
    left, volume = crashed_drill(made, config, work)
    assert left.status == "running"
    unlabelled = made.container("unlabelled")
    other_verifier = made.container(
        "other-verifier", labels={LABEL: owner(config, str(tmp_path / "other"))}
    )

    with scratch_mysql(config, TEMPLATE, work):
        (current,) = made.drill_containers(config, work)
        assert current.id != left.id

    assert made.drill_containers(config, work) == []
    for gone in (volume, orphan):
        with pytest.raises(docker.errors.NotFound):
            made.client.volumes.get(gone)
    for kept in (unlabelled, other_verifier):
        kept.reload()
        assert kept.status == "running"
    assert [p.name for p in (Path(work) / ".servers").iterdir()] == ["lock"]
