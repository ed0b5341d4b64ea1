"""MySQL fixtures shared by the integration tests: a database with every kind of
schema object, least-privilege users, and manifest service blocks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import service_spec
from tests.grafana_db import GrafanaDirs
from tests.mariadb_server import MariaDB
from tests.s3_fixtures import ceph_rgw, s3_repository  # noqa: F401 - fixtures of the S3 tests

SCHEMA = [
    "CREATE TABLE customer (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(200) NOT NULL,"
    " note TEXT, avatar BLOB, created DATETIME(6) NOT NULL) ENGINE=InnoDB"
    " DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE audit (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT, action VARCHAR(20))"
    " ENGINE=InnoDB",
    "CREATE VIEW customer_names AS SELECT id, name FROM customer",
    "CREATE TRIGGER customer_ai AFTER INSERT ON customer FOR EACH ROW"
    " INSERT INTO audit (customer_id, action) VALUES (NEW.id, 'insert')",
    "CREATE PROCEDURE customer_count(OUT n INT) SELECT COUNT(*) INTO n FROM customer",
    "CREATE EVENT purge_audit ON SCHEDULE EVERY 1 DAY DO DELETE FROM audit WHERE id < 0",
]


@pytest.fixture
def database(mariadb: MariaDB) -> Iterator[str]:
    """A database with every kind of schema object, utf8mb4 text and binary data."""
    name = f"app_{uuid.uuid4().hex[:8]}"
    mariadb.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    mariadb.execute(*SCHEMA, database=name)
    conn = mariadb.connect(name)
    with conn.cursor() as cur:
        rows = [
            (
                f"Kund {i} ✓ Ünïcødé 🚀",
                "x" * (i % 300),
                bytes(range(256)) * (i % 4),
                f"2026-01-01 00:00:{i % 60:02d}",
            )
            for i in range(2000)
        ]
        cur.executemany(
            "INSERT INTO customer (name, note, avatar, created) VALUES (%s, %s, %s, %s)", rows
        )
    conn.close()
    try:
        yield name
    finally:
        mariadb.execute(f"DROP DATABASE IF EXISTS {name}")


def grant_user(
    mariadb: MariaDB, tmp_path: Path, privileges: str, database: str, routines: bool = True
) -> str:
    """Create a user with ``privileges`` on ``database``; return its defaults file."""
    user = f"bk_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    mariadb.execute(
        f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'",
        f"GRANT {privileges} ON {database}.* TO '{user}'@'localhost'",
    )
    if routines:
        mariadb.execute(f"GRANT SELECT ON mysql.proc TO '{user}'@'localhost'")
    return mariadb.defaults_file(tmp_path / f"{user}.cnf", user, password)


def mysql_service(
    mariadb: MariaDB, defaults_file: str, database: str, **extra: Any
) -> dict[str, Any]:
    return {
        "type": "mysql",
        "schedule": "0 22 * * *",
        "rpo": "1d",
        "rto": {"target": "30m", "limit": "2h"},
        "mysql": {
            "socket": mariadb.socket,
            "defaults_file": defaults_file,
            "databases": [database],
            "client": "mariadb",
            **extra,
        },
    }


def scratch_drill(scratch: MariaDB, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """A drill section restoring MySQL into the scratch server ``scratch``."""
    return {
        "schedule": "0 6 * * 1",
        "report_file": str(tmp_path / "report.json"),
        "scratch_dir": str(tmp_path / "drill"),
        "mysql": {
            "socket": scratch.socket,
            "defaults_file": scratch.defaults_file(tmp_path / "scratch.cnf", "root", ""),
        },
        **extra,
    }


@pytest.fixture
def backup_defaults(mariadb: MariaDB, tmp_path: Path, database: str) -> str:
    return grant_user(mariadb, tmp_path, "SELECT, SHOW VIEW, TRIGGER, EVENT", database)


@pytest.fixture
def root_defaults(mariadb: MariaDB, tmp_path: Path) -> str:
    return mariadb.defaults_file(tmp_path / "root.cnf", "root", "")


def grafana_service(dirs: GrafanaDirs, **options: str) -> dict[str, Any]:
    paths = {
        "data_dir": str(dirs.data_dir),
        "config_file": str(dirs.config_file),
        "provisioning_dir": str(dirs.provisioning_dir),
    }
    return service_spec("grafana", {**paths, **options}, "0 2 28 * *", "32d")
