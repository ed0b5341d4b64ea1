"""Follow a mysqldump / mariadb-dump stream and count what it contains.

Row counts recorded this way are exactly consistent with the dump (they are read
from it, not from a separate query that would see another moment of the data):
each extended ``INSERT INTO `t` VALUES (...),(...);`` line holds one tuple per
``),(`` separator outside string literals, plus one. ``CREATE TABLE`` lines name
the tables, so empty tables are counted as 0. String literals are removed with
one regular expression before counting, which keeps this cheap on the stream.
"""

from __future__ import annotations

import re
from collections import defaultdict

_STRING = re.compile(rb"'(?:[^'\\]++|\\.)*+'")
_USE = re.compile(rb"^USE `((?:[^`]|``)+)`;")
_CREATE = re.compile(rb"^CREATE TABLE `((?:[^`]|``)+)`")
_INSERT = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)` ")


class DumpScanner:
    """Feed chunks in stream order; ``close`` returns ``{database: {table: rows}}``."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], int] = defaultdict(int)
        self._database = ""
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        lines = chunk.split(b"\n")
        lines[0] = self._partial + lines[0]
        self._partial = lines.pop()
        for line in lines:
            self._line(line)

    def close(self) -> dict[str, dict[str, int]]:
        """Finish the last line; return the counts per database and table."""
        if self._partial:
            self._line(self._partial)
            self._partial = b""
        counts: dict[str, dict[str, int]] = {}
        for (database, table), rows in self.rows.items():
            counts.setdefault(database, {})[table] = rows
        return counts

    def _line(self, line: bytes) -> None:
        if line.startswith(b"INSERT INTO `"):
            match = _INSERT.match(line)
            if match:
                body = _STRING.sub(b"", line) if b"'" in line else line
                self.rows[self._key(match.group(1))] += body.count(b"),(") + 1
        elif line.startswith(b"CREATE TABLE `"):
            match = _CREATE.match(line)
            if match:
                self.rows[self._key(match.group(1))] += 0
        elif line.startswith(b"USE `"):
            match = _USE.match(line)
            if match:
                self._database = _name(match.group(1))

    def _key(self, table: bytes) -> tuple[str, str]:
        return self._database, _name(table)


def _name(quoted: bytes) -> str:
    return quoted.replace(b"``", b"`").decode("utf-8", errors="replace")
