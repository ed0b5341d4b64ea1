"""A table loaded in blocks by several clients ends up as a serial load leaves it: real
mariadb-dump, real MariaDB, real clients.

Promises proved here:
- a big table with an auto-increment primary key, a unique and a plain key and a
  trigger, loaded in blocks with its keys added back afterwards, has the serial
  load's rows (``CHECKSUM TABLE``), ``SHOW CREATE TABLE`` (key order, AUTO_INCREMENT)
  and triggers, and so do the tables beside it that load serially;
- rows that break the unique key fail the load.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup_agent.errors import CommandError
from backup_agent.jobs.mysql import parallel, split
from backup_agent.jobs.mysql.dump import COMMON_FLAGS
from backup_agent.jobs.mysql.parallel import ParallelLoader
from tests.mariadb_server import MariaDB

pytestmark = pytest.mark.integration

ROWS = 6000
SCHEMA = [
    "CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer INT,"
    " token CHAR(32) NOT NULL, note VARCHAR(200), payload VARBINARY(32), amount DECIMAL(10,2),"
    " created DATETIME, KEY (customer), UNIQUE KEY (token)) ENGINE=InnoDB",
    "CREATE TABLE audit (id INT PRIMARY KEY AUTO_INCREMENT, order_id INT) ENGINE=InnoDB",
    "CREATE TRIGGER orders_ai AFTER INSERT ON orders FOR EACH ROW"
    " INSERT INTO audit (order_id) VALUES (NEW.id)",
    "CREATE TABLE legacy (id INT PRIMARY KEY, name VARCHAR(20), KEY (name)) ENGINE=MyISAM",
    "CREATE TABLE nokey (name VARCHAR(20)) ENGINE=InnoDB",
    "CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 100",
]
# Row text that looks like statement ends and statements, in every escaped form.
NOTES = ["plain", "it's; INSERT INTO `orders` VALUES (1);\n", "back\\slash\r\n\t", "✓ ünï"]


@pytest.fixture
def dumped(mariadb: MariaDB) -> Iterator[tuple[str, bytes]]:
    """A database as above (the trigger fills ``audit`` while it is made) and its dump in
    small INSERT statements; the database is dropped before and after the test loads it."""
    name = f"split_{uuid.uuid4().hex[:8]}"
    mariadb.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    mariadb.execute(*SCHEMA, database=name)
    conn = mariadb.connect(name)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO orders (customer, token, note, payload, amount, created)"
            " VALUES (%s, MD5(%s), %s, UNHEX(SHA2(%s, 256)), %s / 7,"
            " '2026-01-01' - INTERVAL %s MINUTE)",
            [(i % 97, i, NOTES[i % len(NOTES)], i, i, i) for i in range(ROWS)],
        )
        cur.execute(f"DELETE FROM orders WHERE id > {ROWS - 5}")  # AUTO_INCREMENT above them
        cur.execute("INSERT INTO legacy VALUES (1, 'a'), (2, 'b')")
        cur.execute("INSERT INTO nokey VALUES ('x'), ('x')")
    conn.close()
    argv = ["mariadb-dump", "--no-defaults", f"--socket={mariadb.socket}", "-uroot"]
    argv += [*COMMON_FLAGS, "--net-buffer-length=16384", "--databases", name]
    dump = subprocess.run(argv, capture_output=True, check=True).stdout
    mariadb.execute(f"DROP DATABASE {name}")
    try:
        yield name, dump
    finally:
        mariadb.execute(f"DROP DATABASE IF EXISTS {name}")


def client(mariadb: MariaDB) -> list[str]:
    return ["mariadb", "--no-defaults", f"--socket={mariadb.socket}", "-uroot", "--binary-mode"]


def state(mariadb: MariaDB, name: str) -> dict[str, object]:
    """What a load leaves: per table its checksum, row count and SHOW CREATE TABLE; the
    view; the triggers."""
    found: dict[str, object] = {}
    for table in ("orders", "audit", "legacy", "nokey"):
        found[table] = (
            mariadb.execute(f"CHECKSUM TABLE {table}", database=name)[0][1],
            mariadb.execute(f"SELECT COUNT(*) FROM {table}", database=name)[0][0],
            mariadb.execute(f"SHOW CREATE TABLE {table}", database=name)[0][1],
        )
    found["view"] = mariadb.execute("SHOW CREATE VIEW big_orders", database=name)[0][1]
    found["triggers"] = mariadb.execute(
        "SELECT trigger_name, action_statement FROM information_schema.triggers"
        f" WHERE trigger_schema = '{name}'"
    )
    return found


def load_in_parallel(mariadb: MariaDB, dump: bytes, spool: Path) -> None:
    """The dump through the parallel loader, in pieces of the pump's size."""
    loader = ParallelLoader(client(mariadb), str(spool), workers=3)
    try:
        for start in range(0, len(dump), 1 << 16):
            loader.write(dump[start : start + (1 << 16)])
        loader.finish()
    finally:
        loader.close()


def test_a_table_loaded_in_blocks_equals_a_serial_load(
    mariadb: MariaDB,
    dumped: tuple[str, bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, dump = dumped
    subprocess.run(client(mariadb), input=dump, check=True)
    serial = state(mariadb, name)
    mariadb.execute(f"DROP DATABASE {name}")

    monkeypatch.setattr(parallel, "BLOCK", 64 << 10)
    planned: list[bytes] = []
    blocks: list[str] = []

    def plan(head: bytes) -> split.Plan | None:
        made = original_plan(head)
        planned.extend([made.insert] if made else [])
        return made

    def load_file(loader: ParallelLoader, path: str) -> None:
        blocks.extend([path] if "/block-" in path else [])
        original(loader, path)

    original, original_plan = ParallelLoader.load_file, split.plan
    monkeypatch.setattr(split, "plan", plan)
    monkeypatch.setattr(ParallelLoader, "load_file", load_file)
    load_in_parallel(mariadb, dump, tmp_path / "spool")

    assert planned == [b"INSERT INTO `audit` VALUES", b"INSERT INTO `orders` VALUES"]
    assert len(blocks) > 10  # orders and audit, in blocks of 64 KiB
    assert state(mariadb, name) == serial
    orders = serial["orders"]
    assert isinstance(orders, tuple)
    assert orders[1] == ROWS - 5
    assert f"AUTO_INCREMENT={ROWS + 1}" in str(orders[2])
    assert str(orders[2]).index("UNIQUE KEY `token`") < str(orders[2]).index("KEY `customer`")


def test_rows_breaking_a_unique_key_fail_the_load(
    mariadb: MariaDB, dumped: tuple[str, bytes], tmp_path: Path
) -> None:
    _, dump = dumped
    token = mariadb.execute("SELECT MD5(1), MD5(2)")[0]
    assert dump.count(f"'{token[1]}'".encode()) == 1
    hostile = dump.replace(f"'{token[1]}'".encode(), f"'{token[0]}'".encode())
    with pytest.raises(CommandError, match="Duplicate entry"):
        load_in_parallel(mariadb, hostile, tmp_path / "spool")
