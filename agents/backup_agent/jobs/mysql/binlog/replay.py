"""Replay: rebuild a chain's binlog files from the repository, check every event, and
pipe them as SQL into a client, up to the target.

Binlog bytes read back from a repository are hostile input. Before the binlog tool
reads them, each piece must match the SHA-256 its shipment recorded, each rebuilt
file must parse (structure, checksums), and the events to be replayed must write only
to the restored databases and hold no LOAD DATA: row events are applied through
``BINLOG`` statements, which MariaDB's BINLOG REPLAY (and MySQL's BINLOG_ADMIN) let
write to any table whatever the user's other privileges, so a forged Table_map for
``mysql.global_priv`` would otherwise create an account. The client runs with
``--binary-mode`` (client commands such as ``\\!`` in a statement are refused),
``--local-infile=0`` (no file of the restoring host can be read) and ``--sandbox``
where it has it.

Where replay stops is decided here, from the events, and handed to the binlog tool as
a position (``--stop-position``, on the last file): the same cut for the check, the
replay and the proof, in no time zone. What the client received is read back from
the tool's output on the way (the position of its last event, its GTID, and the
rows each table gained or lost), so a drill can prove the replay reached the point
the plan named.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from backup_agent import execute, restic
from backup_agent.jobs.mysql.binlog.chain import Coordinates, Piece, RestorePlan, Shipment, Target
from backup_agent.jobs.mysql.binlog.events import (
    FORMAT_DESCRIPTION,
    GTID_EVENTS,
    LOAD_EVENTS,
    MARIADB_GTID_LIST,
    QUERY,
    ROTATE,
    STOP,
    TABLE_MAP,
    BinlogError,
    Event,
    gtid_of,
    iter_events,
    mapped,
    read_format,
    table_of,
)
from backup_agent.jobs.mysql.binlog.ship import RECORD_FILE
from backup_agent.jobs.mysql.client import FAMILIES, client_help, require_program

# Added to the replay client (already in binary mode, which refuses client commands
# such as \! in the stream): LOAD DATA LOCAL would read files of the restoring host.
CLIENT_FLAGS = ("--local-infile=0",)
# Events that carry no change: where they fall says nothing about what was replayed.
FRAME_EVENTS = frozenset({FORMAT_DESCRIPTION, ROTATE, STOP, MARIADB_GTID_LIST, 161, 35})
CONTROL = re.compile(rb"\A\s*(?:BEGIN|COMMIT|ROLLBACK|XA\s|SAVEPOINT|RELEASE\s)", re.IGNORECASE)


def rebuild_files(repo: restic.Repository, plan: RestorePlan, workdir: Path) -> list[Path]:
    """Read a chain's pieces back from restic into whole files, verifying as it goes.

    Each shipment is read once (``restic dump`` of its directory, a tar stream); each
    segment must have the size and SHA-256 its shipment recorded, and each rebuilt
    file must parse as a binlog (structure, checksums) before anything replays it.
    """
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    archives: dict[str, tuple[tarfile.TarFile, dict[tuple[str, int], str]]] = {}
    paths = []
    try:
        for (name, _), pieces in plan.chain.files:
            path = workdir / name
            with path.open("wb") as out:
                for piece in pieces:
                    shipment = piece.shipment
                    if shipment.snapshot_id not in archives:
                        archives[shipment.snapshot_id] = _open_shipment(repo, shipment, workdir)
                    archive, record = archives[shipment.snapshot_id]
                    _copy_piece(archive, record, piece, out)
            with mapped(path) as data:
                fmt = read_format(data)
                for _ in iter_events(data, fmt.first_event, fmt.checksum, fmt.first_event):
                    pass
            paths.append(path)
    finally:
        for archive, _ in archives.values():
            archive.close()
        for tar in workdir.glob("*.tar"):
            tar.unlink()
    return paths


def _open_shipment(
    repo: restic.Repository, shipment: Shipment, workdir: Path
) -> tuple[tarfile.TarFile, dict[tuple[str, int], str]]:
    """A shipment's files as a tar archive, and its record: SHA-256 per (file, start)."""
    path = workdir / f"{shipment.snapshot_id}.tar"
    with path.open("wb") as sink:
        restic.dump(repo, shipment.snapshot_id, shipment.root, sink).check()
    # Read only: members are looked up by name, never extracted. The caller closes it.
    archive = tarfile.open(path)  # noqa: SIM115
    try:
        record = json.loads(_member(archive, shipment, RECORD_FILE).read(1 << 24))
        return archive, {
            (str(item["file"]), int(item["start"])): str(item["sha256"])
            for item in record["segments"]
        }
    except (ValueError, KeyError, TypeError) as exc:
        archive.close()
        raise BinlogError(f"binlog snapshot {shipment.snapshot_id[:8]}: unreadable record") from exc
    except BaseException:
        archive.close()
        raise


