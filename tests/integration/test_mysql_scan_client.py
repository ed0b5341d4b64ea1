"""The scanner against the real client and the real dump tool (MariaDB 10.11).

What it refuses, the ``mariadb`` client really runs (a file appears); what it lets
through, the client does not run; a real mariadb-dump of tricky data and routines
scans clean with the row counts the server reports, whatever the chunking.
"""

from __future__ import annotations

import random
import subprocess
import uuid
from pathlib import Path

import pytest

from backup_agent.jobs.mysql.dump import COMMON_FLAGS
from backup_agent.jobs.mysql.scan import ClientCommandError, DumpScanner
from tests.conftest import need
from tests.mariadb_server import MariaDB

pytestmark = pytest.mark.integration

# Spellings that make the client start a shell command: {FILE} is created if it runs.
RUNS = {
    "backslash at line start": b"\\! touch {FILE}\n",
    "backslash after a statement": b"SELECT 1; \\! touch {FILE}\n",
    "backslash inside /*! */": b"SELECT 1 /*!99999 \\! touch {FILE} */;\n",
    "backslash inside /*M! */": b"/*M!999999 \\! touch {FILE} */;\n",
    "backslash after an escaped backslash": b"SELECT 'a\\\\';\\! touch {FILE}\n",
    "backslash after a double-quoted string": b'SELECT "a\\"b";\\! touch {FILE}\n',
    "backslash after a comment closed by the client": b"/* /*! */ */ \\! touch {FILE}\n",
    "backslash with CRLF": b"SELECT 1;\r\n\\! touch {FILE}\r\n",
    "system": b"system touch {FILE}\n",
    "system in mixed case": b"SyStEm touch {FILE}\n",
    "system after blanks": b" \t system touch {FILE}\n",
    "system with CRLF": b"SELECT 1;\r\nsystem touch {FILE}\r\n",
    "system after a statement on the line": b"SELECT 1; system touch {FILE};\n",
    "system after a comment": b"/* c */system touch {FILE};\n",
    "system after a comment over lines": b"/*\n*/ system touch {FILE};\n",
    "system after a line of one backslash": b"\\\nsystem touch {FILE}\n",
    "system after a byte order mark": b"\xef\xbb\xbfsystem touch {FILE}\n",
    "system under a custom delimiter": b"DELIMITER ;;\nSELECT 1;;system touch {FILE};;\n",
    "backslash under NO_BACKSLASH_ESCAPES": (
        b"SET sql_mode='NO_BACKSLASH_ESCAPES';\nSELECT 'a\\';\\! touch {FILE}\n"
    ),
    "backslash under ANSI_QUOTES": b"SET sql_mode='ANSI';\nSELECT \"a\\\";\\! touch {FILE}\n",
}
# Where the text "\! touch" does not make the client run anything.
INERT = {
    "strings and names": b"SELECT '\\! touch {FILE}', \"\\! touch {FILE}\", `\\! {FILE}`;\n",
    "comments": b"-- \\! touch {FILE}\n# \\! touch {FILE}\n/* \\! touch {FILE} */\n",
    "comment the client keeps open": b"/* x /*/ \\! touch {FILE} */\n",
    "a string over two lines": b"SELECT 'a\\\n\\! touch {FILE}';\n",
    "hash inside /*! */": b"SELECT 1 /*!99999 # */ \\! touch {FILE}\n",
    "system inside a statement": b"CREATE PROCEDURE p() BEGIN\nsystem touch {FILE}\nEND;\n",
}


def client(server: MariaDB, data: bytes) -> subprocess.CompletedProcess[bytes]:
    """The plain client as a restore would run it, going on after SQL errors."""
    argv = [need("mariadb"), "--no-defaults", "-S", server.socket, "-uroot", "--force", "test"]
    return subprocess.run(argv, input=data, capture_output=True, timeout=60, check=False)


@pytest.fixture
def scratch(mariadb: MariaDB) -> MariaDB:
    mariadb.execute("CREATE DATABASE IF NOT EXISTS test")
    return mariadb


