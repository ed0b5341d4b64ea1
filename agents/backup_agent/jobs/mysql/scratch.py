"""Disposable MySQL servers for restore drills.

With an image in the manifest, each drill starts a container of the same family and
version as production through the docker SDK, tuned for a fast bulk load (it is
thrown away), and removes it afterwards, also on failure. Without one, a scratch
server given by host/port or socket is used; the drill then drops what it created.

A dump is hostile input and the drill server executes it, so the container is
treated as running attacker code:

- no network at all: the verifier, a process on the engine's host, reaches the server
  through its socket, in a directory shared with the container and nothing else. With
  ``drill.mysql.network`` (the verifier itself in a container), only that network,
  which must be internal: in the compose stack the verifier and the drill servers
  alone share ``drill-net``, which has no route out and no address on the host;
- read-only root file system, the image's ``mysql`` user, no capabilities,
  ``no-new-privileges``, limits on memory, CPUs and processes; the data and run
  directories are anonymous volumes, removed with the container.

Every drill container and volume carries the label ``backup-agent.drill=OWNER``,
where OWNER identifies one verifier (its drill network and scratch directory): what a
crashed verifier left is removed at its start-up and before each drill, and the
drills of other verifiers on the same engine are never touched. The drills of one
verifier take turns (a lock file in the scratch directory), so that this clean-up
cannot remove a drill that is still running.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from backup_agent.errors import BackupError
from backup_agent.jobs.mysql.client import connect
from backup_agent.manifest import Drill, DrillServer, MysqlOptions

log = logging.getLogger("backup_agent.scratch")

LABEL = "backup-agent.drill"
READY_TIMEOUT = 180.0
SERVERS = ".servers"  # below drill.scratch_dir: the lock and one directory per drill
RUN_DIR = "/run/mysqld"  # the server's socket and pid file, inside the container
DATA_DIR = "/var/lib/mysql"
SOCKET_PATH_MAX = 107  # sockaddr_un.sun_path, less the terminating NUL
NO_NETWORK_HINT = (
    "without drill.mysql.network the verifier must share the engine's file system: "
    "a verifier in a container needs an internal drill network"
)


@contextmanager
def scratch_mysql(
    config: DrillServer, template: MysqlOptions, work_dir: str
) -> Iterator[MysqlOptions]:
    """Connection options of a disposable server; the container (if any) is removed after."""
    if config.image:
        with _container(config, template, work_dir) as options:
            yield options
        return
    if not config.defaults_file:
        raise BackupError(
            "drill.mysql needs an image (Docker) or a scratch server with defaults_file"
        )
    yield replace(
        template,
        host=config.host,
        port=config.port,
        socket=config.socket,
        defaults_file=config.defaults_file,
        restore_defaults_file=None,
    )


def owner(config: DrillServer, work_dir: str) -> str:
    """The label value of one verifier's drill containers: stable across its restarts,
    distinct for another verifier on the same engine (another network or directory)."""
    identity = f"{config.network or ''}\n{os.path.realpath(work_dir)}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def prepare_verifier(settings: Drill) -> None:
    """Start-up of the verifier role with a drill image: refuse a root group, an
    unreachable engine or a drill network that is not internal, each with one clear
    line, then remove what crashed drills left."""
    groups = {os.getgid(), os.getegid(), *os.getgroups()}
    if os.geteuid() != 0 and 0 in groups:
        raise BackupError(
            "the verifier runs with the root group (gid 0) among its groups: set DOCKER_GID "
            "to the group of the Docker socket (stat -c %g /var/run/docker.sock), not 0"
        )
    client = _engine()
    try:
        _require_internal(client, settings.mysql)
        with _turn(settings.scratch_dir) as servers:
            _remove_leftovers(client, owner(settings.mysql, settings.scratch_dir), servers)
    finally:
        client.close()


def container_spec(
    config: DrillServer,
    label: str,
    password: str,
    socket_dir: str | None,
    cpus: float,
    data_volume: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Keyword arguments of ``containers.run`` for a drill server: on ``config.network``,
    or without any network and its socket in ``socket_dir`` (a host directory). Its data
    directory is ``data_volume`` (a labelled volume made by the drill), or anonymous."""
    from docker.types import Mount

    # Anonymous volumes start as a copy of the image's directory, owned by its mysql
    # user (a tmpfs would be root's: Docker ignores its mode option); /tmp is 1777.
    command = [*config.server_args, *extra_args]
    mounts = [Mount(DATA_DIR, data_volume, type="volume", labels={LABEL: label})]
    placement: dict[str, Any]
    if config.network:
        placement = {"network": config.network}
        mounts.append(Mount(RUN_DIR, None, type="volume", labels={LABEL: label}))
    else:
        placement = {"network_mode": "none"}
        mounts.append(Mount(RUN_DIR, socket_dir, type="bind"))
        command.append(f"--socket={RUN_DIR}/mysqld.sock")
    return {
        "command": command,
        "environment": {"MYSQL_ROOT_PASSWORD": password, "MARIADB_ROOT_PASSWORD": password},
        "mounts": mounts,
        **confinement(config, label, cpus),
        **placement,
    }


