"""Chains, from snapshot listings alone: which dump and which shipped binlogs restore a
point in time, how far the shipped binlogs reach, and where the chain is broken.

A shipment (a ``kind=binlog`` snapshot) holds *segments*: byte ranges ``[start,
end)`` of server files, named in its tags. A file is identified by its name and the
time the server opened it (its format description), so that names reused after
``RESET MASTER`` never mix. A dump's record names the position it is consistent
with; its chain is that file rebuilt from offset 0 and the files after it, for as
long as the shipped segments are contiguous. A target inside a chain is restorable
(``plan_restore``); the chains of the kept dumps make the point-in-time window
(``windows``). Everything here is pure: no reads, no commands.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from backup_agent import restic
from backup_agent.jobs.mysql.binlog.events import (
    BinlogError,
    Segment,
    next_name,
    order,
    split_name,
)
from backup_agent.snapshots import BINLOG_KIND, META_KIND, TIME_TAG

log = logging.getLogger(__name__)

POSITION_TAG = re.compile(r"\A([A-Za-z0-9_.-]+):(\d{1,15})\Z")
MARIADB_GTIDS = re.compile(r"\A\d{1,10}-\d{1,10}-\d{1,20}(?:,\d{1,10}-\d{1,10}-\d{1,20}){0,63}\Z")
# The agent's clock (a dump's time) against the server's (a file's creation time).
CLOCK_TOLERANCE = timedelta(minutes=5)


def stamp(moment: datetime) -> str:
    """A time as the tags carry it (UTC, whole seconds)."""
    return moment.astimezone(UTC).strftime(TIME_TAG)


def unstamp(value: str) -> datetime:
    """The inverse of ``stamp``; ValueError for anything else."""
    if len(value) != 16 or value[8] != "T" or value[15] != "Z" or not value[:8].isdigit():
        raise ValueError(f"not a time tag: {value[:20]!r}")
    if not value[9:15].isdigit():
        raise ValueError(f"not a time tag: {value[:20]!r}")
    year, month, day = int(value[0:4]), int(value[4:6]), int(value[6:8])
    hour, minute, second = int(value[9:11]), int(value[11:13]), int(value[13:15])
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def iso(moment: datetime) -> str:
    """A time for people: UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass(frozen=True)
class Shipment:
    """One ``kind=binlog`` snapshot: its segments and the coverage it proves.

    ``until`` is the server's clock just before the bytes were read: every
    transaction committed before it is in this shipment or an earlier one.
    """

    snapshot_id: str
    root: str  # the snapshot's path: segment files and the record are inside
    time: datetime
    until: datetime
    segments: tuple[Segment, ...]
    gap: bool = False  # binlogs were lost between the previous shipment and this one

    @classmethod
    def of(cls, snapshot: restic.Snapshot) -> Shipment:
        """A shipment from a snapshot ``snapshots.judge`` trusted as one."""
        segments = tuple(map(Segment.from_tag, (snapshot.tag("binlog") or "").split(";")))
        until = unstamp(snapshot.tag("until") or "")
        gap = snapshot.tag("gap") == "1"
        return cls(snapshot.id, snapshot.paths[0], snapshot.time, until, segments, gap)

    def tags(self, service: str) -> dict[str, str]:
        """What chain building needs, readable from ``restic snapshots`` alone."""
        tags = {"service": service, "kind": BINLOG_KIND, "until": stamp(self.until)}
        tags["binlog"] = ";".join(segment.tag() for segment in self.segments)
        if self.gap:
            tags["gap"] = "1"
        return tags


@functools.lru_cache(maxsize=1 << 16)
def _shipment(snapshot: restic.Snapshot) -> Shipment | None:
    """Parsed once per snapshot: retention and ``plan`` read the same ones many times."""
    try:
        return Shipment.of(snapshot)
    except (BinlogError, ValueError) as exc:
        log.warning("ignoring binlog snapshot %s: %s", snapshot.short_id, exc)
        return None


def shipments_of(trusted: Iterable[restic.Snapshot]) -> list[Shipment]:
    """The shipments among trusted binlog snapshots, oldest first (the trust rule has
    checked their tags; one that still does not parse is left out with a warning)."""
    found = (_shipment(snapshot) for snapshot in trusted)
    return sorted((s for s in found if s is not None), key=lambda s: s.time)


@dataclass(frozen=True, order=True)
class Coordinates:
    """A binlog position: where a dump is consistent, or where replay starts."""

    file: str
    position: int
    gtid: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.position}"


def parse_position(text: str) -> Coordinates:
    """``mysql-bin.000042:4711`` -> Coordinates."""
    match = POSITION_TAG.match(text.strip())
    if not match:
        raise BinlogError(f"{text[:80]!r} is not a binlog position FILE:OFFSET")
    split_name(match.group(1))
    return Coordinates(match.group(1), int(match.group(2)))


