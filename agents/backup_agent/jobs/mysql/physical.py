"""The physical method: a copy of the server's data directory, streamed into restic.

``mariadb-backup --backup --stream=xbstream`` (MariaDB) or Percona's ``xtrabackup``
(Oracle MySQL) reads the data directory itself, so the agent must run where that
directory is readable (on the database host, or in a container mounting its volume).
The stream goes through the pump into ``restic backup --stdin`` like a dump, read on
the way by ``xbstream.XbstreamReader``; only a stream that is complete and well
formed, from a tool that exited 0 and ended its log with ``completed OK!``, becomes a
snapshot. The record beside it holds size, SHA-256, the server version and the tables
(from information_schema at backup time: a physical copy has no exact row counts).

A restore unpacks the stream, re-read by the same reader so that a name leaving the
target directory never reaches the unpacking tool, into an empty directory and
prepares it with the tool of the recorded server's series; the operator then starts
a server of that version on it. The drill does the same in containers only
(``physical_drill``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backup_agent import execute, restic, snapshots
from backup_agent.errors import BackupError
from backup_agent.jobs.base import BackupResult, RestoreRequest, RestoreResult, require_empty_dir
from backup_agent.jobs.mysql import record
from backup_agent.jobs.mysql.client import connect, require_program
from backup_agent.jobs.mysql.dump import stream_command
from backup_agent.jobs.mysql.preflight import ServerInfo, preflight
from backup_agent.jobs.mysql.pump import Pumped, pump
from backup_agent.jobs.mysql.xbstream import XbstreamReader
from backup_agent.manifest import Manifest, MysqlOptions, Service

log = logging.getLogger(__name__)

METHOD = "physical"
SUCCESS = "completed OK!"  # the last line of a successful run, backup or prepare


@dataclass(frozen=True)
class Tools:
    """The physical backup programs of one server family."""

    backup: str  # backs up (--backup) and prepares (--prepare)
    unpack: str  # unpacks an xbstream (-x -C DIR)


TOOLS = {
    "mariadb": Tools("mariadb-backup", "mbstream"),
    "mysql": Tools("xtrabackup", "xbstream"),  # Percona XtraBackup, of the server's series
}


def filename(service: Service) -> str:
    """The stream's name in its snapshot."""
    return f"{service.name}.xbstream"


