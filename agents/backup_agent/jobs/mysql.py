"""MySQL / MariaDB job: a consistent logical dump streamed into restic.

The dump tool's stdout is pumped through this process into ``restic backup
--stdin``: hashed on the way, never written to disk, in fixed-size chunks. restic
only saves a snapshot when its stdin reaches end-of-file, and the pump only lets
that happen after the dump tool exited 0, wrote something, and ended with its
``-- Dump completed`` trailer; otherwise restic is stopped first and no snapshot
exists. The dump's byte count and SHA-256 go into a small second snapshot tagged
``kind=meta`` and ``of=<dump snapshot id>``.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC
from typing import IO, Any, Protocol

import pymysql

from backup_agent import execute, restic
from backup_agent.dumpscan import DumpScanner
from backup_agent.errors import BackupError
from backup_agent.jobs.base import (
    META_KIND,
    BackupResult,
    RestoreRequest,
    RestoreResult,
    require_verification,
    select_snapshot,
    snapshot_tags,
)
from backup_agent.loader import ParallelLoader
from backup_agent.manifest import SYSTEM_DATABASES, Manifest, MysqlOptions, Service
from backup_agent.scratch import scratch_mysql

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TAIL = 512  # bytes kept to find the trailer
LOAD_WORKERS = max(2, min(4, os.cpu_count() or 2))  # client processes loading tables
TRAILER = re.compile(rb"-- Dump completed(?: on [^\n]*)?\n?\Z")
# What the dump of one database needs, granted globally or on the database.
REQUIRED_PRIVILEGES = ("SELECT", "SHOW VIEW", "TRIGGER", "EVENT")
# Reading routine definitions needs more than database-level grants.
ROUTINE_PRIVILEGE = {"mariadb": "SELECT ON mysql.proc", "mysql": "SHOW_ROUTINE"}
COMMON_FLAGS = (
    "--single-transaction",
    "--quick",
    "--routines",
    "--events",
    "--triggers",
    "--hex-blob",
    "--default-character-set=utf8mb4",
    "--no-tablespaces",
)
# Per client family: dump program, its extra flags, and the program that loads a dump.
CLIENTS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "mariadb": ("mariadb-dump", (), "mariadb"),
    # Oracle mysqldump 8.x: GTID statements would make the dump unrestorable elsewhere.
    "mysql": ("mysqldump", ("--set-gtid-purged=OFF",), "mysql"),
}


@dataclass(frozen=True)
class ServerInfo:
    """What the pre-flight check learned about the server."""

    version: str
    flavour: str  # "mariadb" or "mysql"
    databases: tuple[str, ...]
    non_innodb: tuple[str, ...]  # "db.table (ENGINE)"


@dataclass(frozen=True)
class DumpStats:
    bytes: int
    sha256: str


def backup(manifest: Manifest, service: Service, kind: str) -> BackupResult:
    """Dump the configured databases into one snapshot, plus its metadata snapshot."""
    options = service.options
    assert isinstance(options, MysqlOptions)
    if kind != "full":
        raise BackupError(f"{service.name}: a MySQL dump is always full, not {kind!r}")
    info = preflight(options)
    for table in info.non_innodb:
        log.warning(
            "%s: %s is not InnoDB; its dump is not transactionally consistent", service.name, table
        )
    argv = dump_command(options, info)
    repo = manifest.repository
    tags = snapshot_tags(service, kind)
    scanner = DumpScanner()
    summary, stats = stream_dump(argv, repo, f"{service.name}.sql", tags, scanner)
    meta = {
        "snapshot": summary.snapshot_id,
        "bytes": stats.bytes,
        "sha256": stats.sha256,
        "server_version": info.version,
        "flavour": info.flavour,
        "databases": list(info.databases),
        "client": argv[0],
        "tables": scanner.close(),  # rows per db.table, counted in the dump itself
    }
    restic.backup_bytes(
        repo,
        f"{service.name}.meta.json",
        json.dumps(meta, indent=2).encode(),
        {"service": service.name, "kind": META_KIND, "of": summary.snapshot_id},
    )
    return BackupResult(
        service=service.name,
        kind=kind,
        snapshot_id=summary.snapshot_id,
        bytes_read=stats.bytes,
        bytes_added=summary.data_added,
        details=meta,
    )


def read_defaults_file(path: str) -> tuple[str, str]:
    """User and password from the ``[client]`` section of a MySQL option file."""
    parser = configparser.ConfigParser(allow_no_value=True, interpolation=None, strict=False)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise BackupError(f"cannot read MySQL defaults file {path}: {exc.strerror}") from exc
    except configparser.Error as exc:
        raise BackupError(f"{path}: not a MySQL option file ({exc.__class__.__name__})") from exc
    section = parser["client"] if parser.has_section("client") else {}
    user = (section.get("user") or "").strip("'\"")
    password = (section.get("password") or "").strip("'\"")
    if not user:
        raise BackupError(f"{path}: no user in its [client] section")
    execute.register_secret(password)
    return user, password


@contextmanager
def connect(
    options: MysqlOptions,
) -> Iterator[pymysql.connections.Connection[pymysql.cursors.Cursor]]:
    """A pymysql connection with the defaults file's credentials."""
    user, password = read_defaults_file(options.defaults_file)
    where = _where(options)
    try:
        conn = pymysql.connect(
            user=user,
            password=password,
            host=options.host,
            port=options.port,
            unix_socket=options.socket,
            connect_timeout=10,
            charset="utf8mb4",
        )
    except pymysql.err.MySQLError as exc:
        reason = exc.args[1] if len(exc.args) > 1 else str(exc)
        raise BackupError(f"cannot connect to MySQL at {where} as {user!r}: {reason}") from exc
    with closing(conn):
        yield conn