@dataclass(frozen=True)
class DumpPoint:
    """A dump snapshot and the binlog position it is consistent with."""

    snapshot_id: str
    coordinates: Coordinates
    consistent_by: datetime  # the dump's snapshot of the data was taken by then


def dump_tags(coordinates: Coordinates, consistent_by: datetime) -> dict[str, str]:
    """Tags of a dump's record, so that planning needs no snapshot reads."""
    tags = {"binlog": str(coordinates), "consistent": stamp(consistent_by)}
    if coordinates.gtid and MARIADB_GTIDS.match(coordinates.gtid):
        tags["gtid"] = coordinates.gtid
    return tags


def dump_points(
    dumps: Iterable[restic.Snapshot], records: dict[str, restic.Snapshot]
) -> list[DumpPoint]:
    """Trusted dumps whose record names their coordinates, oldest first. ``records``
    maps a dump's id to its record (``Judgement.records``). Physical copies are no
    base for a replay, whatever their record claims."""
    points = []
    for dump in dumps:
        record = records.get(dump.id)
        if record is None or record.tag("kind") != META_KIND:
            continue
        if (dump.tag("method") or "logical") != "logical":
            continue
        where, when = record.tag("binlog"), record.tag("consistent")
        if not where or not when:
            continue  # binary logging was off, or the dump predates shipping
        gtid = record.tag("gtid")
        try:
            at = replace(
                parse_position(where), gtid=gtid if gtid and MARIADB_GTIDS.match(gtid) else None
            )
            points.append(DumpPoint(dump.id, at, unstamp(when)))
        except (BinlogError, ValueError):
            log.warning("ignoring malformed binlog coordinates on record %s", record.short_id)
    return sorted(points, key=lambda p: p.consistent_by)


@dataclass(frozen=True)
class Piece:
    """The part ``[start, end)`` of a shipped segment that a chain uses."""

    shipment: Shipment
    segment: Segment
    start: int
    end: int


FileKey = tuple[str, int]  # (name, created)


@dataclass(frozen=True)
class Chain:
    """The contiguous shipped binlog from a start position, file by file.

    ``files`` holds, per file, pieces covering it from offset 0 (so that the file can
    be rebuilt) as far as shipping reached; ``end`` is where that is. ``broken``
    says why later shipments cannot be reached, when some exist.
    """

    start: Coordinates
    files: tuple[tuple[FileKey, tuple[Piece, ...]], ...]
    end: Coordinates
    covered_until: datetime | None
    broken: str | None = None
    last_gtid: str | None = None  # the last GTID the chain's shipments recorded

    @property
    def reaches_start(self) -> bool:
        first = self.files[0][0][0] if self.files else None
        return first == self.start.file and (
            self.end.file != self.start.file or self.end.position >= self.start.position
        )

    def holds(self, target: Coordinates) -> bool:
        """Whether ``target`` lies in the chain at or after its start."""
        names = [name for (name, _), _ in self.files]
        if target.file not in names:
            return False
        if target.file == self.start.file and target.position < self.start.position:
            return False
        return target.file != self.end.file or target.position <= self.end.position


def build_chain(
    start: Coordinates, shipments: Sequence[Shipment], opened_by: datetime | None = None
) -> Chain:
    """Follow the shipped segments from ``start`` for as long as they are contiguous.

    The start file is the newest file of that name opened by ``opened_by`` (the
    dump's time). Within a file the next piece comes from the segment that covers
    the current offset and reaches furthest, so re-shipped overlapping ranges are
    harmless; after a closed file the chain goes on with the next name, opened no
    earlier.
    """
    by_file: dict[FileKey, list[tuple[Shipment, Segment]]] = {}
    by_name: dict[str, list[FileKey]] = {}
    for shipment in shipments:
        for segment in shipment.segments:
            key = (segment.file, segment.created)
            if key not in by_file:
                by_name.setdefault(segment.file, []).append(key)
            by_file.setdefault(key, []).append((shipment, segment))
    limit = (opened_by + CLOCK_TOLERANCE).timestamp() if opened_by else float("inf")
    named = [key for key in by_name.get(start.file, ()) if key[1] <= limit]
    current: FileKey | None = max(named, key=lambda k: k[1], default=None)
    files: list[tuple[FileKey, tuple[Piece, ...]]] = []
    pos = 0
    while current is not None:
        pieces, reached, closed = _follow(by_file[current])
        if not pieces:
            break
        files.append((current, tuple(pieces)))
        pos = reached
        if not closed:
            break
        following = [k for k in by_name.get(next_name(current[0]), ()) if k[1] >= current[1]]
        current = min(following, key=lambda k: k[1], default=None)
    end = Coordinates(files[-1][0][0], pos) if files else Coordinates(start.file, 0)
    gtids = [p.segment.last_gtid for _, pieces in files for p in pieces if p.segment.last_gtid]
    last_gtid = gtids[-1] if gtids else None
    chain = Chain(start, tuple(files), end, _covered(files, shipments), last_gtid=last_gtid)
    return replace(chain, broken=_why_broken(chain, shipments))


