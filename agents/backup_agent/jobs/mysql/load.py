"""Loading a dump from a snapshot into a server, proving the stream is the one backed up.

The stream comes from ``restic dump``, is hashed on the way and loaded with its tables
in parallel (``parallel.ParallelLoader``); its SHA-256 and size must equal the record.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pymysql

from backup_agent import execute, restic
from backup_agent.errors import BackupError
from backup_agent.jobs.mysql import record
from backup_agent.jobs.mysql.client import connect, family_of, load_command, where
from backup_agent.jobs.mysql.parallel import ParallelLoader
from backup_agent.jobs.mysql.pump import Pumped, pump
from backup_agent.jobs.mysql.scan import DumpScanner
from backup_agent.manifest import Manifest, MysqlOptions, Service

LOAD_WORKERS = max(2, min(4, os.cpu_count() or 2))  # client processes loading tables


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


def prepare_target(
    target: MysqlOptions, meta: Mapping[str, Any], force: bool, fresh: bool = False
) -> str:
    """Refuse a target whose databases already hold tables (with ``fresh``: that has any
    of them at all, since a drill drops afterwards what it loaded); return its client
    family."""
    databases = record.databases(meta)
    with connect(target) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        version = str((cur.fetchone() or ("",))[0])
        occupied = non_empty_databases(cur, databases)
        if fresh:
            cur.execute("SHOW DATABASES")
            present = {str(row[0]) for row in cur.fetchall()}
            occupied = sorted(present & set(databases))
    if occupied and fresh:
        raise BackupError(
            f"database(s) {', '.join(occupied)} already exist on the drill server "
            f"{where(target)}: a drill only loads into databases it creates"
        )
    if occupied and not force:
        raise BackupError(
            f"database(s) {', '.join(occupied)} on {where(target)} already hold tables "
            "(use --force to load over them)"
        )
    return family_of(version)


def non_empty_databases(cur: pymysql.cursors.Cursor, databases: list[str]) -> list[str]:
    """Those of ``databases`` that exist and hold at least one table or view."""
    if not databases:
        return []
    cur.execute(
        "SELECT DISTINCT TABLE_SCHEMA FROM information_schema.TABLES WHERE TABLE_SCHEMA IN %s",
        (databases,),
    )
    return sorted(row[0] for row in cur.fetchall())


def load_checked(
    manifest: Manifest,
    service: Service,
    snapshot: restic.Snapshot,
    meta: Mapping[str, Any],
    target: MysqlOptions,
    family: str,
) -> tuple[Pumped, list[str]]:
    """Load the dump into ``target``; prove the stream equals what was backed up."""
    repo = manifest.repository_for(service.name)
    stats = load_dump(
        manifest, repo, snapshot, f"/{service.name}.sql", load_command(family, target)
    )
    checks = [f"loaded {stats.size} bytes into {where(target)}"]
    if stats.sha256 != meta["sha256"] or stats.size != meta["bytes"]:
        raise BackupError(
            f"restored stream differs from the backup: {stats.size} bytes sha256 {stats.sha256},"
            f" recorded {meta['bytes']} bytes sha256 {meta['sha256']}"
        )
    return stats, [*checks, f"SHA-256 {stats.sha256[:16]}... matches the backup record"]


def load_dump(
    manifest: Manifest,
    repo: restic.Repository,
    snapshot: restic.Snapshot,
    path: str,
    client_argv: list[str],
) -> Pumped:
    """Stream ``restic dump`` into the server, tables in parallel, hashing on the way.

    The dump is hostile input: it is scanned, exactly, before any of it reaches a
    client, and only whole lines the scanner has read are handed on; a client command
    in it stops the load (``ClientCommandError``) before the client could see it."""
    loader = ParallelLoader(client_argv, f"{manifest.work_dir}/restore", LOAD_WORKERS)
    source = restic.dump(repo, snapshot.id, path, execute.PIPE)
    stdout = source.process.popen.stdout
    assert stdout is not None
    try:
        stats = pump(stdout, loader, DumpScanner(), hold_back=True)
        source.check()
        loader.finish()
    finally:
        source.stop()
        loader.close()
    return stats