def _member(archive: tarfile.TarFile, shipment: Shipment, name: str) -> IO[bytes]:
    try:
        member = archive.getmember(f"{shipment.root.strip('/')}/{name}")
        handle = archive.extractfile(member) if member.isfile() else None
    except KeyError:
        handle = None
    if handle is None:
        raise BinlogError(f"binlog snapshot {shipment.snapshot_id[:8]} holds no file {name}")
    return handle


def _copy_piece(
    archive: tarfile.TarFile, record: dict[tuple[str, int], str], piece: Piece, out: IO[bytes]
) -> None:
    """Append a piece to ``out`` after checking its whole segment against the record."""
    shipment, segment = piece.shipment, piece.segment
    source = _member(archive, shipment, segment.file)
    digest = hashlib.sha256()
    size = 0
    skip = piece.start - segment.start
    written = 0
    wanted = piece.end - piece.start
    while chunk := source.read(1 << 20):
        digest.update(chunk)
        keep = chunk[max(0, skip - size) :][: wanted - written]
        size += len(chunk)
        written += len(keep)
        out.write(keep)
    if digest.hexdigest() != record.get((segment.file, segment.start)) or size != (
        segment.end - segment.start
    ):
        raise BinlogError(
            f"{segment.file} [{segment.start}, {segment.end}) in snapshot"
            f" {shipment.snapshot_id[:8]} does not match its record"
        )


@dataclass(frozen=True)
class Position:
    """Where a replay ends: a file of the chain, the end of its last replayed event
    (``None``: nothing was replayed), and the last GTID replayed."""

    file: str
    end: int | None
    gtid: str | None = None

    def __str__(self) -> str:
        gtid = f" (GTID {self.gtid})" if self.gtid else ""
        return f"{self.file}:{self.end}{gtid}"


@dataclass(frozen=True)
class Span:
    """The events a replay applies: ``files`` from ``start`` to ``stop`` (exclusive, in
    the last file; None: to its end), and where the last applied event ends."""

    files: tuple[Path, ...]
    start: Coordinates
    stop: int | None
    last: Position
    events: int
    statements: tuple[bytes, ...] = ()  # texts of statements other than BEGIN/COMMIT


def inspect(
    files: Sequence[Path], start: Coordinates, target: Target, databases: Sequence[str]
) -> Span:
    """Find where ``target`` cuts the chain and check every event before the cut.

    A time target stops at the first event stamped at or after its second (the
    binlog is in commit order, and a transaction starts with its GTID event, stamped
    with its commit); a position target at the first event of its file starting at or
    after it; a GTID target after the last event of that transaction. Refused before
    the cut: LOAD DATA events, and Table_map events of tables outside ``databases``.
    """
    allowed = set(databases)
    limit = target.time.timestamp() if target.time is not None else None
    last = Position(files[0].name, None)
    count = 0
    statements: list[bytes] = []
    found_gtid = False
    for index, path in enumerate(files):
        with mapped(path) as data:
            fmt = read_format(data)
            skip = start.position if index == 0 else fmt.first_event
            for event in iter_events(data, skip, fmt.checksum, skip):
                gtid = gtid_of(event)
                if _stops_here(event, path.name, target, limit, found_gtid):
                    return Span(
                        tuple(files[: index + 1]),
                        start,
                        event.offset,
                        last,
                        count,
                        tuple(statements),
                    )
                found_gtid = found_gtid or (gtid is not None and gtid == target.gtid)
                _check(event, path.name, fmt.table_id_size, allowed)
                if event.type_code == QUERY:
                    text = _statement(event)
                    if text is not None and not CONTROL.match(text):
                        statements.append(text)
                if event.type_code not in FRAME_EVENTS:
                    count += 1
                    last = Position(path.name, event.end, gtid or last.gtid)
    if target.gtid is not None and not found_gtid:
        raise BinlogError(f"GTID {target.gtid} is not in the shipped binlogs after the dump")
    if target.position is not None and target.position.file not in {p.name for p in files}:
        raise BinlogError(f"{target.position.file} is not in the chain")
    return Span(tuple(files), start, None, last, count, tuple(statements))