def confinement(config: DrillServer, label: str, cpus: float) -> dict[str, Any]:
    """What every drill container gets: the label, the image's mysql user, a read-only
    root, no capabilities, no new privileges, limits on memory, CPUs and processes."""
    return {
        "labels": {LABEL: label},
        "detach": True,
        "user": "mysql",
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": config.memory,
        "memswap_limit": config.memory,  # no swap on top
        "nano_cpus": int(cpus * 1e9),
        "pids_limit": config.pids_limit,
        "tmpfs": {"/tmp": ""},  # noqa: S108 - inside the container
    }


@dataclass(frozen=True)
class Session:
    """One verifier's turn on the engine: its client, label and private directories."""

    client: Any
    label: str
    servers: Path
    config: DrillServer

    @property
    def cpus(self) -> float:
        return min(self.config.cpus, float(self.client.info()["NCPU"]))


@contextmanager
def session(config: DrillServer, work_dir: str) -> Iterator[Session]:
    """This verifier's turn: what earlier drills left is removed first, the drill
    network checked; containers started in it are the caller's to remove."""
    client = _engine()
    try:
        with _turn(work_dir) as servers:
            label = owner(config, work_dir)
            _remove_leftovers(client, label, servers)
            _require_internal(client, config)
            yield Session(client, label, servers, config)
    finally:
        client.close()


@contextmanager
def _container(
    config: DrillServer, template: MysqlOptions, work_dir: str
) -> Iterator[MysqlOptions]:
    assert config.image is not None
    with session(config, work_dir) as turn, server(turn, template) as options:
        yield options