def series(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a version string: ``10.11.19-MariaDB-0+deb12u1`` -> (10, 11)."""
    match = re.search(r"(\d+)\.(\d+)\.\d+", version)
    if not match:
        raise BackupError(f"no version number in {version[:80]!r}")
    return int(match.group(1)), int(match.group(2))


def tool_version(program: str) -> str:
    """The server version a backup program is built for, from its ``--version``."""
    result = execute.run([program, "--version"])
    return tool_version_of(program, result.stdout.decode(errors="replace") + result.stderr)


def tool_version_of(program: str, text: str) -> str:
    """The server version in a ``--version`` output: ``mariadb-backup based on MariaDB
    server 10.11.19-MariaDB ...`` or ``xtrabackup version 8.0.35-30 based on MySQL
    server 8.0.35 ...``."""
    match = re.search(r"server (\d+\.\d+\.\d+)", text)
    if not match:
        raise BackupError(f"{program} --version names no server version: {text.strip()[:120]}")
    return match.group(1)


def require_series(program: str, built_for: str, server: str, what: str) -> None:
    """Refuse ``program`` (built for ``built_for``) for a server of another series."""
    if series(built_for) != series(server):
        raise BackupError(
            f"{program} is built for server {built_for}, {what} is {server}: physical backups "
            "are only read and prepared by the tool of the same major.minor series"
        )


def backup_command(program: str, options: MysqlOptions, scratch: str) -> list[str]:
    """argv of the backup tool streaming to stdout; credentials only from the option file."""
    argv = [program, f"--defaults-file={options.defaults_file}"]
    if options.socket:
        argv.append(f"--socket={options.socket}")
    else:
        argv += [f"--host={options.host}", f"--port={options.port}"]
    return [*argv, "--backup", "--stream=xbstream", f"--target-dir={scratch}"]


def prepare_command(program: str, target: str) -> list[str]:
    """argv preparing an unpacked copy (applying its redo log) for a server to start on."""
    return [program, "--no-defaults", "--prepare", f"--target-dir={target}"]


def unpack_command(program: str, target: str) -> list[str]:
    return [program, "-x", "-C", target]


def ended_well(stderr_tail: str) -> bool:
    """Whether the tool's log ends with its success line."""
    lines = [line for line in stderr_tail.split(" | ") if line.strip()]
    return bool(lines) and lines[-1].rstrip().endswith(SUCCESS)


def failed(argv: list[str]) -> str:
    return f"{execute.display(argv)} did not end its log with {SUCCESS!r}: the copy is incomplete"


def backup(manifest: Manifest, service: Service, kind: str) -> BackupResult:
    """Copy the server's data directory into one snapshot, plus its record."""
    options = service.options
    assert isinstance(options, MysqlOptions)
    info = preflight(options)
    tools = TOOLS[info.family]
    program = require_program(tools.backup, info.family)
    require_series(program, tool_version(program), info.version, "the server")
    datadir, tables = _server_state(options, info)
    if not os.access(datadir, os.R_OK | os.X_OK):
        raise BackupError(
            f"{service.name}: the server's data directory {datadir} is not readable here: the "
            "physical method runs where the data directory is (its host, or its volume mounted)"
        )
    reader = XbstreamReader()
    work = Path(manifest.work_dir)
    work.mkdir(parents=True, mode=0o700, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="physical-", dir=work)
    link = snapshots.new_link()
    upload = record.start(manifest, service, link)  # beside the copy, off its critical path
    try:
        try:
            argv = backup_command(program, options, scratch)
            summary, stats = stream_command(
                argv,
                manifest.repository_for(service.name),
                filename(service),
                {**snapshots.tags(service, kind), "method": METHOD, snapshots.LINK_TAG: link},
                reader,
                lambda process, _: None if ended_well(process.stderr_tail()) else failed(argv),
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        contents = reader.close()
        details: dict[str, object] = {
            "snapshot": summary.snapshot_id,
            "method": METHOD,
            "bytes": stats.size,
            "sha256": stats.sha256,
            "server_version": info.version,
            "family": info.family,
            "databases": list(info.databases),
            "client": program,
            "files": contents.files,
            # Names only: a copy taken while the server runs has no exact row counts.
            "tables": tables,
        }
        record.seal(upload, details)
    finally:
        upload.abort()  # unless sealed: no record without a complete copy
    return BackupResult.of_summary(service, kind, summary, details, bytes_read=stats.size)


def _server_state(options: MysqlOptions, info: ServerInfo) -> tuple[str, dict[str, list[str]]]:
    """The server's data directory, and the base tables of the backed-up databases."""
    with connect(options) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@datadir")
        datadir = str((cur.fetchone() or ("",))[0])
        tables: dict[str, list[str]] = {db: [] for db in info.databases}
        if info.databases:
            cur.execute(
                "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES"
                " WHERE TABLE_SCHEMA IN %s AND TABLE_TYPE = 'BASE TABLE'"
                " ORDER BY TABLE_SCHEMA, TABLE_NAME",
                (list(info.databases),),
            )
            for schema, table in cur.fetchall():
                tables[str(schema)].append(str(table))
    return datadir, tables


def recorded_tables(meta: Mapping[str, Any]) -> set[tuple[str, str]]:
    """``(database, table)`` of every table a physical record names."""
    found = meta.get("tables")
    if not isinstance(found, dict):
        return set()
    return {
        (str(db), str(table))
        for db, names in found.items()
        if isinstance(names, list)
        for table in names
    }


def tools_of(meta: Mapping[str, Any]) -> Tools:
    """The tools for a record's server family."""
    family = str(meta.get("family", ""))
    if family not in TOOLS:
        raise BackupError(f"the record names no known server family ({family[:40]!r})")
    return TOOLS[family]


def check_stream(stats: Pumped, meta: Mapping[str, Any]) -> str:
    """The stream read back is the one backed up (SHA-256 and size equal the record)."""
    if stats.sha256 != meta["sha256"] or stats.size != meta.get("bytes"):
        raise BackupError(
            f"restored stream differs from the backup: {stats.size} bytes sha256 {stats.sha256},"
            f" recorded {meta.get('bytes')} bytes sha256 {meta['sha256']}"
        )
    return f"SHA-256 {stats.sha256[:16]}... of {stats.size} bytes matches the backup record"


def restore(
    manifest: Manifest,
    service: Service,
    request: RestoreRequest,
    snapshot: restic.Snapshot,
    meta: Mapping[str, Any],
) -> RestoreResult:
    """Unpack and prepare a physical snapshot (chosen, with its record, by the caller)
    in an empty directory (``--to DIR``)."""
    if not request.target or not request.target.startswith("/"):
        raise BackupError(
            f"snapshot {snapshot.short_id} is a physical copy: restore it into an empty "
            "directory with --to /ABSOLUTE/DIR, then start a server of its version there"
        )
    target = Path(request.target)
    require_empty_dir(str(target), request.force)
    tools = tools_of(meta)
    program = require_program(tools.backup, str(meta.get("family")))
    version = str(meta.get("server_version", ""))
    require_series(program, tool_version(program), version, "the backed-up server")
    if request.dry_run:
        plan = f"dry run: would unpack and prepare snapshot {snapshot.short_id} in {target}"
        return RestoreResult(service.name, snapshot.id, str(target), 0, [plan])
    target.mkdir(parents=True, mode=0o750, exist_ok=True)
    unpack = unpack_command(require_program(tools.unpack, str(meta.get("family"))), str(target))
    stats = unpack_into(manifest, service, snapshot, execute.Process(unpack, stdin=execute.PIPE))
    checks = [f"unpacked {stats.size} bytes into {target}", check_stream(stats, meta)]
    prepared = execute.run(prepare_command(program, str(target)))
    if not ended_well(prepared.stderr.strip().replace("\n", " | ")):
        raise BackupError(f"{program} --prepare did not end with {SUCCESS!r}")
    checks.append(f"prepared with {program} (server {version})")
    checks.append(
        f"next: chown -R mysql:mysql {target}; start a {'.'.join(map(str, series(version)))} "
        f"server with --datadir={target}"
    )
    return RestoreResult(service.name, snapshot.id, str(target), stats.size, checks)


def unpack_into(
    manifest: Manifest, service: Service, snapshot: restic.Snapshot, unpack: execute.Process
) -> Pumped:
    """Stream the snapshot through the reader into ``unpack``'s stdin: only bytes whose
    chunk header was accepted reach it. The tool is stopped on any failure."""
    repo = manifest.repository_for(service.name)
    source = restic.dump(repo, snapshot.id, f"/{filename(service)}", execute.PIPE)
    assert source.process.popen.stdout is not None and unpack.popen.stdin is not None
    done = False
    try:
        stdout, stdin = source.process.popen.stdout, unpack.popen.stdin
        stats = pump(stdout, stdin, XbstreamReader(), hold_back=True)
        source.check()
        unpack.popen.stdin.close()
        unpack.check()
        done = True
        return stats
    finally:
        source.stop()
        if not done:
            unpack.stop()
