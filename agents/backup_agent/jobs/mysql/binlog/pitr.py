"""Point-in-time recovery as the agent uses it: one scheduled shipment, a restore to
a time, a GTID or a position, and the drill that proves a point-in-time restore.

Everything starts from one listing of the service's snapshots, judged by the trust
rule (``snapshots.judge``): trusted dumps with the position their record names, and
trusted binlog shipments.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql

from backup_agent import snapshots
from backup_agent.jobs.base import RestoreRequest, RestoreResult, require_drill
from backup_agent.jobs.mysql import record
from backup_agent.jobs.mysql.binlog.chain import (
    ChainStatus,
    DumpPoint,
    RestorePlan,
    Shipment,
    Target,
    chain_status,
    describe_windows,
    dump_points,
    iso,
    parse_position,
    plan_restore,
    shipments_of,
    windows,
)
from backup_agent.jobs.mysql.binlog.events import BinlogError
from backup_agent.jobs.mysql.binlog.replay import ReplayResult, replay
from backup_agent.jobs.mysql.binlog.ship import ship
from backup_agent.jobs.mysql.checks import (
    check_sanity,
    check_tables,
    compare_counts,
    dropped_after,
)
from backup_agent.jobs.mysql.client import connect, load_command, quote, where
from backup_agent.jobs.mysql.load import heartbeat_table, load_checked, prepare_target, retarget
from backup_agent.jobs.mysql.scratch import scratch_mysql
from backup_agent.manifest import Binlog, Manifest, MysqlOptions, Service

log = logging.getLogger(__name__)

# A heartbeat recovered by a drill may lag its target by one interval, plus the
# second a time target is rounded down to and the heartbeat thread's own delay.
HEARTBEAT_SLACK = timedelta(seconds=2)


@dataclass(frozen=True)
class Listing:
    """A service's trusted dumps with positions and its trusted shipments."""

    judged: snapshots.Judgement
    dumps: list[DumpPoint]
    shipments: list[Shipment]


def listing(manifest: Manifest, service: Service) -> Listing:
    judged = snapshots.judge(
        snapshots.of_service(manifest, service), service, snapshots.Trust.of(manifest)
    )
    return Listing(
        judged, dump_points(judged.trusted, judged.records), shipments_of(judged.binlogs)
    )


def settings_of(service: Service) -> tuple[Binlog, MysqlOptions]:
    options = service.options
    assert isinstance(options, MysqlOptions)
    if service.binlog is None:
        raise BinlogError(f"{service.name} ships no binlogs (no binlog section in the manifest)")
    return service.binlog, options


# Shipments one run may store while catching up after an outage (each holds at most
# ship.SHIPMENT_BUDGET bytes of server files); the deadline bounds the run too.
MAX_SHIPMENTS_PER_RUN = 64


@dataclass(frozen=True)
class Shipped:
    """One shipping run: what it stored, and the newest dump's chain afterwards."""

    shipments: int
    bytes: int
    gap: str | None  # the chain broke: reported as a failure, alert until the next dump
    status: ChainStatus


def ship_service(manifest: Manifest, service: Service) -> Shipped:
    """One scheduled run of ``service``'s binlog shipping (the ``binlog`` task): a
    shipment, or several when the server holds more than one shipment's budget.

    The first shipment starts at the newest dump's file when that is still on the
    server. A gap is reported in the result: data was shipped, but the chain is
    broken until the next dump.
    """
    settings, options = settings_of(service)
    found = listing(manifest, service)
    begin = found.dumps[-1].coordinates.file if found.dumps and not found.shipments else None
    shipments, total, gap = list(found.shipments), 0, None
    for _ in range(MAX_SHIPMENTS_PER_RUN):
        result = ship(
            manifest.repository_for(service.name),
            options,
            service.name,
            Path(manifest.work_dir) / "binlog" / service.name,
            shipments,
            begin=begin,
            program=settings.program,
        )
        gap = gap or result.gap
        total += result.bytes
        if result.shipment is not None:
            shipments.append(result.shipment)
        if result.complete:
            break
    stored = len(shipments) - len(found.shipments)
    return Shipped(stored, total, gap, chain_status(found.dumps, shipments))


