"""MySQL / MariaDB job: a consistent logical dump, a physical copy of the data
directory, or both (``mysql.method``), streamed into restic.

The package's modules, in the order a backup and a drill use them:
``client`` (option files, connections, client programs), ``preflight`` (privileges),
``dump`` (command line, streaming into restic), ``pump`` (copying the stream, hashed
and scanned), ``scan`` (row counts and client commands read from the
stream), ``record`` (the ``kind=meta`` record beside each dump), ``load`` and
``parallel`` (streaming a dump back into a server), ``scratch`` (disposable drill
servers) and ``checks`` (what a drill proves). ``physical`` is the other method
(``mariadb-backup``/``xtrabackup``), ``xbstream`` reads its stream and
``physical_drill`` proves it in containers. ``binlog`` is point-in-time recovery:
binary logs shipped beside the dumps, replayed on top of one.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

from backup_agent import restic, snapshots
from backup_agent.errors import BackupError
from backup_agent.jobs.base import BackupResult, RestoreRequest, RestoreResult, require_drill
from backup_agent.jobs.mysql import physical, physical_drill, record
from backup_agent.jobs.mysql.binlog import pitr
from backup_agent.jobs.mysql.binlog.chain import dump_tags
from backup_agent.jobs.mysql.binlog.coordinates import PositionWatcher
from backup_agent.jobs.mysql.checks import check_sanity, check_tables, dropped_after
from backup_agent.jobs.mysql.client import connect, where
from backup_agent.jobs.mysql.dump import dump_command, stream_dump
from backup_agent.jobs.mysql.load import heartbeat_table, load_checked, prepare_target, retarget
from backup_agent.jobs.mysql.preflight import preflight
from backup_agent.jobs.mysql.scan import DumpScanner
from backup_agent.jobs.mysql.scratch import scratch_mysql
from backup_agent.manifest import Manifest, MysqlOptions, Service

log = logging.getLogger(__name__)


def backup(manifest: Manifest, service: Service, kind: str) -> BackupResult:
    """A dump, a physical copy or both (``mysql.method``), each its own snapshot with
    its own record."""
    options = service.options
    assert isinstance(options, MysqlOptions)
    if kind != "full":
        raise BackupError(f"{service.name}: a MySQL backup is always full, not {kind!r}")
    if options.method == physical.METHOD:
        return physical.backup(manifest, service, kind)
    dumped = logical_backup(manifest, service, kind)
    if options.method != "both":
        return dumped
    copied = physical.backup(manifest, service, kind)
    return replace(
        dumped,
        bytes_read=dumped.bytes_read + copied.bytes_read,
        bytes_added=dumped.bytes_added + copied.bytes_added,
        details={**dumped.details, "physical": copied.details},
    )


def logical_backup(manifest: Manifest, service: Service, kind: str) -> BackupResult:
    """Dump the configured databases into one snapshot, plus its record."""
    options = service.options
    assert isinstance(options, MysqlOptions)
    info = preflight(options)
    for table in info.non_innodb:
        log.warning(
            "%s: %s is not InnoDB; its dump is not transactionally consistent", service.name, table
        )
    argv = dump_command(options, info)
    scanner = PositionWatcher(DumpScanner(trusted_rows=True))  # from the dump tool
    link = snapshots.new_link()
    uploads: list[restic.SealedBackup] = []

    def start_record() -> None:
        """The record's restic, started once its tags are known: at once, or with binlog
        coordinates once the dump is complete (the GTID comes last), while restic saves it."""
        uploads.append(record.start(manifest, service, link, _record_tags(scanner)))

    if not info.log_bin:
        start_record()
    try:
        summary, stats = stream_dump(
            argv,
            manifest.repository_for(service.name),
            f"{service.name}.sql",
            {**snapshots.tags(service, kind), snapshots.LINK_TAG: link},
            scanner,
            None if uploads else start_record,
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
        position, seen_at = scanner.coordinates.result(), scanner.coordinates.seen_at
        if position is not None and seen_at is not None:
            details["binlog"] = {**asdict(position), "consistent_by": seen_at.isoformat()}
        elif info.log_bin:
            log.warning(
                "%s: the dump names no binlog position: no point-in-time restore from it",
                service.name,
            )
        record.seal(uploads[0], details)
    finally:
        for upload in uploads:
            upload.abort()  # unless sealed: no record without a complete dump
    return BackupResult.of_summary(service, kind, summary, details, bytes_read=stats.size)


def _record_tags(scanner: PositionWatcher) -> dict[str, str]:
    """The record's tags: the dump's binlog coordinates, when it names them."""
    position, seen_at = scanner.coordinates.result(), scanner.coordinates.seen_at
    return {} if position is None or seen_at is None else dump_tags(position, seen_at)


def restore(manifest: Manifest, service: Service, request: RestoreRequest) -> RestoreResult:
    """Stream a trusted dump from restic into a server, checking it against its record;
    a physical snapshot goes to ``physical.restore`` instead.

    ``request.target`` is ``HOST[:PORT]`` or a socket path; by default the configured
    server. Databases that already hold tables are refused unless ``force``. ``latest``
    is the newest dump, or the newest physical copy when that is the method.
    """
    if request.to_point:
        return pitr.restore(manifest, service, request)
    options = service.options
    assert isinstance(options, MysqlOptions)
    method = physical.METHOD if options.method == physical.METHOD else "logical"
    any_method = request.snapshot != "latest"
    snapshot, meta = record.select_dump(
        manifest, service, request.snapshot, None if any_method else method
    )
    if record.method_of(snapshot) == physical.METHOD:
        return physical.restore(manifest, service, request, snapshot, meta)
    target = retarget(options, request.target)
    family = prepare_target(target, meta, request.force, own=heartbeat_table(service))
    if request.dry_run:
        names = ", ".join(record.databases(meta))
        plan = f"dry run: would load snapshot {snapshot.short_id} into {where(target)} ({names})"
        return RestoreResult(service.name, snapshot.id, where(target), 0, [plan])
    stats, checks = load_checked(manifest, service, snapshot, meta, target, family)
    return RestoreResult(service.name, snapshot.id, where(target), stats.size, checks)


def drill(manifest: Manifest, service: Service) -> RestoreResult:
    """Restore the newest dump into a disposable server and prove it complete; with
    shipped binlogs, restore a point in time instead (``binlog.pitr.drill``).

    Proofs: the stream's SHA-256 and size equal the record, every table of the dump
    exists with the row count read from the dump at backup time, and the manifest's
    sanity queries hold. The disposable server is removed (or the scratch databases
    dropped) afterwards, also on failure.
    """
    options = service.options
    assert isinstance(options, MysqlOptions)
    if options.method == physical.METHOD:
        return physical_drill.drill(manifest, service)
    if service.binlog is not None:
        return pitr.drill(manifest, service)  # the newest dump is proven on the way
    settings = require_drill(manifest)
    snapshot, meta = record.select_dump(manifest, service, "latest")
    with scratch_mysql(settings.mysql, options, settings.scratch_dir) as target:
        family = prepare_target(target, meta, force=False, fresh=True)
        with dropped_after(target, record.databases(meta), shared=not settings.mysql.image):
            stats, checks = load_checked(manifest, service, snapshot, meta, target, family)
            with connect(target) as conn, conn.cursor() as cur:
                checks += check_tables(cur, meta, options.allow_empty)
                checks += check_sanity(cur, options.sanity_queries, snapshot.time, service.rpo)
    return RestoreResult(service.name, snapshot.id, where(target), stats.size, checks, "logical")
