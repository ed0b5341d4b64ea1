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
import re
import shutil
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass

import pymysql

from backup_agent import execute, restic
from backup_agent.errors import BackupError
from backup_agent.jobs.base import BackupResult, snapshot_tags
from backup_agent.manifest import SYSTEM_DATABASES, Manifest, MysqlOptions, Service

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TAIL = 512  # bytes kept to find the trailer
TRAILER = re.compile(rb"-- Dump completed(?: on [^\n]*)?\n?\Z")
# What the dump of one database needs, granted globally or on the database.
REQUIRED_PRIVILEGES = ("SELECT", "SHOW VIEW", "TRIGGER", "EVENT")
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
# Per dump-tool family: default program and its extra flags.
CLIENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mariadb": ("mariadb-dump", ()),
    # Oracle mysqldump 8.x: GTID statements would make the dump unrestorable elsewhere.
    "mysql": ("mysqldump", ("--set-gtid-purged=OFF",)),
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
        log.warning("%s: %s is not InnoDB; its dump is not transactionally consistent", service.name, table)
    argv = dump_command(options, info)
    repo = manifest.repository
    tags = snapshot_tags(service, kind)
    summary, stats = stream_dump(argv, repo, f"{service.name}.sql", tags)
    meta = {
        "snapshot": summary.snapshot_id,
        "bytes": stats.bytes,
        "sha256": stats.sha256,
        "server_version": info.version,
        "flavour": info.flavour,
        "databases": list(info.databases),
        "client": argv[0],
    }
    restic.backup_bytes(
        repo,
        f"{service.name}.meta.json",
        json.dumps(meta, indent=2).encode(),
        {"service": service.name, "kind": "meta", "of": summary.snapshot_id},
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
def connect(options: MysqlOptions) -> Iterator[pymysql.connections.Connection[pymysql.cursors.Cursor]]:
    """A pymysql connection with the defaults file's credentials."""
    user, password = read_defaults_file(options.defaults_file)
    where = options.socket or f"{options.host}:{options.port}"
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
        missing = {db: missing_privileges(cur, grantee, db) for db in databases}
        missing = {db: privs for db, privs in missing.items() if privs}
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
    flavour = "mariadb" if "mariadb" in str(version).lower() else "mysql"
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


def dump_command(options: MysqlOptions, info: ServerInfo) -> list[str]:
    """argv of the dump tool; credentials come only from ``--defaults-file``."""
    family = info.flavour if options.client == "auto" else options.client
    default_program, family_flags = CLIENTS[family]
    program = options.dump_program or default_program
    if shutil.which(program) is None:
        raise BackupError(f"dump program {program!r} not found (install the {family} client tools)")
    argv = [program, f"--defaults-file={options.defaults_file}"]
    if options.socket:
        argv.append(f"--socket={options.socket}")
    else:
        argv += [f"--host={options.host}", f"--port={options.port}", "--protocol=TCP"]
    return [*argv, *COMMON_FLAGS, *family_flags, "--databases", *info.databases]


def stream_dump(
    argv: list[str], repo: restic.Repository, filename: str, tags: dict[str, str]
) -> tuple[restic.BackupSummary, DumpStats]:
    """Pump the dump into restic; only a complete dump is allowed to become a snapshot."""
    upload = restic.StdinBackup(repo, filename, tags)
    dump = execute.Process(argv, stdout=execute.PIPE)
    finished = False
    try:
        stats, tail = _pump(dump, upload)
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


def _pump(dump: execute.Process, upload: restic.StdinBackup) -> tuple[DumpStats, bytes]:
    """Copy the dump to restic chunk by chunk; return its size, hash and last bytes."""
    source = dump.popen.stdout
    assert source is not None
    digest = hashlib.sha256()
    size = 0
    tail = b""
    while chunk := source.read1(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        tail = (tail + chunk[-TAIL:])[-TAIL:]
        try:
            upload.stdin.write(chunk)
        except BrokenPipeError:
            upload.process.check("stopped reading the dump")
            raise
    return DumpStats(size, digest.hexdigest()), tail
