"""Follow a mysqldump / mariadb-dump stream and count what it contains.

Row counts recorded this way are exactly consistent with the dump (they are read
from it, not from a separate query that would see another moment of the data).
An extended ``INSERT INTO `t` VALUES ...;`` statement holds one tuple more than it
has separators between tuples: ``),(`` on one line (MySQL's mysqldump writes the
whole statement on one line) or ``),`` ending a line (MariaDB 10.11's mariadb-dump
puts each tuple on its own line). String literals never span lines (the dump
escapes newlines), so they are removed line by line with one regular expression
before counting. ``CREATE TABLE`` lines name the tables, so empty tables count 0.
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
        self._insert: tuple[str, str] | None = None  # table of an unfinished INSERT

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
        if self._insert is not None:
            self._tuples(self._insert, line)
        elif line.startswith(b"INSERT INTO `"):
            match = _INSERT.match(line)
            if match:
                self._insert = self._key(match.group(1))
                self.rows[self._insert] += 1
                self._tuples(self._insert, line[match.end() :])
        elif line.startswith(b"CREATE TABLE `"):
            match = _CREATE.match(line)
            if match:
                self.rows[self._key(match.group(1))] += 0
        elif line.startswith(b"USE `"):
            match = _USE.match(line)
            if match:
                self._database = _name(match.group(1))

    def _tuples(self, table: tuple[str, str], text: bytes) -> None:
        """Count the separators in one line of an INSERT; a final ``;`` ends it."""
        body = (_STRING.sub(b"", text) if b"'" in text else text).rstrip()
        self.rows[table] += body.count(b"),(") + body.endswith(b"),")
        if body.endswith(b";"):
            self._insert = None

    def _key(self, table: bytes) -> tuple[str, str]:
        return self._database, _name(table)


def _name(quoted: bytes) -> str:
    return quoted.replace(b"``", b"`").decode("utf-8", errors="replace")
