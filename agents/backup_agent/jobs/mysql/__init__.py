"""MySQL / MariaDB job: a consistent logical dump streamed into restic.

The package's modules, in the order a backup and a drill use them:
``client`` (option files, connections, client programs), ``preflight`` (privileges),
``dump`` (command line, streaming into restic), ``pump`` (copying the stream, hashed
and scanned), ``scan`` (row counts and client commands read from the
stream), ``record`` (the ``kind=meta`` record beside each dump), ``load`` and
``parallel`` (streaming a dump back into a server), ``scratch`` (disposable drill
servers) and ``checks`` (what a drill proves).
"""

from __future__ import annotations

import logging

from backup_agent import snapshots
from backup_agent.errors import BackupError
from backup_agent.jobs.base import BackupResult, RestoreRequest, RestoreResult, require_drill
from backup_agent.jobs.mysql import record
from backup_agent.jobs.mysql.checks import check_sanity, check_tables, drop_databases
from backup_agent.jobs.mysql.client import connect, where
from backup_agent.jobs.mysql.dump import dump_command, stream_dump
from backup_agent.jobs.mysql.load import load_checked, prepare_target, retarget
from backup_agent.jobs.mysql.preflight import preflight
from backup_agent.jobs.mysql.scan import DumpScanner
from backup_agent.jobs.mysql.scratch import scratch_mysql
from backup_agent.manifest import Manifest, MysqlOptions, Service

log = logging.getLogger(__name__)


def backup(manifest: Manifest, service: Service, kind: str) -> BackupResult:
    """Dump the configured databases into one snapshot, plus its record."""
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
    scanner = DumpScanner(trusted_rows=True)  # the stream comes from the dump tool
    summary, stats = stream_dump(
        argv,
        manifest.repository_for(service.name),
        f"{service.name}.sql",
        snapshots.tags(service, kind),
        scanner,
    )
    details = {
        "snapshot": summary.snapshot_id,
        "bytes": stats.size,
        "sha256": stats.sha256,
        "server_version": info.version,
        "family": info.family,
        "databases": list(info.databases),
        "client": argv[0],
        "tables": scanner.close(),  # rows per db.table, counted in the dump itself
    }
    record.write(manifest, service, summary.snapshot_id, details)
    return BackupResult.of_summary(service, kind, summary, details, bytes_read=stats.size)


def restore(manifest: Manifest, service: Service, request: RestoreRequest) -> RestoreResult:
    """Stream a trusted dump from restic into a server, checking it against its record.

    ``request.target`` is ``HOST[:PORT]`` or a socket path; by default the configured
    server. Databases that already hold tables are refused unless ``force``.
    """
    options = service.options
    assert isinstance(options, MysqlOptions)
    snapshot, meta = record.select_dump(manifest, service, request.snapshot)
    target = retarget(options, request.target)
    family = prepare_target(target, meta, request.force)
    if request.dry_run:
        names = ", ".join(record.databases(meta))
        plan = f"dry run: would load snapshot {snapshot.short_id} into {where(target)} ({names})"
        return RestoreResult(service.name, snapshot.id, where(target), 0, [plan])
    stats, checks = load_checked(manifest, service, snapshot, meta, target, family)
    return RestoreResult(service.name, snapshot.id, where(target), stats.size, checks)


def drill(manifest: Manifest, service: Service) -> RestoreResult:
    """Restore the newest dump into a disposable server and prove it complete.

    Proofs: the stream's SHA-256 and size equal the record, every table of the dump
    exists with the row count read from the dump at backup time, and the manifest's
    sanity queries hold. The disposable server is removed (or the scratch databases
    dropped) afterwards, also on failure.
    """
    options = service.options
    assert isinstance(options, MysqlOptions)
    settings = require_drill(manifest)
    snapshot, meta = record.select_dump(manifest, service, "latest")
    with scratch_mysql(settings.mysql, options, settings.scratch_dir) as target:
        family = prepare_target(target, meta, force=False, fresh=True)
        try:
            stats, checks = load_checked(manifest, service, snapshot, meta, target, family)
            with connect(target) as conn, conn.cursor() as cur:
                checks += check_tables(cur, meta, options.allow_empty)
                checks += check_sanity(cur, options.sanity_queries, snapshot, service)
        finally:
            if not settings.mysql.image:
                drop_databases(target, record.databases(meta))
    return RestoreResult(service.name, snapshot.id, where(target), stats.size, checks)
