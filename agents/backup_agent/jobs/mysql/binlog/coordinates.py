"""The binlog position a dump is consistent with, read from the dump stream.

With ``--master-data=2`` (MariaDB) or ``--source-data=2`` (MySQL 8) and
``--single-transaction`` the dump tool writes, as comments, the position of its
consistent snapshot: a ``CHANGE MASTER TO`` (or ``CHANGE REPLICATION SOURCE TO``)
line before any table, and MariaDB's tool, near the end, the matching GTID state
(``SET GLOBAL gtid_slave_pos``). The first position line is the tool's (a routine
body copied into the dump comes later); the GTID line it writes is the last one.
Lines are found with ``bytes.find`` in the chunks as they pass, never by walking the
dump line by line, and at most one short line is kept between chunks.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from backup_agent.jobs.mysql.binlog.chain import Coordinates
from backup_agent.jobs.mysql.binlog.events import BinlogError, split_name
from backup_agent.jobs.mysql.scan import DumpScanner

_POSITION = re.compile(
    rb"-- CHANGE (?:MASTER|REPLICATION SOURCE) TO (?:MASTER|SOURCE)_LOG_FILE='([^'\n]{1,255})',"
    rb" (?:MASTER|SOURCE)_LOG_POS=(\d{1,15});\n"
)
_GTID = re.compile(rb"-- SET GLOBAL gtid_slave_pos='([0-9,-]{0,4096})';\n")
_MARKERS = (b"\n-- CHANGE ", b"\n-- SET GLOBAL gtid_slave_pos=")
_LONGEST = 4200  # bytes of the longest line looked for


class CoordinateScanner:
    """Fed the dump's chunks in order; ``result`` gives the coordinates found."""

    def __init__(self) -> None:
        self._position: Coordinates | None = None
        self._gtid: str | None = None
        self._carry = b"\n"  # the dump's first line counts as following a newline
        self.seen_at: datetime | None = None  # when the position went by (the agent's clock)

    def feed(self, chunk: bytes) -> None:
        data = self._carry + chunk
        keep_from = max(0, len(data) - _LONGEST)
        for marker in _MARKERS:
            if marker == _MARKERS[0] and self._position is not None:
                continue
            at = data.find(marker)
            while at >= 0:
                line_end = data.find(b"\n", at + 1)
                if line_end < 0:
                    keep_from = min(keep_from, at)  # the line goes on in the next chunk
                    break
                self._line(data[at + 1 : line_end + 1])
                if marker == _MARKERS[0] and self._position is not None:
                    break
                at = data.find(marker, line_end)
        self._carry = data[keep_from:]

    def _line(self, line: bytes) -> None:
        if self._position is None and (found := _POSITION.fullmatch(line)):
            name = found.group(1).decode("ascii", "replace")
            try:
                split_name(name)
            except BinlogError:
                return
            self._position = Coordinates(name, int(found.group(2)))
            self.seen_at = datetime.now(UTC)
        elif found := _GTID.fullmatch(line):
            self._gtid = found.group(1).decode("ascii") or None

    def result(self) -> Coordinates | None:
        """The position found (with MariaDB's GTID state), or None."""
        if self._position is None:
            return None
        return Coordinates(self._position.file, self._position.position, self._gtid)


class PositionWatcher:
    """A dump scanner that also finds the binlog position: what the backup's pump
    feeds (``pump.Scanner``) when the server writes binary logs."""

    def __init__(self, scanner: DumpScanner) -> None:
        self.scanner = scanner
        self.coordinates = CoordinateScanner()

    @property
    def pending(self) -> int:
        return self.scanner.pending

    def feed(self, chunk: bytes) -> None:
        self.scanner.feed(chunk)
        self.coordinates.feed(chunk)

    def close(self) -> dict[str, dict[str, int]]:
        return self.scanner.close()