def _follow(shipped: Sequence[tuple[Shipment, Segment]]) -> tuple[list[Piece], int, bool]:
    """One file's pieces from offset 0: at each offset, of the segments starting at or
    before it, the one reaching furthest (closed ones first at equal reach)."""
    ordered = sorted(shipped, key=lambda item: item[1].start)
    pieces: list[Piece] = []
    pos, closed, index = 0, False, 0
    best: tuple[Shipment, Segment] | None = None
    while not closed:
        while index < len(ordered) and ordered[index][1].start <= pos:
            candidate = ordered[index][1]
            if best is None or (candidate.end, candidate.closed) > (best[1].end, best[1].closed):
                best = ordered[index]
            index += 1
        if best is None or best[1].end < pos or (best[1].end == pos and not best[1].closed):
            break
        ship, seg = best
        if seg.end > pos:
            pieces.append(Piece(ship, seg, pos, seg.end))
        pos, closed = seg.end, seg.closed
    return pieces, pos, closed


def _covered(
    files: Sequence[tuple[FileKey, Sequence[Piece]]], shipments: Sequence[Shipment]
) -> datetime | None:
    """The newest ``until`` of the shipments the chain holds entirely, counting only
    their segments of the chain's first file and later ones."""
    if not files:
        return None
    reach = {key: pieces[-1].end for key, pieces in files}
    first = (files[0][0][1], order(files[0][0][0]))
    covered = None
    for shipment in shipments:
        relevant = [g for g in shipment.segments if (g.created, order(g.file)) >= first]
        if relevant and all(g.end <= reach.get((g.file, g.created), -1) for g in relevant):
            covered = shipment.until if covered is None else max(covered, shipment.until)
    return covered


def _why_broken(chain: Chain, shipments: Sequence[Shipment]) -> str | None:
    if not chain.files:
        return f"no binlog shipped for {chain.start.file} from its start"
    if not chain.reaches_start:
        return f"{chain.start.file} is shipped only up to {chain.end.position}"
    last_key = chain.files[-1][0]
    later = [
        g
        for s in shipments
        for g in s.segments
        if (g.created, order(g.file), g.end) > (last_key[1], order(last_key[0]), chain.end.position)
        and g.created >= chain.files[0][0][1]
    ]
    if not later:
        return None
    first = min(later, key=lambda g: (g.created, order(g.file), g.start))
    return (
        f"binlog chain from {chain.start} stops at {chain.end}; the next shipped binlog is"
        f" {first.file}:{first.start}"
    )


def needed_snapshots(chain: Chain) -> set[str]:
    """Binlog snapshots a chain reads (retention keeps them with their dump)."""
    return {piece.shipment.snapshot_id for _, pieces in chain.files for piece in pieces}


# --- the point-in-time window ------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """``[start, end]``: every second in it is restorable from one dump and its chain."""

    start: datetime
    end: datetime

    def __str__(self) -> str:
        return f"{iso(self.start)} .. {iso(self.end)}"


def windows(dumps: Sequence[DumpPoint], shipments: Sequence[Shipment]) -> list[Window]:
    """The restorable spans, oldest first: each dump's chain from the dump to as far as
    its shipments reach, overlapping spans merged."""
    spans = []
    for dump in dumps:
        chain = build_chain(dump.coordinates, shipments, dump.consistent_by)
        if chain.reaches_start and chain.covered_until and chain.covered_until > dump.consistent_by:
            spans.append(Window(dump.consistent_by, chain.covered_until))
    merged: list[Window] = []
    for span in sorted(spans, key=lambda w: w.start):
        if merged and span.start <= merged[-1].end:
            merged[-1] = Window(merged[-1].start, max(merged[-1].end, span.end))
        else:
            merged.append(span)
    return merged


def describe_windows(found: Sequence[Window]) -> str:
    if not found:
        return "there is no point-in-time window (no dump with shipped binlogs after it)"
    return "the point-in-time window is " + ", ".join(map(str, found))


@dataclass(frozen=True)
class ChainStatus:
    """The newest dump's chain: what the window metric and the chain alert read."""

    dump_id: str | None
    covered_until: datetime | None  # restores are possible up to here
    broken: str | None  # why the newest dump cannot be rolled forward to the newest binlog
    window: timedelta  # the contiguous window ending at covered_until; 0 if none


