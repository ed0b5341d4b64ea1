"""Binary log files as bytes: names, the v4 event format, and what a segment holds.

Every byte read back from a repository is hostile input, so the structure is checked
before any other program reads it: the magic number, the format description, every
event's length and end position, and its CRC32 when the file carries checksums.
MariaDB and MySQL share the v4 layout; only their GTID events differ.
"""

from __future__ import annotations

import functools
import hashlib
import mmap
import re
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from backup_agent.errors import BackupError
from backup_agent.snapshots import SEGMENT_TAG

MAGIC = b"\xfebin"
HEADER = 19  # the v4 common event header
# Event type codes (MySQL and MariaDB share the low numbers).
QUERY, STOP, ROTATE, XID, FORMAT_DESCRIPTION, TABLE_MAP = 2, 3, 4, 16, 15, 19
# LOAD DATA events (statement-based logging): replaying them makes the client read
# local files, so a binlog holding them is refused.
LOAD_EVENTS = frozenset({6, 7, 8, 9, 10, 11, 17, 18})
MYSQL_GTID, MYSQL_ANONYMOUS_GTID = 33, 34
MARIADB_GTID, MARIADB_GTID_LIST = 162, 163
GTID_EVENTS = frozenset({MYSQL_GTID, MYSQL_ANONYMOUS_GTID, MARIADB_GTID})
IN_USE_FLAG = 0x1  # set in the format description of a file still being written
CHECKSUM_CRC32 = 1

# mysql-bin.000042: a basename, a dot, six or more digits.
NAME = re.compile(r"\A([A-Za-z0-9_][A-Za-z0-9_.-]{0,200})\.(\d{6,10})\Z")

Buffer = bytes | mmap.mmap


class BinlogError(BackupError):
    """Binlog shipping or replay failed, or shipped data is malformed."""


class BinlogGap(BinlogError):
    """Binlogs were purged on the server before they were shipped: the chain is broken."""

    reason = "binlog_gap"


@functools.lru_cache(maxsize=4096)
def split_name(name: str) -> tuple[str, int]:
    """``mysql-bin.000042`` -> ``("mysql-bin", 42)``; refuses anything else."""
    match = NAME.match(name)
    if not match:
        raise BinlogError(f"{name[:80]!r} is not a binary log file name")
    return match.group(1), int(match.group(2))


def next_name(name: str) -> str:
    """The file the server opens after ``name``."""
    base, number = split_name(name)
    width = max(6, len(name) - len(base) - 1)
    return f"{base}.{number + 1:0{width}d}"


def order(name: str) -> int:
    """The sequence number of a file name (files of one server sort by it)."""
    return split_name(name)[1]


@dataclass(frozen=True)
class Event:
    """One binlog event: its v4 header and body (without the checksum)."""

    offset: int  # where the event starts in its file
    timestamp: int  # UTC seconds
    type_code: int
    server_id: int
    length: int
    flags: int
    body: bytes

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class Format:
    """What the format description event at the start of a file says."""

    server_version: str
    created: int  # the event's timestamp: when the server opened the file
    checksum: bool
    in_use: bool  # the server had not closed the file when it was read
    length: int  # of the event, so that a fetched header can be skipped
    table_id_size: int = 6  # from the post-header length of Table_map events

    @property
    def first_event(self) -> int:
        """Offset of the first event after the format description."""
        return len(MAGIC) + self.length


def read_format(data: Buffer) -> Format:
    """Check the magic and parse the format description event that follows it."""
    if data[:4] != MAGIC:
        raise BinlogError("not a binary log: bad magic number")
    if len(data) < 4 + HEADER:
        raise BinlogError("binary log ends inside its first event header")
    timestamp, type_code, _, length, _, flags = struct.unpack_from("<IBIIIH", data, 4)
    if type_code != FORMAT_DESCRIPTION or not HEADER + 57 + TABLE_MAP <= length <= len(data) - 4:
        raise BinlogError("binary log does not start with a format description event")
    event = bytes(data[4 : 4 + length])
    version = event[HEADER + 2 : HEADER + 52].split(b"\0", 1)[0].decode("ascii", "replace")
    checksum = event[length - 5] == CHECKSUM_CRC32
    if checksum:
        # The server computes this checksum with the in-use flag cleared.
        cleared = bytearray(event[:-4])
        cleared[17] &= ~IN_USE_FLAG & 0xFF
        _verify_crc(bytes(cleared), event[-4:], 4)
    table_map_post_header = event[HEADER + 57 + TABLE_MAP - 1]
    return Format(
        version, timestamp, checksum, bool(flags & IN_USE_FLAG), length, table_map_post_header - 2
    )


def _verify_crc(covered: bytes, stored: bytes, offset: int) -> None:
    if zlib.crc32(covered) != struct.unpack("<I", stored)[0]:
        raise BinlogError(f"event at {offset}: checksum mismatch")