def _stops_here(
    event: Event, name: str, target: Target, limit: float | None, found_gtid: bool
) -> bool:
    if event.type_code in FRAME_EVENTS:
        return False
    if limit is not None:
        return event.timestamp >= limit
    if target.position is not None:
        return name == target.position.file and event.offset >= target.position.position
    return found_gtid and event.type_code in GTID_EVENTS


def _check(event: Event, name: str, id_size: int, allowed: set[str]) -> None:
    if event.type_code in LOAD_EVENTS:
        raise BinlogError(f"{name}: LOAD DATA event at {event.offset} (log in ROW format)")
    if event.type_code == TABLE_MAP:
        database, table = table_of(event, id_size)
        if database not in allowed:
            raise BinlogError(
                f"{name}: event at {event.offset} writes to {database}.{table}, outside the"
                f" restored databases ({', '.join(sorted(allowed))})"
            )


def _statement(event: Event) -> bytes | None:
    """The text of a Query event (v4: 13-byte post-header, status variables, the
    default database and a NUL, then the statement)."""
    body = event.body
    if len(body) < 13:
        return None
    db_len = body[8]
    status_len = struct.unpack_from("<H", body, 11)[0]
    return body[13 + status_len + db_len + 1 :]


def replay_command(
    program: str,
    flags: Sequence[str],
    files: Sequence[Path],
    span: Span,
    database: str | None = None,
) -> list[str]:
    """argv turning local binlog files into SQL from the span's start to its stop
    (``--stop-position`` applies to the last file). With one ``database``, statements
    run while another database was the default one are left out."""
    argv = [program, "--no-defaults", *flags]
    argv.append(f"--start-position={span.start.position}")
    if span.stop is not None:
        argv.append(f"--stop-position={span.stop}")
    if database:
        argv.append(f"--database={database}")
    return [*argv, *map(str, files)]


def replay_flags(help_text: str) -> tuple[str, ...]:
    """What the binlog tool (by its ``--help``) needs to replay into a server that
    already ran some of the same transactions: MariaDB's tool refuses out-of-order
    GTIDs by default (an earlier restore leaves them), and Oracle's makes the server
    skip GTIDs it has executed (a restore in place after a DROP would silently apply
    nothing)."""
    offered = set(re.findall(r"^\s+(?:-\w, )?(--[a-z-]+)", help_text, re.MULTILINE))
    wanted = ("--skip-gtid-strict-mode",) if "--gtid-strict-mode" in offered else ()
    return (*wanted, *(flag for flag in ("--skip-gtids",) if flag in offered))


_EVENT = re.compile(
    rb"^#\d{6} +\d{1,2}:\d\d:\d\d +server id \d+ +end_log_pos (\d+) (?:CRC32 0x[0-9a-f]+ +)?\t(.*)$"
    rb"|^# Number of rows: (\d+)$",
    re.MULTILINE,
)
_TABLE_MAP = re.compile(rb"Table_map: `((?:[^`]|``)*)`\.`((?:[^`]|``)*)` mapped to number (\d+)")
_ROWS = re.compile(rb"(Write|Update|Delete)_rows\w*: table id (\d+)")
_GTID = re.compile(rb"GTID (\d+-\d+-\d+)")
_FRAMES = (b"Start:", b"Rotate to", b"Stop", b"Gtid list", b"Binlog checkpoint", b"Previous-GTIDs")
CARRY_LIMIT = 1 << 16  # a longer line is not a comment the scan looks for