def preflight(options: MysqlOptions) -> ServerInfo:
    """Check connectivity, the databases and the privileges a dump needs, before dumping."""
    with connect(options) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION(), CURRENT_USER()")
        version, current_user = cur.fetchone() or ("", "")
        cur.execute("SHOW DATABASES")
        present = [row[0] for row in cur.fetchall()]
        databases = list(options.databases) or [d for d in present if d not in SYSTEM_DATABASES]
        missing_dbs = [d for d in databases if d not in present]
        if missing_dbs:
            raise BackupError(f"database(s) not found or not visible: {', '.join(missing_dbs)}")
        if not databases:
            raise BackupError("no user databases to dump")
        user, _, host = str(current_user).rpartition("@")
        grantee = f"'{user}'@'{host}'"
        flavour = "mariadb" if "mariadb" in str(version).lower() else "mysql"
        missing = {db: missing_privileges(cur, grantee, db) for db in databases}
        missing = {db: privs for db, privs in missing.items() if privs}
        if not can_read_routines(cur, grantee, flavour):
            missing["routines"] = [ROUTINE_PRIVILEGE[flavour]]
        if missing:
            detail = "; ".join(f"{db}: {', '.join(privs)}" for db, privs in missing.items())
            raise BackupError(f"MySQL user {grantee} lacks privileges for the dump ({detail})")
        cur.execute(
            "SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE FROM information_schema.TABLES"
            " WHERE TABLE_TYPE = 'BASE TABLE' AND ENGINE <> 'InnoDB'"
            " AND TABLE_SCHEMA IN %s ORDER BY 1, 2",
            (databases,),
        )
        non_innodb = tuple(f"{db}.{table} ({engine})" for db, table, engine in cur.fetchall())
    return ServerInfo(str(version), flavour, tuple(databases), non_innodb)


def missing_privileges(cur: pymysql.cursors.Cursor, grantee: str, database: str) -> list[str]:
    """Privileges from ``REQUIRED_PRIVILEGES`` held neither globally nor on ``database``."""
    cur.execute(
        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = %s"
        " UNION SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES"
        " WHERE GRANTEE = %s AND %s LIKE TABLE_SCHEMA",
        (grantee, grantee, database),
    )
    held = {row[0] for row in cur.fetchall()}
    return [p for p in REQUIRED_PRIVILEGES if p not in held]


def can_read_routines(cur: pymysql.cursors.Cursor, grantee: str, flavour: str) -> bool:
    """Whether the dump will see routine bodies; without it routines vanish silently."""
    cur.execute(
        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = %s"
        " UNION SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES"
        " WHERE GRANTEE = %s AND TABLE_SCHEMA = 'mysql'"
        " UNION SELECT PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES"
        " WHERE GRANTEE = %s AND TABLE_SCHEMA = 'mysql' AND TABLE_NAME = 'proc'",
        (grantee, grantee, grantee),
    )
    held = {row[0] for row in cur.fetchall()}
    return bool(held & {"SELECT", "SHOW_ROUTINE", "SHOW CREATE ROUTINE"})