def iter_events(data: Buffer, start: int, checksum: bool, skip: int = 0) -> Iterator[Event]:
    """Events of ``data``, whose byte ``skip`` is byte ``start`` of the file.

    Every event must fit, claim the position it really ends at (or 0, as fetched
    stand-in headers do), and carry a matching CRC32 when the file has checksums;
    anything else raises ``BinlogError``.
    """
    pos = skip
    while pos < len(data):
        offset = start + pos - skip
        if len(data) - pos < HEADER:
            raise BinlogError(f"event at {offset}: truncated header")
        timestamp, type_code, server_id, length, log_pos, flags = struct.unpack_from(
            "<IBIIIH", data, pos
        )
        if length < HEADER + (4 if checksum else 0) or length > len(data) - pos:
            raise BinlogError(f"event at {offset}: length {length} does not fit")
        if log_pos not in (0, offset + length):
            raise BinlogError(f"event at {offset}: claims to end at {log_pos}")
        raw = bytes(data[pos : pos + length])
        if checksum and type_code != FORMAT_DESCRIPTION:
            _verify_crc(raw[:-4], raw[-4:], offset)
        body = raw[HEADER : length - 4 if checksum else length]
        yield Event(offset, timestamp, type_code, server_id, length, flags, body)
        pos += length


def gtid_of(event: Event) -> str | None:
    """The GTID a transaction-starting event carries (MariaDB or MySQL form)."""
    if event.type_code == MARIADB_GTID and len(event.body) >= 13:
        seq, domain = struct.unpack_from("<QI", event.body)
        return f"{domain}-{event.server_id}-{seq}"
    if event.type_code == MYSQL_GTID and len(event.body) >= 25:
        sid = event.body[1:17].hex()
        gno = struct.unpack_from("<q", event.body, 17)[0]
        return f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:]}:{gno}"
    return None


def gtid_list_of(event: Event) -> str | None:
    """MariaDB's Gtid_list event: the binlog's GTID state where a file starts."""
    if event.type_code != MARIADB_GTID_LIST or len(event.body) < 4:
        return None
    count = struct.unpack_from("<I", event.body)[0] & 0x0FFFFFFF
    if len(event.body) < 4 + 16 * count:
        raise BinlogError(f"event at {event.offset}: Gtid_list is truncated")
    entries = [struct.unpack_from("<IIQ", event.body, 4 + 16 * i) for i in range(count)]
    return ",".join(f"{domain}-{server}-{seq}" for domain, server, seq in entries)


def table_of(event: Event, id_size: int) -> tuple[str, str]:
    """(database, table) a Table_map event maps; row events write to that table."""
    body = event.body
    try:
        at = id_size + 2
        db_len = body[at]
        database = body[at + 1 : at + 1 + db_len]
        at += 2 + db_len
        table = body[at + 1 : at + 1 + body[at]]
    except IndexError:
        raise BinlogError(f"event at {event.offset}: Table_map is truncated") from None
    return database.decode("utf-8", "replace"), table.decode("utf-8", "replace")


@dataclass(frozen=True)
class Segment:
    """Bytes ``[start, end)`` of one server binlog file, as shipped in one snapshot.

    ``created`` (the file's format description timestamp) tells apart files that
    share a name. A closed segment reaches the end of its file; it may be empty when
    a file ended without a closing event (server crash) exactly where the previous
    shipment stopped.
    """

    file: str
    created: int
    start: int
    end: int
    closed: bool = False
    sha256: str = ""
    first_time: int | None = None  # event timestamps, UTC seconds
    last_time: int | None = None
    first_gtid: str | None = None
    last_gtid: str | None = None
    gtid_state: str | None = None  # MariaDB Gtid_list where the file starts
    server_id: int | None = None
    events: int = 0

    def tag(self) -> str:
        closed = ":closed" if self.closed else ""
        return f"{self.file}@{self.created}:{self.start}-{self.end}{closed}"

    @classmethod
    def from_tag(cls, value: str) -> Segment:
        match = SEGMENT_TAG.match(value)
        if not match:
            raise BinlogError(f"malformed binlog segment {value[:80]!r}")
        name, created, start, end = match.group(1), *map(int, match.group(2, 3, 4))
        split_name(name)
        closed = bool(match.group(5))
        if end < start or (end == start and not closed):
            raise BinlogError(f"binlog segment {value!r} is empty or reversed")
        return cls(name, created, start, end, closed)


def describe(
    name: str, created: int, data: Buffer, start: int, checksum: bool, skip: int = 0
) -> Segment:
    """Parse and summarise a segment; ``data[skip:]`` is the file from byte ``start``."""
    if start == 0:
        skip = read_format(data).first_event
    first_time = last_time = server_id = None
    first_gtid = last_gtid = state = None
    closed = False
    count = 0
    for event in iter_events(data, start or skip, checksum, skip):
        if closed:
            raise BinlogError(f"{name}: event at {event.offset} follows the end of the file")
        count += 1
        first_time = event.timestamp if first_time is None else first_time
        last_time, server_id = event.timestamp, event.server_id
        gtid = gtid_of(event)
        if gtid:
            first_gtid, last_gtid = first_gtid or gtid, gtid
        state = state or gtid_list_of(event)
        if event.type_code == ROTATE:
            target = event.body[8:].decode("ascii", "replace")
            if target != next_name(name):
                raise BinlogError(f"{name}: rotates to {target[:80]!r}, not to the next file")
            closed = True
        closed = closed or event.type_code == STOP
    with memoryview(data) as view:
        size = len(view) - (0 if start == 0 else skip)
        digest = hashlib.sha256(view[len(view) - size :]).hexdigest()
    return Segment(
        file=name,
        created=created,
        start=start,
        end=start + size,
        closed=closed,
        sha256=digest,
        first_time=first_time,
        last_time=last_time,
        first_gtid=first_gtid,
        last_gtid=last_gtid,
        gtid_state=state,
        server_id=server_id,
        events=count,
    )


@contextmanager
def mapped(path: Path) -> Iterator[Buffer]:
    """A file's bytes without reading it into memory (empty files give b"")."""
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            yield b""
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            yield view
