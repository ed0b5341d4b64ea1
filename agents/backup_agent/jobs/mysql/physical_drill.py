"""The drill of a physical snapshot: unpacked, prepared and started in containers only.

The stream read back is hostile input, and unpacking and preparing it runs code over
those bytes, so none of that happens on the verifier's host: a container of
``drill.mysql.image`` (same series as the recorded server, carrying the backup tool)
confined like every drill container (``scratch.confinement``: no network, read-only
root, no capabilities) reads the stream on its stdin and runs ``mbstream -x`` and
``mariadb-backup --prepare`` into a labelled volume. The verifier still reads the
stream on the way (``xbstream.XbstreamReader``: names, bounds, SHA-256 against the
record). A server container then starts on that volume with ``--skip-grant-tables``
(the copied users' passwords are not the drill's), and the drill counts every table,
compares the table set with the record and runs the sanity queries. Containers and
the volume are removed afterwards, also on failure (and by the next drill's clean-up
if the verifier died).
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import socket
from collections.abc import Callable, Mapping
from typing import Any

import pymysql

from backup_agent import execute, restic
from backup_agent.errors import BackupError
from backup_agent.jobs.base import RestoreResult, require_drill
from backup_agent.jobs.mysql import record, scratch
from backup_agent.jobs.mysql.checks import check_sanity, count_rows
from backup_agent.jobs.mysql.client import connect, where
from backup_agent.jobs.mysql.physical import (
    METHOD,
    SUCCESS,
    Tools,
    check_stream,
    filename,
    prepare_command,
    recorded_tables,
    require_series,
    tool_version_of,
    tools_of,
    unpack_command,
)
from backup_agent.jobs.mysql.pump import Pumped, pump
from backup_agent.jobs.mysql.xbstream import XbstreamReader
from backup_agent.manifest import Manifest, MysqlOptions, Service

log = logging.getLogger(__name__)

PREPARE_TIMEOUT = 3600  # seconds for unpacking and preparing, after the stream ended


def drill(manifest: Manifest, service: Service) -> RestoreResult:
    """Restore the newest physical snapshot in containers and prove it complete."""
    options = service.options
    assert isinstance(options, MysqlOptions)
    settings = require_drill(manifest)
    if not settings.mysql.image:
        raise BackupError(
            f"{service.name}: a physical snapshot is only drilled in containers: set "
            "drill.mysql.image to an image of the backed-up server's version that carries "
            "mariadb-backup (or xtrabackup)"
        )
    snapshot, meta = record.select_dump(manifest, service, "latest", METHOD)
    tools = tools_of(meta)
    with scratch.session(settings.mysql, settings.scratch_dir) as turn:
        output = _run_confined(turn, [tools.backup, "--version"])
        built_for = tool_version_of(tools.backup, output)
        shown = f"{tools.backup} of {settings.mysql.image}"
        require_series(shown, built_for, str(meta.get("server_version")), "the backed-up server")
        volume = turn.client.volumes.create(labels={scratch.LABEL: turn.label})
        try:
            stats = _unpack_and_prepare(manifest, service, snapshot, turn, tools, volume.name)
            checks = [f"unpacked and prepared {stats.size} bytes in a container"]
            checks.append(check_stream(stats, meta))
            with (
                scratch.server(turn, options, volume.name, ("--skip-grant-tables",)) as target,
                connect(target) as conn,
                conn.cursor() as cur,
            ):
                checks += check_table_set(cur, meta, options.allow_empty)
                checks += check_sanity(cur, options.sanity_queries, snapshot.time, service.rpo)
                cur.execute("SELECT VERSION()")
                checks.append(f"server {(cur.fetchone() or ('',))[0]} started on the copy")
                place = where(target)
        finally:
            volume.remove(force=True)
    return RestoreResult(service.name, snapshot.id, place, stats.size, checks, METHOD)


def check_table_set(
    cur: pymysql.cursors.Cursor, meta: Mapping[str, Any], allow_empty: bool
) -> list[str]:
    """The backed-up databases hold exactly the tables the record names, and each can
    be counted (a copy of a running server has no recorded counts to compare)."""
    expected = recorded_tables(meta)
    databases = record.databases(meta)
    found: set[tuple[str, str]] = set()
    if databases:
        cur.execute(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA IN %s AND TABLE_TYPE = 'BASE TABLE'",
            (databases,),
        )
        found = {(str(db), str(table)) for db, table in cur.fetchall()}
    if found != expected:
        missing = ", ".join(f"{d}.{t}" for d, t in sorted(expected - found)[:10]) or "none"
        extra = ", ".join(f"{d}.{t}" for d, t in sorted(found - expected)[:10]) or "none"
        raise BackupError(
            f"restored tables differ from the record: missing {missing}; extra {extra}"
        )
    counts, unreadable = count_rows(cur, sorted(expected))
    if unreadable:
        raise BackupError(f"restored tables cannot be read: {'; '.join(unreadable[:10])}")
    if not counts and not allow_empty:
        raise BackupError("the physical copy restored no table (mysql.allow_empty permits it)")
    return [f"{len(counts)} tables present as recorded, {sum(counts.values())} rows counted"]


def _unpack_and_prepare(
    manifest: Manifest,
    service: Service,
    snapshot: restic.Snapshot,
    turn: scratch.Session,
    tools: Tools,
    volume: str,
) -> Pumped:
    """Feed the snapshot, read on the way, to a confined container that unpacks and
    prepares it in ``volume``."""
    unpack = shlex.join(unpack_command(tools.unpack, scratch.DATA_DIR))
    prepare = shlex.join(prepare_command(tools.backup, scratch.DATA_DIR))
    repo = manifest.repository_for(service.name)
    source = restic.dump(repo, snapshot.id, f"/{filename(service)}", execute.PIPE)
    stdout = source.process.popen.stdout
    assert stdout is not None
    result: list[Pumped] = []

    def feed(sink: _SocketSink) -> None:
        result.append(pump(stdout, sink, XbstreamReader(), hold_back=True))
        source.check()

    try:
        _run_confined(turn, ["sh", "-c", f"{unpack} && {prepare}"], feed, volume)
    finally:
        source.stop()
    return result[0]


class _SocketSink:
    """Writes to a container's attached stdin."""

    def __init__(self, raw: socket.socket) -> None:
        self.raw = raw

    def write(self, data: bytes, /) -> int:
        self.raw.sendall(data)
        return len(data)