def chain_status(dumps: Sequence[DumpPoint], shipments: Sequence[Shipment]) -> ChainStatus:
    """The newest dump's chain, and the window that ends where it does."""
    if not dumps:
        return ChainStatus(None, None, "no dump with binlog coordinates", timedelta())
    newest = dumps[-1]
    chain = build_chain(newest.coordinates, shipments, newest.consistent_by)
    found = windows(dumps, shipments)
    span = found[-1] if found and found[-1].end == chain.covered_until else None
    return ChainStatus(
        newest.snapshot_id,
        chain.covered_until,
        chain.broken,
        span.end - span.start if span else timedelta(),
    )


# --- restore planning --------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A point to restore to: a time (replay what committed before its second), a
    position (replay events starting before it) or a GTID (up to and including it)."""

    time: datetime | None = None
    position: Coordinates | None = None
    gtid: str | None = None

    def __str__(self) -> str:
        if self.time is not None:
            return iso(self.time)
        return f"GTID {self.gtid}" if self.gtid else f"position {self.position}"


@dataclass(frozen=True)
class RestorePlan:
    """Which dump to load and which binlog chain to replay, up to where."""

    dump: DumpPoint
    chain: Chain
    target: Target  # a time target is rounded down to its second (UTC)

    def describe(self) -> list[str]:
        """The chain, for ``--dry-run`` and logs."""
        lines = [
            f"dump {self.dump.snapshot_id[:8]}, consistent at {self.dump.coordinates}"
            f" by {iso(self.dump.consistent_by)}",
        ]
        for (name, _), pieces in self.chain.files:
            shipped = ", ".join(
                f"{p.shipment.snapshot_id[:8]} [{p.start}, {p.end})" for p in pieces
            )
            lines.append(f"binlog {name}: {shipped}")
        lines.append(f"replay from {self.chain.start} up to {self.target}")
        return lines


def plan_restore(
    dumps: Sequence[DumpPoint], shipments: Sequence[Shipment], target: Target
) -> RestorePlan:
    """The newest dump before ``target`` whose binlog chain reaches it; an error that
    names the window when none does."""
    if target.time is not None:
        if target.time.tzinfo is None:
            raise BinlogError("the restore target time needs a time zone")
        target = Target(time=target.time.astimezone(UTC).replace(microsecond=0))
    reasons = []
    for dump in sorted(dumps, key=lambda d: d.consistent_by, reverse=True):
        if target.time is not None and dump.consistent_by > target.time:
            continue
        if target.position is not None and (
            target.position.file == dump.coordinates.file
            and target.position.position < dump.coordinates.position
        ):
            continue
        if target.gtid is not None and not gtid_after(target.gtid, dump.coordinates.gtid):
            continue
        chain = build_chain(dump.coordinates, shipments, dump.consistent_by)
        why = _unreachable(chain, target)
        if why is None:
            return RestorePlan(dump, chain, target)
        reasons.append(f"dump {dump.snapshot_id[:8]}: {why}")
        if target.time is not None and chain.reaches_start:
            break  # an older dump's chain reaches no further than this one's
    detail = f" ({'; '.join(reasons[:2])})" if reasons else ""
    raise BinlogError(
        f"cannot restore to {target}: {describe_windows(windows(dumps, shipments))}{detail}"
    )


def gtid_after(gtid: str, state: str | None) -> bool:
    """Whether MariaDB GTID ``gtid`` (domain-server-seq) comes after the GTID state
    ``state`` a dump recorded; True when either cannot tell (a MySQL GTID)."""
    parts = gtid.split("-")
    if state is None or len(parts) != 3 or not all(p.isdigit() for p in parts):
        return True
    domain, _, seq = map(int, parts)
    for entry in state.split(","):
        have_domain, _, have_seq = map(int, entry.split("-"))
        if have_domain == domain:
            return seq > have_seq
    return True


def _unreachable(chain: Chain, target: Target) -> str | None:
    """Why ``chain`` cannot restore ``target``; None when it can (a GTID is looked for
    in the rebuilt files, so any sound chain is a candidate)."""
    if not chain.reaches_start:
        return chain.broken
    if target.time is not None and (
        chain.covered_until is None or chain.covered_until < target.time
    ):
        reached = iso(chain.covered_until) if chain.covered_until else "nothing"
        return f"its binlogs reach {reached}" + (f" ({chain.broken})" if chain.broken else "")
    if target.position is not None and not chain.holds(target.position):
        return f"its binlogs run from {chain.start} to {chain.end}"
    return None