@dataclass
class Replayed:
    """What the binlog tool handed the client, read from the comments it writes before
    each event: the last event's end and file (one ``Start:`` event per file), its
    GTID, and per table the rows written minus the rows deleted (MariaDB's tool
    counts each row event's rows)."""

    file_index: int = -1  # of the file being read
    change_index: int = -1  # of the file holding the last change
    end: int | None = None
    gtid: str | None = None
    rows: dict[tuple[str, str], int] = field(default_factory=dict)
    counted: bool = False  # the tool printed row counts
    _tables: dict[bytes, tuple[str, str]] = field(default_factory=dict)
    _pending: tuple[tuple[str, str], int] | None = None
    _carry: bytes = b""

    def feed(self, chunk: bytes) -> None:
        data = self._carry + chunk
        cut = data.rfind(b"\n") + 1
        for match in _EVENT.finditer(data, 0, cut):
            self._line(match)
        rest = data[cut:]
        self._carry = rest if len(rest) <= CARRY_LIMIT else b""

    def _line(self, match: re.Match[bytes]) -> None:
        if match.group(3) is not None:
            if self._pending is not None:
                counted, sign = self._pending
                self.rows[counted] = self.rows.get(counted, 0) + sign * int(match.group(3))
                self.counted = True
            self._pending = None
            return
        text = match.group(2)
        if text.startswith(b"Start:"):
            self.file_index += 1
        if text.startswith(_FRAMES):
            return
        self.end, self.change_index = int(match.group(1)), self.file_index
        if gtid := _GTID.match(text):
            self.gtid = gtid.group(1).decode()
        elif table := _TABLE_MAP.match(text):
            names = (table.group(1).replace(b"``", b"`"), table.group(2).replace(b"``", b"`"))
            self._tables[table.group(3)] = (
                names[0].decode(errors="replace"),
                names[1].decode(errors="replace"),
            )
        elif rows := _ROWS.match(text):
            mapped_table = self._tables.get(rows.group(2))
            sign = {b"Write": 1, b"Delete": -1}.get(rows.group(1), 0)
            self._pending = (mapped_table, sign) if mapped_table else None

    def position(self, files: Sequence[Path]) -> Position | None:
        if not 0 <= self.change_index < len(files):
            return None
        return Position(files[self.change_index].name, self.end, self.gtid)


@dataclass(frozen=True)
class ReplayResult:
    files: tuple[str, ...]
    bytes: int
    span: Span
    replayed: Position | None  # read from the tool's output
    rows: dict[tuple[str, str], int]  # rows gained per table
    counted: bool  # the tool printed row counts (MariaDB's does)

    def proven_position(self) -> str:
        """The replay reached the position the events say it must; raises otherwise."""
        expected = self.span.last
        got = self.replayed
        if expected.end is None and (got is None or got.end is None):
            return "nothing was written after the dump up to the point: nothing to replay"
        same = got is not None and (got.file, got.end) == (expected.file, expected.end)
        if same and expected.gtid and got is not None and got.gtid:
            same = got.gtid == expected.gtid
        if not same:
            raise BinlogError(f"replay ended at {got}, expected {expected}")
        return f"replayed up to {expected}, as planned"


def replay(
    repo: restic.Repository,
    plan: RestorePlan,
    client_argv: Sequence[str],
    workdir: Path,
    databases: Sequence[str],
    family: str,
    program: str | None = None,
) -> ReplayResult:
    """Rebuild the plan's binlog files and pipe them, as SQL, into ``client_argv``.

    The client must be in binary mode (``client.load_command``); it also gets
    ``CLIENT_FLAGS``. Its user needs the replayed statements' privileges plus BINLOG
    REPLAY (MariaDB) or REPLICATION_APPLIER (MySQL 8).
    """
    if "--binary-mode" not in client_argv:
        raise BinlogError("the replay client must run in --binary-mode")
    tool = require_program(program or FAMILIES[family].binlog, family)
    try:
        files = rebuild_files(repo, plan, workdir)
        span = inspect(files, plan.chain.start, plan.target, databases)
        database = databases[0] if len(databases) == 1 else None
        argv = replay_command(tool, replay_flags(client_help(tool)), span.files, span, database)
        seen = Replayed()
        decoder = execute.Process(argv, env={"TZ": "UTC"}, stdout=execute.PIPE)
        client = execute.Process([*client_argv, *CLIENT_FLAGS], stdin=execute.PIPE)
        try:
            _pipe(decoder, client, seen)
        finally:
            decoder.stop()
            client.stop()
        return ReplayResult(
            tuple(p.name for p in span.files),
            sum(p.stat().st_size for p in span.files),
            span,
            seen.position(span.files),
            seen.rows,
            seen.counted,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _pipe(decoder: execute.Process, client: execute.Process, seen: Replayed) -> None:
    """Copy the decoder's SQL into the client, reading it on the way."""
    source, sink = decoder.popen.stdout, client.popen.stdin
    assert source is not None and sink is not None
    try:
        with sink:
            while chunk := os.read(source.fileno(), 1 << 20):
                seen.feed(chunk)
                sink.write(chunk)
    except BrokenPipeError:
        client.check("stopped reading the replayed binlogs")
        raise
    client.check("failed replaying binlogs")
    decoder.check("failed decoding binlogs")