@contextmanager
def server(
    turn: Session,
    template: MysqlOptions,
    data_volume: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[MysqlOptions]:
    """A drill server container in ``turn``, removed afterwards. On ``data_volume``
    (prepared data) it starts on what is there instead of initializing a new server."""
    config = turn.config
    private = Path(tempfile.mkdtemp(prefix="", dir=turn.servers))
    container = None
    try:
        password = secrets.token_urlsafe(24)
        defaults = private / "client.cnf"
        fd = os.open(defaults, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"[client]\nuser=root\npassword={password}\n")
        socket_dir = _socket_dir(config, private)
        spec = container_spec(
            config, turn.label, password, socket_dir, turn.cpus, data_volume, extra_args
        )
        container = _run(turn.client, config, spec)
        options = replace(
            template,
            host=_address(container, config),
            port=3306,
            socket=f"{socket_dir}/mysqld.sock" if socket_dir else None,
            defaults_file=str(defaults),
            restore_defaults_file=None,
        )
        try:
            _wait_ready(options, container, initializing=data_volume is None)
            yield options
        except BackupError as exc:
            _raise_if_out_of_memory(exc, container, config)
            raise
    finally:
        if container is not None:
            container.remove(force=True, v=True)
            log.info("removed drill server container %s", container.short_id)
        _remove_tree(private)


def _run(client: Any, config: DrillServer, spec: dict[str, Any]) -> Any:
    """Start the drill server container."""
    import docker

    log.info("starting drill server from image %s", config.image)
    try:
        container = client.containers.run(config.image, **spec)
        container.reload()
    except docker.errors.DockerException as exc:
        # Without a network the socket directory is bound from the engine's file system,
        # which a verifier in a container does not share: its random name is not there.
        hint = "" if config.network else f" ({NO_NETWORK_HINT})"
        raise BackupError(f"cannot start the drill server ({config.image}): {exc}{hint}") from exc
    return container


@contextmanager
def _turn(work_dir: str) -> Iterator[Path]:
    """This verifier's drill servers, one at a time: the directory holding their lock
    and private directories, locked while the caller runs."""
    servers = Path(work_dir) / SERVERS
    servers.mkdir(parents=True, mode=0o700, exist_ok=True)
    with open(servers / "lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another drill server of this verifier to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield servers


def _engine() -> Any:
    """A docker SDK client of a reachable engine."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # the SDK raises several types; all mean "no usable engine"
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise BackupError(
            f"cannot reach the Docker engine at {where} for the drill servers ({exc}): mount "
            "its socket and set DOCKER_GID to the socket's group (stat -c %g on the socket)"
        ) from exc
    return client


def _remove_leftovers(client: Any, label: str, servers: Path) -> None:
    """Remove this verifier's drill containers, their volumes (restored data, also when
    someone removed a container without them) and private directories. Called with the
    lock held: none of them belongs to a running drill."""
    mine = {"label": f"{LABEL}={label}"}
    for container in client.containers.list(all=True, filters=mine):
        log.warning("removing drill server container %s left by an earlier drill", container.name)
        container.remove(force=True, v=True)
    for volume in client.volumes.list(filters=mine):
        log.warning("removing drill server volume %s left by an earlier drill", volume.name)
        volume.remove(force=True)
    for path in servers.iterdir():
        if path.is_dir():
            _remove_tree(path)


def _remove_tree(path: Path) -> None:
    """Remove a drill's private directory; what cannot be removed is logged, not fatal
    (a file the container made that the verifier may not delete)."""
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        log.warning("could not remove all of %s", path)


def _socket_dir(config: DrillServer, private: Path) -> str | None:
    """Without a network: the host directory the container's run directory is bound to.
    World-writable for the image's mysql user; only the verifier can reach its parent."""
    if config.network:
        return None
    socket_dir = private / "run"
    socket_dir.mkdir()
    socket_dir.chmod(0o777)  # inside a 0700 directory
    if len(os.fsencode(socket_dir / "mysqld.sock")) > SOCKET_PATH_MAX:
        raise BackupError(
            f"the drill server's socket path below {private.parent} is longer than "
            f"{SOCKET_PATH_MAX} bytes: choose a shorter drill.scratch_dir"
        )
    return str(socket_dir)


def _require_internal(client: Any, config: DrillServer) -> None:
    """Refuse a drill network through which the server could reach more than the verifier."""
    import docker

    if not config.network:
        return
    try:
        internal = client.networks.get(config.network).attrs.get("Internal")
    except docker.errors.DockerException as exc:
        raise BackupError(f"drill.mysql.network {config.network}: {exc}") from exc
    if not internal:
        raise BackupError(
            f"drill.mysql.network {config.network} is not an internal network: the drill "
            "server runs SQL from a backup and must not reach other services or the "
            "outside (create it with internal: true)"
        )


def _address(container: Any, config: DrillServer) -> str:
    """The container's address on the drill network (without one, the socket is used)."""
    if not config.network:
        return "localhost"
    address: str = container.attrs["NetworkSettings"]["Networks"][config.network]["IPAddress"]
    return address


def _wait_ready(options: MysqlOptions, container: Any, initializing: bool = True) -> None:
    """Until the server accepts the drill's root password. Images initialize with a
    temporary server without networking first (on the same socket, for some): only a
    server with networking on is the real one. A server on prepared data does not
    initialize (and MySQL 8 turns networking off with ``--skip-grant-tables``)."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            logs = container.logs(tail=5).decode(errors="replace").strip().replace("\n", " | ")
            raise BackupError(f"drill server container exited: {logs}")
        try:
            with connect(options) as conn, conn.cursor() as cur:
                cur.execute("SELECT @@skip_networking")
                row = cur.fetchone()
            if row is not None and (not initializing or not int(row[0])):
                return
            last = "still initializing"
        except BackupError as exc:
            last = str(exc)
        time.sleep(1)
    raise BackupError(f"drill server not ready after {READY_TIMEOUT:.0f} s: {last}")


def _raise_if_out_of_memory(error: BackupError, container: Any, config: DrillServer) -> None:
    """When the container was killed for lack of memory, say so instead of ``error``."""
    container.reload()
    if container.attrs["State"].get("OOMKilled"):
        raise BackupError(
            f"the drill server ran out of memory (drill.mysql.memory: {config.memory}): {error}"
        ) from error