def target_of(request: RestoreRequest) -> Target:
    """The point a request names (exactly one of time, GTID, position)."""
    given = [v for v in (request.to_time, request.to_gtid, request.to_position) if v is not None]
    if len(given) != 1:
        raise BinlogError("name one point to restore to: a time, a GTID or a position")
    if request.to_time is not None:
        return Target(time=request.to_time)
    if request.to_gtid is not None:
        return Target(gtid=request.to_gtid.strip())
    return Target(position=parse_position(request.to_position or ""))


def plan(manifest: Manifest, service: Service, target: Target) -> tuple[Listing, RestorePlan]:
    settings_of(service)
    found = listing(manifest, service)
    return found, plan_restore(found.dumps, found.shipments, target)


def restore(manifest: Manifest, service: Service, request: RestoreRequest) -> RestoreResult:
    """Load the newest dump before the requested point, then replay the shipped binlogs
    up to it. ``--dry-run`` prints the chain and the window instead."""
    settings, options = settings_of(service)
    target = target_of(request)
    found, chosen = plan(manifest, service, target)
    destination = retarget(options, request.target)
    if request.dry_run:
        lines = [
            f"dry run: would restore {service.name} to {chosen.target} on {where(destination)}"
        ]
        lines += chosen.describe()
        lines.append(describe_windows(windows(found.dumps, found.shipments)))
        return RestoreResult(service.name, chosen.dump.snapshot_id, where(destination), 0, lines)
    return _restore_point(manifest, service, settings, found, chosen, destination, request.force)


def _restore_point(
    manifest: Manifest,
    service: Service,
    settings: Binlog,
    found: Listing,
    chosen: RestorePlan,
    destination: MysqlOptions,
    force: bool,
) -> RestoreResult:
    snapshot = next(s for s in found.judged.trusted if s.id == chosen.dump.snapshot_id)
    meta = record.read(manifest, service, found.judged.records[snapshot.id])
    family = prepare_target(destination, meta, force, own=heartbeat_table(service))
    stats, checks = load_checked(manifest, service, snapshot, meta, destination, family)
    replayed = _replay(manifest, service, settings, chosen, meta, destination, family)
    checks += _replay_lines(replayed)
    return RestoreResult(service.name, snapshot.id, where(destination), stats.size, checks)


def _replay(
    manifest: Manifest,
    service: Service,
    settings: Binlog,
    chosen: RestorePlan,
    meta: dict[str, Any],
    destination: MysqlOptions,
    family: str,
) -> ReplayResult:
    return replay(
        manifest.repository_for(service.name),
        chosen,
        load_command(family, destination),
        Path(manifest.work_dir) / "binlog-replay" / service.name,
        record.databases(meta),
        family,
        settings.program,
    )


def _replay_lines(replayed: ReplayResult) -> list[str]:
    files = ", ".join(replayed.files)
    return [
        f"replayed {replayed.span.events} binlog events of {files}",
        replayed.proven_position(),
    ]


def drill(manifest: Manifest, service: Service) -> RestoreResult:
    """Restore a point inside the window into a disposable server and prove it.

    The point is the window's end (the newest shipment, replayed whole) or, with
    ``drill_target: random``, a random second of the window. Proofs: the dump's
    SHA-256 and row counts, the replay reaching exactly the position the events
    name, per table the dump's rows plus the rows the replay wrote minus those it
    deleted, the sanity queries at the point, and the heartbeat within one interval
    of it.
    """
    settings, options = settings_of(service)
    drill_settings = require_drill(manifest)
    found = listing(manifest, service)
    chosen, moment = _drill_point(found, settings)
    snapshot = next(s for s in found.judged.trusted if s.id == chosen.dump.snapshot_id)
    meta = record.read(manifest, service, found.judged.records[snapshot.id])
    with scratch_mysql(drill_settings.mysql, options, drill_settings.scratch_dir) as target:
        family = prepare_target(target, meta, force=False)
        shared = not drill_settings.mysql.image
        with dropped_after(target, record.databases(meta), shared):
            stats, checks = load_checked(manifest, service, snapshot, meta, target, family)
            with connect(target) as conn, conn.cursor() as cur:
                checks += check_tables(cur, meta, options.allow_empty)
            replayed = _replay(manifest, service, settings, chosen, meta, target, family)
            checks.append(f"point in time {iso(moment)} ({chosen.target})")
            checks += _replay_lines(replayed)
            with connect(target) as conn, conn.cursor() as cur:
                checks += check_rows(cur, meta, replayed)
                checks += check_sanity(cur, options.sanity_queries, moment, settings.rpo)
                if settings.heartbeat is not None:
                    checks.append(check_heartbeat(cur, settings, moment, chosen.target))
    # Logical, its time including the replay: the throughput of a point-in-time restore.
    return RestoreResult(service.name, snapshot.id, where(target), stats.size, checks, "logical")


