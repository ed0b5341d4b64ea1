"""Disposable MySQL servers for restore drills.

With an image in the manifest, each drill starts a container of the same family and
version as production through the docker SDK, tuned for a fast bulk load (it is
thrown away), and removes it afterwards, also on failure. Without one, a scratch
server given by host/port or socket is used; the drill then drops what it created.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from backup_agent.errors import BackupError
from backup_agent.jobs.mysql.client import connect
from backup_agent.manifest import DrillServer, MysqlOptions

log = logging.getLogger("backup_agent.scratch")

LABEL = "backup-agent.drill"
READY_TIMEOUT = 180.0


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


@contextmanager
def _container(
    config: DrillServer, template: MysqlOptions, work_dir: str
) -> Iterator[MysqlOptions]:
    import docker  # imported here: only drills need Docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # the SDK raises several types; all mean "no usable engine"
        raise BackupError(f"cannot reach the Docker engine for the drill container: {exc}") from exc
    password = secrets.token_urlsafe(24)
    os.makedirs(work_dir, exist_ok=True)
    handle, defaults = tempfile.mkstemp(prefix="drill-", suffix=".cnf", dir=work_dir)
    with os.fdopen(handle, "w") as out:
        out.write(f"[client]\nuser=root\npassword={password}\n")
    run_args: dict[str, Any] = {
        "command": list(config.server_args),
        "environment": {"MYSQL_ROOT_PASSWORD": password, "MARIADB_ROOT_PASSWORD": password},
        "labels": {LABEL: "1"},
        "detach": True,
    }
    if config.network:
        run_args["network"] = config.network
    else:
        run_args["ports"] = {"3306/tcp": ("127.0.0.1", None)}
    container = None
    try:
        log.info("starting drill server from image %s", config.image)
        container = client.containers.run(config.image, **run_args)
        container.reload()
        if config.network:
            host = container.attrs["NetworkSettings"]["Networks"][config.network]["IPAddress"]
            port = 3306
        else:
            host, port = "127.0.0.1", int(container.ports["3306/tcp"][0]["HostPort"])
        options = replace(
            template,
            host=host,
            port=port,
            socket=None,
            defaults_file=defaults,
            restore_defaults_file=None,
        )
        _wait_ready(options, container)
        yield options
    finally:
        if container is not None:
            container.remove(force=True, v=True)
            log.info("removed drill server container %s", container.short_id)
        os.unlink(defaults)


def _wait_ready(options: MysqlOptions, container: Any) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            logs = container.logs(tail=5).decode(errors="replace").strip().replace("\n", " | ")
            raise BackupError(f"drill server container exited: {logs}")
        try:
            with connect(options):
                return
        except BackupError as exc:
            last = str(exc)
            time.sleep(1)
    raise BackupError(f"drill server not ready after {READY_TIMEOUT:.0f} s: {last}")
