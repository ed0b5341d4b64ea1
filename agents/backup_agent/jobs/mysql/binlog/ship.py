"""Shipping: the bytes the server wrote to its binary logs since the last shipment,
stored as one ``kind=binlog`` snapshot.

Every interval the agent asks the server what it has (``SHOW BINARY LOGS``), reads
from where the last shipment ended to the server's current end (``mariadb-binlog
--read-from-remote-server --raw``, one non-blocking read that exits at the end),
checks what it read and stores it. Nothing is flushed or rotated on the server, no
process stays connected, each byte is shipped once, and an idle server costs no
snapshot. A binlog purged on the server before it was shipped is a gap: the chain
is broken until the next dump, and shipping starts again at the oldest file the
server still has.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pymysql

from backup_agent import execute, restic
from backup_agent.jobs.mysql.binlog.chain import Shipment
from backup_agent.jobs.mysql.binlog.events import (
    BinlogError,
    BinlogGap,
    Segment,
    describe,
    mapped,
    next_name,
    order,
    read_format,
    split_name,
)
from backup_agent.jobs.mysql.client import FAMILIES, connect, connection_args, family_of
from backup_agent.manifest import MysqlOptions

log = logging.getLogger(__name__)

RECORD_FILE = "binlog.json"
# Bytes of server files one shipment reads at most (whole files; at least one): after
# an outage, shipping catches up over several runs instead of never finishing one.
SHIPMENT_BUDGET = 256 << 20


@dataclass(frozen=True)
class ServerLogs:
    """What the server says about its binary logs (``SHOW BINARY LOGS``, variables)."""

    files: tuple[tuple[str, int], ...]  # (name, size), oldest first; the last is active
    server_id: int
    gtid_position: str
    binlog_format: str
    family: str
    now: datetime  # the server's clock when listed

    @property
    def active(self) -> tuple[str, int]:
        return self.files[-1]


def server_logs(options: MysqlOptions) -> ServerLogs:
    """List the binary logs; needs BINLOG MONITOR (MariaDB) or REPLICATION CLIENT (MySQL)."""
    with connect(options) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT @@log_bin, @@server_id, @@binlog_format, VERSION(), UNIX_TIMESTAMP(NOW(6))"
        )
        log_bin, server_id, binlog_format, version, now = cur.fetchone() or (0, 0, "", "", 0)
        if not log_bin:
            raise BinlogError("binary logging is off on the server (start it with --log-bin)")
        try:
            cur.execute("SHOW BINARY LOGS")
        except pymysql.err.MySQLError as exc:
            raise BinlogError(
                f"cannot list binary logs ({exc.args[-1]}): grant BINLOG MONITOR (MariaDB)"
                " or REPLICATION CLIENT (MySQL)"
            ).because("access_refused") from exc
        files = tuple((str(row[0]), int(row[1])) for row in cur.fetchall())
        gtid = ""
        family = family_of(str(version))
        if family == "mariadb":
            cur.execute("SELECT @@gtid_binlog_pos")
            gtid = str((cur.fetchone() or ("",))[0])
    if not files:
        raise BinlogError("the server lists no binary logs")
    for name, _ in files:
        split_name(name)
    when = datetime.fromtimestamp(float(now), UTC)
    return ServerLogs(files, int(server_id), gtid, str(binlog_format), family, when)


@dataclass(frozen=True)
class Resume:
    """Where shipping continues: a file (and its identity) and an offset in it."""

    file: str
    created: int | None  # None: a new file, whichever the server has under that name
    position: int


def resume_point(shipments: Sequence[Shipment]) -> Resume | None:
    """After the furthest byte shipped so far."""
    segments = [g for s in shipments for g in s.segments]
    if not segments:
        return None
    last = max(segments, key=lambda g: (g.created, order(g.file), g.end))
    if last.closed:
        return Resume(next_name(last.file), None, 0)
    return Resume(last.file, last.created, last.end)


def choose_start(
    logs: ServerLogs, resume: Resume | None, begin: str | None
) -> tuple[Resume, str | None]:
    """Where to read from now, and why the chain breaks there (a gap), if it does.

    With nothing shipped yet, shipping starts at ``begin`` (a file still on the
    server, e.g. the newest dump's) or else at the active file. After a gap it
    starts again at the oldest file the server still has.
    """
    sizes = dict(logs.files)
    if resume is None:
        name = begin if begin in sizes else logs.active[0]
        return Resume(name, None, 0), None
    if resume.file in sizes and resume.position <= sizes[resume.file]:
        return resume, None
    if resume.file in sizes:
        why = f"{resume.file} is shorter on the server than the {resume.position} bytes shipped"
    else:
        why = f"{resume.file} was purged on the server before it was shipped"
    oldest = logs.files[0][0]
    return Resume(oldest, None, 0), f"{why}; a new chain starts at {oldest}"


def files_to_fetch(logs: ServerLogs, start: Resume, budget: int = SHIPMENT_BUDGET) -> list[str]:
    """The server's files from ``start``, as many whole files as ``budget`` allows (at
    least one)."""
    names = [name for name, _ in logs.files]
    chosen: list[str] = []
    total = 0
    for name, size in logs.files[names.index(start.file) :]:
        if chosen and total + size > budget:
            break
        chosen.append(name)
        total += size - (start.position if name == start.file else 0)
    return chosen


def fetch_command(
    program: str, options: MysqlOptions, start: Resume, files: Sequence[str], spool: Path
) -> list[str]:
    """argv reading ``files`` raw from the server, the first from ``start``, each to its
    current end, then exiting. Needs REPLICATION SLAVE."""
    argv = [program, *connection_args(options), "--read-from-remote-server", "--raw"]
    argv.append(f"--result-file={spool}/")
    if start.position > 4:
        argv.append(f"--start-position={start.position}")
    return [*argv, *files]


def fetched_segments(
    fetch: Path, start: Resume, files: Sequence[str], upload: Path
) -> list[Segment]:
    """Check what a fetch wrote, and move it into ``upload`` as segments of server files.

    The first file of a fetch that began inside a file starts with the magic and a
    stand-in format description; the rest is the server's bytes from the position
    asked for. Its file must be the one shipped before (same creation time), or the
    server's file under that name is another one: ``BinlogGap``. Every file but the
    server's active one was finished by the server, so its segment is closed even
    without a closing event (a crash).
    """
    names = sorted((p.name for p in fetch.iterdir()), key=order)
    if names != list(files):
        raise BinlogError(f"fetching {', '.join(files[:3])} wrote {', '.join(names[:3])}")
    segments = []
    for index, name in enumerate(names):
        source = fetch / name
        with mapped(source) as data:
            fmt = read_format(data)
            inside = index == 0 and start.position > 4
            if inside and start.created is not None and fmt.created != start.created:
                raise BinlogGap(f"{name} on the server is not the file shipped under that name")
            skip = fmt.first_event if inside else 0
            begin = start.position if inside else 0
            segment = describe(name, fmt.created, data, begin, fmt.checksum, skip)
        if index < len(names) - 1 and not segment.closed:
            segment = replace(segment, closed=True)
        if segment.end > segment.start or segment.closed:
            _move_tail(source, skip, upload / name)
            segments.append(segment)
    return segments


def _move_tail(source: Path, skip: int, target: Path) -> None:
    if skip == 0:
        source.rename(target)
        return
    with source.open("rb") as src, target.open("wb") as dst:
        src.seek(skip)
        shutil.copyfileobj(src, dst, 1 << 20)


@dataclass(frozen=True)
class ShipResult:
    shipment: Shipment | None  # None when nothing was written since the last shipment
    gap: str | None  # the chain broke before this shipment: alert until the next dump
    bytes: int
    complete: bool = True  # False: the server has more than one shipment's budget


def ship(
    repo: restic.Repository,
    options: MysqlOptions,
    service: str,
    spool: Path,
    shipments: Sequence[Shipment],
    *,
    begin: str | None = None,
    program: str | None = None,
) -> ShipResult:
    """Ship what the server wrote since ``shipments`` as one binlog snapshot.

    A gap is reported in the result (and shipping carries on with a new chain from
    the oldest file the server still has); the caller reports it as a failure.
    """
    logs = server_logs(options)
    if logs.binlog_format.upper() != "ROW":
        log.warning("%s: binlog_format is %s, not ROW", service, logs.binlog_format)
    tool = program or FAMILIES[logs.family].binlog
    start, gap = choose_start(logs, resume_point(shipments), begin)
    if not gap and (start.file, start.position) == logs.active:
        return ShipResult(None, None, 0)
    try:
        files = files_to_fetch(logs, start)
        segments = _fetch(tool, options, start, files, spool)
    except BinlogGap as exc:
        start = Resume(logs.files[0][0], None, 0)
        gap = f"{exc}; a new chain starts at {start.file}"
        files = files_to_fetch(logs, start)
        segments = _fetch(tool, options, start, files, spool)
    try:
        if not segments:
            return ShipResult(None, gap, 0)
        complete = files[-1] == logs.active[0]
        until = logs.now if complete else _last_event_time(segments, logs.now)
        upload = spool / "upload"
        record = {"until": until.isoformat(), "server_id": logs.server_id, "gap": gap}
        record |= {"gtid_binlog_pos": logs.gtid_position, "binlog_format": logs.binlog_format}
        record["segments"] = [asdict(segment) for segment in segments]
        (upload / RECORD_FILE).write_text(json.dumps(record, indent=2))
        draft = Shipment("", str(upload), until, until, tuple(segments), bool(gap))
        summary = restic.backup(repo, [str(upload)], draft.tags(service))
        shipment = replace(draft, snapshot_id=summary.snapshot_id)
        return ShipResult(shipment, gap, sum(g.end - g.start for g in segments), complete)
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _last_event_time(segments: Sequence[Segment], fallback: datetime) -> datetime:
    """What a partial shipment covers: up to its last event (whole seconds)."""
    times = [g.last_time for g in segments if g.last_time is not None]
    return datetime.fromtimestamp(max(times), UTC) if times else fallback


def _fetch(
    program: str, options: MysqlOptions, start: Resume, files: Sequence[str], spool: Path
) -> list[Segment]:
    shutil.rmtree(spool, ignore_errors=True)
    fetch, upload = spool / "fetch", spool / "upload"
    fetch.mkdir(parents=True, mode=0o700)
    upload.mkdir(mode=0o700)
    execute.run(fetch_command(program, options, start, files, fetch))
    return fetched_segments(fetch, start, files, upload)