def dump_command(options: MysqlOptions, info: ServerInfo) -> list[str]:
    """argv of the dump tool; credentials come only from ``--defaults-file``."""
    family = info.flavour if options.client == "auto" else options.client
    default_program, family_flags, _ = CLIENTS[family]
    program = _require_program(options.dump_program or default_program, family)
    if family == "mysql" and "MariaDB" in execute.run([program, "--version"]).stdout.decode():
        # Debian's mysqldump is MariaDB's: it rejects MySQL 8 flags (--set-gtid-purged).
        raise BackupError(
            f"the server is MySQL ({info.version}) but {program} is MariaDB's dump tool: "
            "install Oracle's mysqldump 8.x (dump_program), or set client: mariadb"
        )
    argv = [program, *connection_args(options.defaults_file, options)]
    return [*argv, *COMMON_FLAGS, *family_flags, "--databases", *info.databases]


def connection_args(defaults_file: str, options: MysqlOptions) -> list[str]:
    """Client options: credentials from the option file (first, as the tools require)."""
    args = [f"--defaults-file={defaults_file}"]
    if options.socket:
        return [*args, f"--socket={options.socket}"]
    return [*args, f"--host={options.host}", f"--port={options.port}", "--protocol=TCP"]


def _require_program(program: str, family: str) -> str:
    if shutil.which(program) is None:
        raise BackupError(f"program {program!r} not found (install the {family} client tools)")
    return program


def stream_dump(
    argv: list[str],
    repo: restic.Repository,
    filename: str,
    tags: dict[str, str],
    scanner: DumpScanner,
) -> tuple[restic.BackupSummary, DumpStats]:
    """Pump the dump into restic; only a complete dump is allowed to become a snapshot."""
    upload = restic.StdinBackup(repo, filename, tags)
    dump = execute.Process(argv, stdout=execute.PIPE)
    finished = False
    try:
        assert dump.popen.stdout is not None
        try:
            stats, tail = copy_stream(dump.popen.stdout, upload.stdin, scanner)
        except BrokenPipeError:
            upload.process.check("stopped reading the dump")
            raise
        code = dump.wait()
        if code != 0:
            raise execute.error_for(argv, code, dump.stderr_tail())
        if stats.bytes == 0:
            raise BackupError(f"{execute.display(argv)} exited 0 but wrote nothing")
        if not TRAILER.search(tail):
            raise BackupError(
                f"{execute.display(argv)} output ends without '-- Dump completed':"
                " the dump is truncated"
            )
        summary = upload.finish()
        finished = True
        return summary, stats
    finally:
        if not finished:
            upload.abort()
            dump.stop()


class Sink(Protocol):
    """Where a dump stream goes: a pipe to restic or a client, or the parallel loader."""

    def write(self, data: bytes, /) -> int: ...


def copy_stream(
    source: IO[bytes], sink: Sink, scanner: DumpScanner | None = None
) -> tuple[DumpStats, bytes]:
    """Copy chunk by chunk, hashing (and scanning) on the way; return stats and last bytes."""
    digest = hashlib.sha256()
    size = 0
    tail = b""
    while chunk := source.read1(CHUNK):  # type: ignore[attr-defined]
        digest.update(chunk)
        if scanner is not None:
            scanner.feed(chunk)
        size += len(chunk)
        tail = (tail + chunk[-TAIL:])[-TAIL:]
        sink.write(chunk)
    return DumpStats(size, digest.hexdigest()), tail


def select_dump(
    manifest: Manifest, service: Service, wanted: str
) -> tuple[restic.Snapshot, dict[str, Any] | None]:
    """A dump snapshot and its recorded metadata (None if there is none), listed once."""
    listed = restic.snapshots(manifest.repository, {"service": service.name})
    snapshot = select_snapshot(manifest, service, wanted, listed)
    return snapshot, read_meta(manifest, service, snapshot, listed)


