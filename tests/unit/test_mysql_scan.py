"""Counting rows in a dump stream, and refusing what the client would run itself."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backup_agent.jobs.mysql.scan import COMMANDS, ClientCommandError, DumpScanner

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
    b"INSERT INTO `lines` (`id`, `s`) VALUES (5,'\\\\! touch /tmp/x'),\n(6,'\\n');\n"
    b"USE `odd``name`;\n"
    b"CREATE TABLE `w``x` (`id` int);\n"
    b"INSERT INTO `w``x` VALUES (1);\n"
    b"-- Dump completed on 2026-11-26 10:00:00\n"
)
EXPECTED = {"shop": {"empty": 0, "t": 6, "lines": 6}, "odd`name": {"w`x": 1}}

# What mariadb-dump 10.11 writes around routines, triggers, events and views.
ROUTINES = (
    b"/*M!999999\\- enable the sandbox mode */ \n"
    b"-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n"
    b"/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n"
    b"/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n"
    b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `d` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\n"
    b"\n"
    b"USE `d`;\n"
    b"DROP TABLE IF EXISTS `t`;\n"
    b"CREATE TABLE `t` (\n  `id` int(11) NOT NULL,\n  `s` text DEFAULT NULL\n);\n"
    b"LOCK TABLES `t` WRITE;\n"
    b"/*!40000 ALTER TABLE `t` DISABLE KEYS */;\n"
    b"INSERT INTO `t` VALUES\n(1,'a),(b\\n\\\\! touch /tmp/x'),\n(2,'it\\'s'),\n"
    b"(3,'\\r\\n\\t\\0\\Z \xc3\xbc\xf0\x9f\x98\x80');\n"
    b"/*!40000 ALTER TABLE `t` ENABLE KEYS */;\n"
    b"UNLOCK TABLES;\n"
    b"/*!50003 SET @saved_sql_mode       = @@sql_mode */ ;\n"
    b"/*!50003 SET sql_mode              = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION' */ ;\n"
    b"DELIMITER ;;\n"
    b"/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER tr BEFORE INSERT"
    b" ON t FOR EACH ROW SET NEW.s = CONCAT(NEW.s, ';') \n*/;;\n"
    b"DELIMITER ;\n"
    b"/*!50003 SET sql_mode              = @saved_sql_mode */ ;\n"
    b"DELIMITER ;;\n"
    b"CREATE DEFINER=`root`@`localhost` PROCEDURE `p`()\n"
    b"BEGIN\n  -- \\! not run: a comment\n  # \\! nor this\n  /* \\! nor this */\n"
    b"  SELECT '\\! a string', \"\\! another\", `\\! a name`; SELECT 1;\n"
    b"  /* a /*! b */ \\! still a comment */\nEND ;;\n"
    b"DELIMITER ;\n"
    b"/*!50001 CREATE VIEW `v` AS SELECT\n 1 AS `id` */;\n"
    b"/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n"
    b"\n-- Dump completed on 2026-12-01  2:40:04\n"
)


def scan(data: bytes, trusted: bool = False, size: int = 0) -> dict[str, dict[str, int]]:
    scanner = DumpScanner(trusted_rows=trusted)
    size = size or len(data) or 1
    for start in range(0, len(data), size):
        scanner.feed(data[start : start + size])
    return scanner.close()


def refused(data: bytes, trusted: bool = False) -> ClientCommandError:
    with pytest.raises(ClientCommandError) as caught:
        scan(data, trusted)
    return caught.value


@pytest.mark.parametrize("trusted", [False, True])
@pytest.mark.parametrize("size", [1, 3, 7, 64, len(DUMP)])
def test_counts_do_not_depend_on_chunking(size: int, trusted: bool) -> None:
    assert scan(DUMP, trusted, size) == EXPECTED


@pytest.mark.parametrize("trusted", [False, True])
def test_what_mariadb_dump_writes_around_routines_passes(trusted: bool) -> None:
    assert scan(ROUTINES, trusted, 5) == {"d": {"t": 3}}


def test_a_line_without_newline_at_the_end_is_counted() -> None:
    scanner = DumpScanner()
    scanner.feed(b"USE `a`;\nINSERT INTO `b` VALUES (1),(2)")
    assert scanner.pending == len(b"INSERT INTO `b` VALUES (1),(2)")
    assert scanner.close() == {"a": {"b": 2}}
    assert scanner.close() == {"a": {"b": 2}}


# One spelling per way the client has of running a command of its own.
HOSTILE = {
    "backslash at line start": b"\\! touch /tmp/pwned\n",
    "backslash after a statement": b"SELECT 1; \\! touch /tmp/pwned\n",
    "backslash inside /*! */": b"SELECT 1 /*!99999 \\! touch /tmp/pwned */;\n",
    "backslash inside /*M! */": b"/*M!999999 \\! touch /tmp/pwned */;\n",
    "backslash after an escaped backslash": b"SELECT 'a\\\\';\\! touch /tmp/pwned\n",
    "backslash after a double-quoted string": b'SELECT "a\\"b";\\! touch /tmp/pwned\n',
    "backslash after a comment closed by the client": b"/* /*! */ */ \\! touch /tmp/pwned\n",
    "backslash with CRLF": b"SELECT 1;\r\n\\! touch /tmp/pwned\r\n",
    "source a file": b"\\. /etc/passwd\n",
    "connect elsewhere": b"\\r db 203.0.113.9\n",
    "pager": b"\\P cat > /tmp/pwned\n",
    "tee": b"\\T /tmp/pwned\n",
    "charset": b"\\C gbk\n",
    "sandbox after line 1": b"SELECT 1;\n\\-\n",
    "unknown backslash command": b"SELECT 1 \\x;\n",
    "system": b"system touch /tmp/pwned\n",
    "system in capitals": b"SYSTEM touch /tmp/pwned\n",
    "system in mixed case": b"SyStEm touch /tmp/pwned\n",
    "system after blanks": b" \t system touch /tmp/pwned\n",
    "system with CRLF": b"SELECT 1;\r\nsystem touch /tmp/pwned\r\n",
    "system after a statement on the line": b"SELECT 1; system touch /tmp/pwned;\n",
    "system after a comment": b"/* c */system touch /tmp/pwned;\n",
    "system after a comment over lines": b"/*\n*/ system touch /tmp/pwned;\n",
    "system after a line of one backslash": b"\\\nsystem touch /tmp/pwned\n",
    "system after a byte order mark": b"\xef\xbb\xbfsystem touch /tmp/pwned\n",
    "system spelled with a latin1 letter": b"syst\xc8m touch /tmp/pwned\n",
    "system after a latin1 blank": b"\xa0system touch /tmp/pwned\n",
    "source": b"source /etc/passwd\n",
    "connect": b"connect db 203.0.113.9\n",
    "use without backquotes": b"use db\n",
    "use with more on the line": b"USE `db`; \\! touch /tmp/pwned\n",
    "other delimiter": b"DELIMITER //\nsystem touch /tmp/pwned//\n",
    "delimiter in lower case": b"delimiter ;;\n",
    "system under a custom delimiter": b"DELIMITER ;;\nSELECT 1;;system touch /tmp/pwned;;\n",
    "comment that depends on the client's options": b"--x \\! touch /tmp/pwned\n",
    "NUL byte": b"SELECT 1;\n\0\\! touch /tmp/pwned\n",
    "backslash under NO_BACKSLASH_ESCAPES": (
        b"SET sql_mode='NO_BACKSLASH_ESCAPES';\nSELECT 'a\\';\\! touch /tmp/pwned\n"
    ),
    "backslash under ANSI_QUOTES": b"SET sql_mode='ANSI';\nSELECT \"a\\\";\\! touch /tmp/pwned\n",
    "sql_mode from an unknown variable": b"SET sql_mode=@mode;\n",
    "global sql_mode": b"SET GLOBAL sql_mode='NO_BACKSLASH_ESCAPES';\n",
    "sql_mode set behind a comment": (
        b"/*M!999999 x */\n/*!40101 SET sql_mode='NO_BACKSLASH_ESCAPES' */;\n"
    ),
    "dynamic SQL": b"EXECUTE IMMEDIATE CONCAT('SET sql', '_mode=2097152');\n",
    "dynamic SQL behind a string read under NO_BACKSLASH_ESCAPES": (
        b"SET sql_mode='NO_BACKSLASH_ESCAPES';\nDELIMITER ;;\n"
        b"SELECT 'a\\'; EXECUTE IMMEDIATE 'SET sql_mode=0';;\n"
    ),
}


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("trusted", [False, True])
def test_client_commands_are_refused_in_every_spelling(name: str, trusted: bool) -> None:
    data = b"INSERT INTO `t` VALUES\n(1,'x'),\n(2,'y');\n" + HOSTILE[name]
    error = refused(data, trusted)
    assert error.line >= 4
    message = str(error)
    assert message.startswith(f"dump line {error.line}: refused: ")
    assert message.isprintable() and len(message) < 100
    assert "pwned" not in message and "passwd" not in message


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_name_is_refused_as_a_first_word(name: str) -> None:
    error = refused(b"SELECT 1;\n" + name.upper().encode() + b" x\n")
    expected = {"delimiter": "DELIMITER other than semicolons", "use": "USE other than 'USE `db`;'"}
    assert (error.line, error.what) == (2, expected.get(name, f"client command {name!r}"))


@pytest.mark.parametrize("letter", sorted(set("?CcrdeGqghntwPpR#.s!TuWx") - {"N"}))
def test_every_backslash_command_is_refused(letter: str) -> None:
    assert refused(b"SELECT 1 \\" + letter.encode() + b";\n").what == f"client command '\\{letter}'"


def test_the_sandbox_command_leaves_the_statement_empty() -> None:
    assert refused(b"\\-\nsystem touch /tmp/pwned\n").what == "client command 'system'"


def test_the_message_shows_no_control_characters() -> None:
    assert refused(b"SELECT 1 \\\x1b;\n").what == "client command '\\\\x1b'"


@pytest.mark.parametrize(
    "text",
    [
        b"SELECT '\\! touch', \"\\! touch\", `\\! touch`, \\N;\n",
        b"-- \\! touch\n# \\! touch\n--\n/* \\! touch */\n",
        b"/* x /*/ \\! touch */\n",
        b"SELECT 1 /*!99999 # */ \\! touch\n",
        b"SELECT 'a\\\n\\! touch';\n",
        b"SELECT 'system\n';\nSELECT 1;\n",
        b"CREATE PROCEDURE p() BEGIN\nsystem\nEND;\n",
        b"SET @saved_sql_mode = @@sql_mode, sql_mode = 'STRICT_ALL_TABLES';\n",
    ],
)
def test_what_the_client_does_not_run_passes(text: bytes) -> None:
    assert scan(text) == {}


def test_a_refusal_names_the_line_across_chunks() -> None:
    data = b"SELECT 1;\n" * 1000 + b"SELECT 'it''s';\n\\! touch /tmp/pwned\n"
    scanner = DumpScanner()
    with pytest.raises(ClientCommandError, match=r"^dump line 1002: refused"):
        for start in range(0, len(data), 333):
            scanner.feed(data[start : start + 333])
        scanner.close()


# Property: rows rendered the way the dump tools render them, split anywhere.
VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(lambda n: str(n).encode()),
    st.just(b"NULL"),
    st.binary(max_size=12).map(lambda b: b"0x" + b.hex().upper().encode() if b else b"''"),
    st.text(alphabet="ab'\"\\`),(;#-/*\n\r\t\0\x1a \u00fc\U0001f600", max_size=20).map(
        lambda s: b"'" + escape(s.encode()) + b"'"
    ),
)
TABLES = st.lists(st.lists(st.lists(VALUES, min_size=1, max_size=4), max_size=6), max_size=4)


def escape(raw: bytes) -> bytes:
    """What mysql_real_escape_string does to a string value."""
    table = {0: b"\\0", 10: b"\\n", 13: b"\\r", 26: b"\\Z", 34: b'\\"', 39: b"\\'", 92: b"\\\\"}
    return b"".join(table.get(byte, bytes((byte,))) for byte in raw)


def render(tables: list[list[list[bytes]]], one_line: bool) -> bytes:
    out = [
        b"/*M!999999\\- enable the sandbox mode */ \n/*!40101 SET NAMES utf8mb4 */;\nUSE `db`;\n"
    ]
    for number, rows in enumerate(tables):
        out.append(b"CREATE TABLE `t%d` (\n  `a` text\n);\n" % number)
        tuples = [b"(" + b",".join(row) + b")" for row in rows]
        for start in range(0, len(tuples), 3):  # several INSERTs per table
            part = tuples[start : start + 3]
            if one_line:
                out.append(b"INSERT INTO `t%d` VALUES " % number + b",".join(part) + b";\n")
            else:
                out.append(b"INSERT INTO `t%d` VALUES\n" % number + b",\n".join(part) + b";\n")
    out.append(b"-- Dump completed on 2026-12-01\n")
    return b"".join(out)


@settings(max_examples=300, deadline=None)
@given(tables=TABLES, one_line=st.booleans(), trusted=st.booleans(), seed=st.integers(0, 2**32))
def test_counts_are_exact_in_both_layouts_at_any_chunking(
    tables: list[list[list[bytes]]], one_line: bool, trusted: bool, seed: int
) -> None:
    data = render(tables, one_line)
    cuts = sorted(random.Random(seed).sample(range(len(data)), min(8, len(data))))
    scanner = DumpScanner(trusted_rows=trusted)
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        scanner.feed(data[start:end])
    expected = {f"t{n}": len(rows) for n, rows in enumerate(tables)}
    assert scanner.close() == ({"db": expected} if tables else {})
