"""Counting rows and tables in a dump stream, whatever the chunk boundaries."""

from __future__ import annotations

import pytest

from backup_agent.jobs.mysql.scan import DumpScanner

DUMP = (
    b"-- MariaDB dump\n"
    b"USE `shop`;\n"
    b"CREATE TABLE `empty` (\n  `id` int\n);\n"
    b"CREATE TABLE `t` (\n  `id` int, `s` text\n);\n"
    b"INSERT INTO `t` VALUES (1,'a),(b'),(2,'it\\'s ),( tricky'),(3,NULL);\n"
    b"INSERT INTO `t` VALUES (4,0x29282c),(5,'\\\\'),(6,'x');\n"
    b"CREATE TABLE `lines` (`id` int, `s` text);\n"
    b"INSERT INTO `lines` VALUES\n(1,'a),'),\n(2,'(x),(y)'),\n(3,'z;');\n"
    b"INSERT INTO `lines` VALUES\n(4,NULL);\n"
    b"USE `odd``name`;\n"
    b"CREATE TABLE `w``x` (`id` int);\n"
    b"INSERT INTO `w``x` VALUES (1);\n"
    b"-- Dump completed on 2026-11-26 10:00:00\n"
)
EXPECTED = {"shop": {"empty": 0, "t": 6, "lines": 4}, "odd`name": {"w`x": 1}}


@pytest.mark.parametrize("size", [1, 3, 7, 64, len(DUMP)])
def test_counts_do_not_depend_on_chunking(size: int) -> None:
    scanner = DumpScanner()
    for start in range(0, len(DUMP), size):
        scanner.feed(DUMP[start : start + size])
    assert scanner.close() == EXPECTED


def test_a_line_without_newline_at_the_end_is_counted() -> None:
    scanner = DumpScanner()
    scanner.feed(b"USE `a`;\nINSERT INTO `b` VALUES (1),(2)")
    assert scanner.close() == {"a": {"b": 2}}