def _drill_point(found: Listing, settings: Binlog) -> tuple[RestorePlan, datetime]:
    """The drill's plan and the moment it restores (what the heartbeat must show)."""
    spans = windows(found.dumps, found.shipments)
    if not spans:
        raise BinlogError(f"nothing to drill: {describe_windows(spans)}")
    if settings.drill_target == "random":
        seconds = [max(1, int((w.end - w.start).total_seconds())) for w in spans]
        span = random.choices(spans, weights=seconds)[0]  # noqa: S311 - not a secret
        length = int((span.end - span.start).total_seconds())
        moment = span.start + timedelta(seconds=random.randint(1, max(1, length)))  # noqa: S311
        chosen = plan_restore(found.dumps, found.shipments, Target(time=moment))
        return chosen, moment.replace(microsecond=0)
    # The window's end: the newest dump that reaches it, and its whole chain.
    newest = plan_restore(found.dumps, found.shipments, Target(time=spans[-1].end))
    whole = RestorePlan(newest.dump, newest.chain, Target(position=newest.chain.end))
    return whole, newest.chain.covered_until or spans[-1].end


def check_rows(
    cur: pymysql.cursors.Cursor, meta: dict[str, Any], replayed: ReplayResult
) -> list[str]:
    """Every table holds the rows of the dump plus those the replay wrote minus those it
    deleted; tables named by a replayed statement (DDL, TRUNCATE), or whose database one
    names, are left out."""
    if not replayed.counted and replayed.span.events:
        return ["row counts after the replay not checked: the binlog tool does not count rows"]
    tables: dict[str, dict[str, int]] = meta.get("tables") or {}
    texts = b"\n".join(replayed.span.statements)
    expected: dict[tuple[str, str], int] = {}
    skipped = 0
    for database, counts in tables.items():
        for table, dumped in counts.items():
            if table.encode() in texts or database.encode() in texts:
                skipped += 1
            else:
                expected[(database, table)] = dumped + replayed.rows.get((database, table), 0)
    proven, wrong = compare_counts(cur, expected, "expected")
    if wrong:
        raise BinlogError(f"row counts after the replay differ: {'; '.join(wrong[:10])}")
    note = f"; {skipped} changed by statements not counted" if skipped else ""
    return [f"{proven} tables hold the dump's rows plus the replayed changes{note}"]


def check_heartbeat(
    cur: pymysql.cursors.Cursor, settings: Binlog, moment: datetime, target: Target
) -> str:
    """The recovered heartbeat is within one interval of the point restored: before it
    for a time target (nothing after it was replayed), around it otherwise."""
    assert settings.heartbeat is not None
    database, _, table = settings.heartbeat.table.partition(".")
    try:
        cur.execute(f"SELECT MAX(ts) FROM {quote(database)}.{quote(table)}")  # noqa: S608
        row = cur.fetchone()
    except pymysql.err.MySQLError as exc:
        raise BinlogError(f"heartbeat {settings.heartbeat.table}: {exc.args[-1]}") from exc
    if not row or row[0] is None:
        raise BinlogError(f"heartbeat {settings.heartbeat.table} holds no row")
    beat = row[0].replace(tzinfo=UTC)
    allowed = settings.heartbeat.every + HEARTBEAT_SLACK
    late = beat >= moment if target.time is not None else beat > moment + allowed
    if late or beat < moment - allowed:
        raise BinlogError(
            f"recovered heartbeat {iso(beat)} is not within {int(allowed.total_seconds())} s"
            f" before {iso(moment)}"
        )
    lag = int((moment - beat).total_seconds())
    every = int(settings.heartbeat.every.total_seconds())
    return f"heartbeat {iso(beat)}: {lag} s before the point restored (every {every} s)"