@pytest.mark.parametrize("name", RUNS)
def test_what_the_scanner_refuses_the_client_runs(
    name: str, scratch: MariaDB, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    data = RUNS[name].replace(b"{FILE}", str(marker).encode())
    with pytest.raises(ClientCommandError):
        scanner = DumpScanner()
        scanner.feed(data)
        scanner.close()
    client(scratch, data)
    assert marker.exists(), f"the client did not run {name!r}: the spelling proves nothing"


@pytest.mark.parametrize("name", INERT)
def test_what_the_scanner_lets_through_the_client_does_not_run(
    name: str, scratch: MariaDB, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    data = INERT[name].replace(b"{FILE}", str(marker).encode())
    scanner = DumpScanner()
    scanner.feed(data)
    scanner.close()
    client(scratch, data)
    assert not marker.exists()


TRICKY = [
    "it's",
    "a),(b",
    "\\! touch /tmp/x",
    "back\\slash \\\\ and \\'",
    'double "quotes"',
    "new\nline\r\nand\ttab",
    "semi;colon );\n",
    "-- not a comment # nor this /* nor this */",
    "utf8mb4 \u00fc \U0001f600",
    "DELIMITER ;;",
    "system touch /tmp/x",
]


def populate(server: MariaDB, name: str) -> dict[str, int]:
    """Tables of tricky values, an empty one, routines, a trigger, an event, a view."""
    server.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    server.execute(
        "CREATE TABLE texts (id INT PRIMARY KEY, s TEXT, b BLOB, j JSON)",
        "CREATE TABLE empty_one (id INT)",
        "CREATE TABLE `odd name ),(` (`col ),(` INT)",
        "CREATE TABLE log (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(100))",
        "CREATE TRIGGER texts_ai AFTER INSERT ON texts FOR EACH ROW\n"
        "  INSERT INTO log (what) VALUES (CONCAT('row;', NEW.id, ' -- ', '\\\\! x'))",
        "CREATE PROCEDURE p(OUT n INT)\nBEGIN\n  -- a comment with \\! in it\n"
        "  SELECT COUNT(*) INTO n FROM texts WHERE s <> ';;' AND s <> '\\\\! x';\nEND",
        "CREATE FUNCTION f(x INT) RETURNS INT DETERMINISTIC RETURN x + 1",
        # Not ';;' in an event: mariadb-dump 10.11 then loops forever (create_delimiter).
        "CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO DELETE FROM log WHERE what = ';'",
        "CREATE VIEW v AS SELECT id, s AS `x),(` FROM texts",
        database=name,
    )
    conn = server.connect(name)
    try:
        with conn.cursor() as cur:
            rows = [
                (i, TRICKY[i % len(TRICKY)] * (1 + i % 3), bytes(range(i % 256)), '{"a": ";"}')
                for i in range(3000)
            ]
            cur.executemany("INSERT INTO texts VALUES (%s, %s, %s, %s)", rows)
            cur.executemany("INSERT INTO `odd name ),(` VALUES (%s)", [(i,) for i in range(7)])
    finally:
        conn.close()
    return {"texts": 3000, "empty_one": 0, "odd name ),(": 7, "log": 3000}


def dump(server: MariaDB, name: str, *extra: str) -> bytes:
    argv = [need("mariadb-dump"), "--no-defaults", "-S", server.socket, "-uroot"]
    argv += [*COMMON_FLAGS, *extra, "--databases", name]
    return subprocess.run(argv, capture_output=True, check=True, timeout=120).stdout


@pytest.mark.parametrize("extra", [(), ("--skip-extended-insert",), ("--net-buffer-length=4096",)])
def test_a_real_dump_scans_clean_with_exact_counts(
    mariadb: MariaDB, extra: tuple[str, ...]
) -> None:
    name = f"scan_{uuid.uuid4().hex[:8]}"
    expected = populate(mariadb, name)
    try:
        data = dump(mariadb, name, *extra)
    finally:
        mariadb.execute(f"DROP DATABASE {name}")
    assert data.startswith(b"/*M!999999\\- enable the sandbox mode */")
    assert b"DELIMITER ;;\n" in data and b"\\\\! touch /tmp/x" in data
    for trusted in (False, True):
        for size in (1 << 20, 4096, random.Random(len(data)).randint(100, 999)):
            scanner = DumpScanner(trusted_rows=trusted)
            for start in range(0, len(data), size):
                scanner.feed(data[start : start + size])
            assert scanner.close() == {name: expected}


def test_a_routine_made_under_no_backslash_escapes_is_read_in_its_mode(
    mariadb: MariaDB, tmp_path: Path
) -> None:
    """The dump sets the routine's sql_mode before its body: the client then reads
    'a\\' as a whole string, and so must the scanner (or it would see a command)."""
    name = f"nbe_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "ran"
    mariadb.execute(f"CREATE DATABASE {name}")
    conn = mariadb.connect(name)
    try:
        with conn.cursor() as cur:
            cur.execute("SET sql_mode = 'NO_BACKSLASH_ESCAPES'")
            cur.execute(f"CREATE PROCEDURE p() SELECT 'a\\', '\\! touch {marker}'")
    finally:
        conn.close()
    try:
        data = dump(mariadb, name)
    finally:
        mariadb.execute(f"DROP DATABASE {name}")
    assert b"NO_BACKSLASH_ESCAPES" in data
    assert f"SELECT 'a\\', '\\! touch {marker}'".encode() in data
    for trusted in (False, True):
        scanner = DumpScanner(trusted_rows=trusted)
        scanner.feed(data)
        assert scanner.close() == {}
    try:
        loaded = client(mariadb, data)
    finally:
        mariadb.execute(f"DROP DATABASE IF EXISTS {name}")
    assert loaded.returncode == 0, loaded.stderr
    assert not marker.exists()


TOKENS = [
    "'", '"', "`", "\\", "\\\\", "#", "-- ", "--", "/*", "*/", "/*!", "/*M!", ";", ";;",
    "\n", "\r\n", " ", "SELECT 1", "x", "DELIMITER ;;\n", "DELIMITER ;\n", "\\! touch {FILE}\n",
    "system touch {FILE}\n", "SET sql_mode='NO_BACKSLASH_ESCAPES';\n", "SET sql_mode='ANSI';\n",
]  # fmt: skip


def test_whatever_the_client_runs_the_scanner_refuses(scratch: MariaDB, tmp_path: Path) -> None:
    """Differential check on random token soups: the scanner may refuse more than the
    client runs, never less."""
    rng = random.Random(20261201)
    ran = 0
    for case in range(300):
        marker = tmp_path / f"ran{case}"
        text = "".join(rng.choice(TOKENS) for _ in range(rng.randint(2, 14)))
        data = text.replace("{FILE}", str(marker)).encode()
        scanner = DumpScanner()
        try:
            scanner.feed(data)
            scanner.close()
            refused = False
        except ClientCommandError:
            refused = True
        client(scratch, data)
        if marker.exists():
            ran += 1
            assert refused, f"the client ran a command the scanner let through: {data!r}"
    assert ran >= 20  # the soups do reach the client's commands