def read_meta(
    manifest: Manifest,
    service: Service,
    snapshot: restic.Snapshot,
    listed: list[restic.Snapshot] | None = None,
) -> dict[str, Any] | None:
    """The metadata recorded for a dump snapshot, or None when there is none."""
    if listed is None:
        listed = restic.snapshots(manifest.repository, {"service": service.name})
    found = [s for s in listed if s.tag("kind") == META_KIND and s.tag("of") == snapshot.id]
    if not found:
        return None
    data = restic.dump_bytes(manifest.repository, found[-1].id, f"/{service.name}.meta.json")
    meta: dict[str, Any] = json.loads(data)
    return meta


def restore(manifest: Manifest, service: Service, request: RestoreRequest) -> RestoreResult:
    """Stream a dump from restic into a server and check its SHA-256 against the record.

    ``request.target`` is ``HOST[:PORT]`` or a socket path; by default the configured
    server. Databases that already hold tables are refused unless ``force``.
    """
    options = service.options
    assert isinstance(options, MysqlOptions)
    snapshot, meta = select_dump(manifest, service, request.snapshot)
    if meta is None:
        log.warning(
            "%s: snapshot %s has no metadata; SHA-256 not checked", service.name, snapshot.short_id
        )
    target = retarget(options, request.target)
    family = prepare_target(target, meta, request.force)
    if request.dry_run:
        names = ", ".join(_databases(meta))
        plan = f"dry run: would load snapshot {snapshot.short_id} into {_where(target)} ({names})"
        return RestoreResult(service.name, snapshot.id, _where(target), 0, [plan])
    stats, checks = load_checked(manifest, service, snapshot, meta, target, family)
    return RestoreResult(service.name, snapshot.id, _where(target), stats.bytes, checks)


def verify(manifest: Manifest, service: Service) -> RestoreResult:
    """Drill: restore the newest dump into a disposable server and prove it complete.

    Proofs: the stream's SHA-256 and size equal the record, every table of the dump
    exists with the row count read from the dump at backup time, and the manifest's
    sanity queries hold. The disposable server is removed (or the scratch databases
    dropped) afterwards, also on failure.
    """
    options = service.options
    assert isinstance(options, MysqlOptions)
    verification = require_verification(manifest)
    snapshot, meta = select_dump(manifest, service, "latest")
    if meta is None:
        raise BackupError(
            f"snapshot {snapshot.short_id} of {service.name} has no metadata: cannot prove it"
        )
    with scratch_mysql(verification.mysql, options, verification.scratch_dir) as target:
        family = prepare_target(target, meta, force=False)
        try:
            stats, checks = load_checked(manifest, service, snapshot, meta, target, family)
            with connect(target) as conn, conn.cursor() as cur:
                checks += check_tables(cur, meta)
                checks += check_sanity(cur, options.sanity_queries, snapshot, service)
        finally:
            if not verification.mysql.image:
                drop_databases(target, _databases(meta))
    return RestoreResult(service.name, snapshot.id, _where(target), stats.bytes, checks)


def prepare_target(target: MysqlOptions, meta: Mapping[str, Any] | None, force: bool) -> str:
    """Refuse a target whose databases already hold tables; return its client family."""
    with connect(target) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        version = str((cur.fetchone() or ("",))[0])
        occupied = non_empty_databases(cur, _databases(meta))
    if occupied and not force:
        raise BackupError(
            f"database(s) {', '.join(occupied)} on {_where(target)} already hold tables "
            "(use --force to load over them)"
        )
    return "mariadb" if "mariadb" in version.lower() else "mysql"


def load_checked(
    manifest: Manifest,
    service: Service,
    snapshot: restic.Snapshot,
    meta: Mapping[str, Any] | None,
    target: MysqlOptions,
    family: str,
) -> tuple[DumpStats, list[str]]:
    """Load the dump into ``target``; prove the stream equals what was backed up."""
    client = _require_program(CLIENTS[family][2], family)
    argv = [client, *connection_args(target.defaults_file, target)]
    stats = load_dump(manifest, snapshot, f"/{service.name}.sql", argv)
    checks = [f"loaded {stats.bytes} bytes into {_where(target)}"]
    if meta is None:
        return stats, checks
    if stats.sha256 != meta["sha256"] or stats.bytes != meta["bytes"]:
        raise BackupError(
            f"restored stream differs from the backup: {stats.bytes} bytes sha256 {stats.sha256},"
            f" recorded {meta['bytes']} bytes sha256 {meta['sha256']}"
        )
    return stats, [*checks, f"SHA-256 {stats.sha256[:16]}... matches the backup record"]