def _run_confined(
    turn: scratch.Session,
    argv: list[str],
    feed: Callable[[_SocketSink], None] | None = None,
    volume: str | None = None,
) -> str:
    """Run ``argv`` in a confined container of the drill image without network, its
    stdin written by ``feed`` and then closed; its output, when it exits 0 and (with a
    volume: it prepared a copy) ends with the tool's success line."""
    from docker.types import Mount

    mounts = [Mount(scratch.DATA_DIR, volume, type="volume")] if volume else []
    container = turn.client.containers.create(
        turn.config.image,
        entrypoint=argv[:1],
        command=argv[1:],
        network_mode="none",
        mounts=mounts,
        **{
            **scratch.confinement(turn.config, turn.label, turn.cpus),
            # The SDK sets StdinOnce (stdin closed when the feeder is done) only for an
            # attached container with stdin open; it is started detached all the same.
            "stdin_open": feed is not None,
            "detach": feed is None,
        },
    )
    fed: BaseException | None = None
    try:
        if feed is None:
            container.start()
        else:
            attached = container.attach_socket(params={"stdin": 1, "stream": 1})
            raw: socket.socket = attached._sock  # the socket under the SDK's wrapper
            container.start()
            try:
                feed(_SocketSink(raw))
            except OSError as exc:  # the container stopped reading: its log says why
                fed = exc
            finally:
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_WR)
                attached.close()
        code = container.wait(timeout=PREPARE_TIMEOUT)["StatusCode"]
        output = bytes(container.logs(stdout=True, stderr=True)).decode(errors="replace")
    finally:
        container.remove(force=True, v=True)
    last = [line.strip() for line in output.splitlines() if line.strip()][-5:]
    if code != 0 or fed is not None or (volume and not (last and last[-1].endswith(SUCCESS))):
        why = " | ".join(last) or str(fed)
        raise BackupError(f"{shlex.join(argv)[:200]} in a drill container failed ({code}): {why}")
    return output
