"""Binary log files built byte by byte, for parser tests and forged-binlog attacks.

The layout follows the v4 format MariaDB 10.11 writes: magic, a format description
event, then events with a 19-byte header and a CRC32 trailer.
"""

from __future__ import annotations

import struct
import zlib

from backup_agent.jobs.mysql.binlog import events as binlog

SERVER_ID = 14
# Post-header length per event type, as MariaDB 10.11's format description lists them
# (mariadb-binlog parses events with these).
POST_HEADER_LENGTHS = bytes.fromhex(
    "380d000800120004040404120000e400041a08000000080808020000000a0a0a0000000000000a0a0a"
    + "00" * 119
    + "041304000d0808080a0a0a"
)


class BinlogWriter:
    """Appends events, keeping every ``log_pos`` and checksum right."""

    def __init__(self, created: int = 1_796_000_000, checksum: bool = True, in_use: bool = False):
        self.checksum = checksum
        self.data = bytearray(binlog.MAGIC)
        body = struct.pack("<H", 4) + b"10.11.19-MariaDB-test".ljust(50, b"\0")
        body += struct.pack("<IB", 0, binlog.HEADER) + POST_HEADER_LENGTHS
        body += bytes([binlog.CHECKSUM_CRC32 if checksum else 0])
        flags = binlog.IN_USE_FLAG if in_use else 0
        # The description always carries a checksum slot; the server computes it with
        # the in-use flag cleared.
        self._append(created, binlog.FORMAT_DESCRIPTION, body, flags, always_crc=True)

    def _append(
        self, timestamp: int, type_code: int, body: bytes, flags: int = 0, always_crc: bool = False
    ) -> int:
        crc = self.checksum or always_crc
        length = binlog.HEADER + len(body) + (4 if crc else 0)
        offset = len(self.data)
        header = struct.pack(
            "<IBIIIH", timestamp, type_code, SERVER_ID, length, offset + length, flags
        )
        event = header + body
        if crc:
            covered = bytearray(event)
            covered[17] &= ~binlog.IN_USE_FLAG & 0xFF
            event += struct.pack("<I", zlib.crc32(bytes(covered)))
        self.data += event
        return offset

    def gtid_list(self, timestamp: int, *gtids: tuple[int, int, int]) -> int:
        body = struct.pack("<I", len(gtids))
        body += b"".join(struct.pack("<IIQ", *gtid) for gtid in gtids)
        return self._append(timestamp, binlog.MARIADB_GTID_LIST, body)

    def gtid(self, timestamp: int, seq: int, domain: int = 0) -> int:
        return self._append(
            timestamp, binlog.MARIADB_GTID, struct.pack("<QIB", seq, domain, 0) + bytes(6)
        )

    def query(self, timestamp: int, text: bytes, database: bytes = b"app") -> int:
        post = struct.pack("<IIBHH", 1, 0, len(database), 0, 0)
        return self._append(timestamp, 2, post + database + b"\0" + text)

    def table_map(self, timestamp: int, database: bytes, table: bytes, table_id: int = 70) -> int:
        body = table_id.to_bytes(6, "little") + b"\0\0"
        body += bytes([len(database)]) + database + b"\0" + bytes([len(table)]) + table + b"\0"
        body += b"\x01\x03\x00\x01"  # one INT column, no metadata, its null bitmap
        return self._append(timestamp, binlog.TABLE_MAP, body)

    def xid(self, timestamp: int, xid: int = 1) -> int:
        return self._append(timestamp, 16, struct.pack("<Q", xid))

    def event(self, timestamp: int, type_code: int, body: bytes = b"") -> int:
        return self._append(timestamp, type_code, body)

    def transaction(self, timestamp: int, seq: int) -> int:
        """A GTID, a statement and a commit: one replayable transaction."""
        offset = self.gtid(timestamp, seq)
        self.query(timestamp, f"INSERT INTO t VALUES ({seq})".encode())
        self.xid(timestamp, seq)
        return offset

    def rotate(self, timestamp: int, to: str) -> int:
        return self._append(timestamp, binlog.ROTATE, struct.pack("<Q", 4) + to.encode())

    def stop(self, timestamp: int) -> int:
        return self._append(timestamp, binlog.STOP, b"")

    def bytes(self) -> bytes:
        return bytes(self.data)