def check_tables(cur: pymysql.cursors.Cursor, meta: Mapping[str, Any]) -> list[str]:
    """Every table of the dump exists and holds the rows counted in the dump."""
    tables: dict[str, dict[str, int]] = meta.get("tables") or {}
    wrong = []
    total = 0
    for database, counts in tables.items():
        for table, expected in counts.items():
            try:
                cur.execute(f"SELECT COUNT(*) FROM {_quote(database)}.{_quote(table)}")  # noqa: S608
            except pymysql.err.MySQLError as exc:
                wrong.append(f"{database}.{table}: {exc.args[-1]}")
                continue
            found = int((cur.fetchone() or (0,))[0])
            total += 1
            if found != expected:
                wrong.append(f"{database}.{table}: {found} rows, dump had {expected}")
    if wrong:
        raise BackupError(f"restored tables differ from the dump: {'; '.join(wrong[:10])}")
    return [f"{total} tables present with the row counts of the dump"]


def check_sanity(
    cur: pymysql.cursors.Cursor,
    queries: tuple[tuple[str, str], ...],
    snapshot: restic.Snapshot,
    service: Service,
) -> list[str]:
    """Run the manifest's sanity queries; each must return one truthy value."""
    when = snapshot.time.astimezone(UTC).strftime("'%Y-%m-%d %H:%M:%S'")
    passed = []
    for name, sql in queries:
        statement = sql.replace("{snapshot_time}", when)
        statement = statement.replace("{rpo_seconds}", str(int(service.rpo.total_seconds())))
        try:
            cur.execute(statement)
            row = cur.fetchone()
        except pymysql.err.MySQLError as exc:
            raise BackupError(f"sanity query {name!r} failed: {exc.args[-1]}") from exc
        if not row or not row[0]:
            raise BackupError(f"sanity query {name!r} returned {row[0] if row else 'no row'!r}")
        passed.append(f"sanity query {name!r} holds")
    return passed


def drop_databases(target: MysqlOptions, databases: list[str]) -> None:
    """Remove what a drill loaded into a shared scratch server."""
    with connect(target) as conn, conn.cursor() as cur:
        for database in databases:
            cur.execute(f"DROP DATABASE IF EXISTS {_quote(database)}")


def _databases(meta: Mapping[str, Any] | None) -> list[str]:
    return [str(d) for d in meta.get("databases", ())] if meta else []


def _where(target: MysqlOptions) -> str:
    return target.socket or f"{target.host}:{target.port}"


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def retarget(options: MysqlOptions, target: str | None) -> MysqlOptions:
    """Connection options for a restore: the restore credentials, and ``target`` if given."""
    changed = replace(options, defaults_file=options.restore_defaults_file or options.defaults_file)
    if not target:
        return changed
    if target.startswith("/"):
        return replace(changed, socket=target)
    host, _, port = target.partition(":")
    if not host or not (port or "3306").isdigit():
        raise BackupError(f"restore target {target!r} is not HOST[:PORT] or a socket path")
    return replace(changed, host=host, port=int(port or 3306), socket=None)


def non_empty_databases(cur: pymysql.cursors.Cursor, databases: list[str]) -> list[str]:
    """Those of ``databases`` that exist and hold at least one table or view."""
    if not databases:
        return []
    cur.execute(
        "SELECT DISTINCT TABLE_SCHEMA FROM information_schema.TABLES WHERE TABLE_SCHEMA IN %s",
        (databases,),
    )
    return sorted(row[0] for row in cur.fetchall())


def load_dump(
    manifest: Manifest, snapshot: restic.Snapshot, path: str, client_argv: list[str]
) -> DumpStats:
    """Stream ``restic dump`` into the server, tables in parallel, hashing on the way."""
    loader = ParallelLoader(client_argv, f"{manifest.work_dir}/restore", LOAD_WORKERS)
    source = restic.dump(manifest.repository, snapshot.id, path, execute.PIPE)
    assert source.popen.stdout is not None
    try:
        stats, _ = copy_stream(source.popen.stdout, loader)
        source.check()
        loader.finish()
    finally:
        source.stop()
        loader.close()
    return stats
