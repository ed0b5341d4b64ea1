"""The physical method's pieces that need no server: argv, tools, version checks."""

from __future__ import annotations

import pytest

from backup_agent.errors import BackupError
from backup_agent.jobs.mysql import physical
from backup_agent.jobs.mysql.physical import (
    TOOLS,
    backup_command,
    ended_well,
    prepare_command,
    recorded_tables,
    require_series,
    series,
    tool_version_of,
    tools_of,
    unpack_command,
)
from backup_agent.manifest import MysqlOptions

PASSWORD = "Zq9-distinctive-Pw!"
OPTIONS = MysqlOptions(defaults_file="/run/secrets/mysql_backup.cnf", host="db", port=3307)


@pytest.mark.parametrize("family", ["mariadb", "mysql"])
def test_the_backup_streams_xbstream_with_credentials_only_from_the_option_file(
    family: str,
) -> None:
    program = TOOLS[family].backup
    argv = backup_command(program, OPTIONS, "/var/tmp/backup-agent/physical-x")
    assert argv == [
        program,
        "--defaults-file=/run/secrets/mysql_backup.cnf",  # first, as the tools require
        "--host=db",
        "--port=3307",
        "--backup",
        "--stream=xbstream",
        "--target-dir=/var/tmp/backup-agent/physical-x",
    ]
    assert not any("password" in arg for arg in argv)


def test_a_socket_replaces_host_and_port() -> None:
    options = MysqlOptions(defaults_file="/c.cnf", socket="/run/mysqld/mysqld.sock")
    argv = backup_command("mariadb-backup", options, "/t")
    assert "--socket=/run/mysqld/mysqld.sock" in argv
    assert not [arg for arg in argv if arg.startswith(("--host", "--port"))]


def test_the_tools_of_each_family() -> None:
    assert (TOOLS["mariadb"].backup, TOOLS["mariadb"].unpack) == ("mariadb-backup", "mbstream")
    assert (TOOLS["mysql"].backup, TOOLS["mysql"].unpack) == ("xtrabackup", "xbstream")
    assert tools_of({"family": "mysql"}) == TOOLS["mysql"]
    with pytest.raises(BackupError, match="no known server family"):
        tools_of({"family": "postgres"})


def test_unpack_and_prepare_commands() -> None:
    assert unpack_command("mbstream", "/restore") == ["mbstream", "-x", "-C", "/restore"]
    assert prepare_command("xtrabackup", "/restore") == [
        "xtrabackup",
        "--no-defaults",
        "--prepare",
        "--target-dir=/restore",
    ]


@pytest.mark.parametrize(
    ("text", "version"),
    [
        (
            "mariadb-backup based on MariaDB server 10.11.19-MariaDB debian-linux-gnu (x86_64)",
            "10.11.19",
        ),
        (
            "xtrabackup version 8.0.35-30 based on MySQL server 8.0.35 Linux (x86_64) "
            "(revision id: 6beb4b49)",
            "8.0.35",
        ),
        ("xtrabackup version 8.4.0-1 based on MySQL server 8.4.0 Linux (x86_64)", "8.4.0"),
    ],
)
def test_the_server_version_a_tool_is_built_for(text: str, version: str) -> None:
    assert tool_version_of("tool", text) == version


def test_a_version_output_without_a_server_version_is_refused() -> None:
    with pytest.raises(BackupError, match="names no server version"):
        tool_version_of("tool", "tool 1.0")


@pytest.mark.parametrize(
    ("version", "expected"),
    [("10.11.19-MariaDB-0+deb12u1", (10, 11)), ("8.0.35", (8, 0)), ("11.8.3-MariaDB", (11, 8))],
)
def test_series(version: str, expected: tuple[int, int]) -> None:
    assert series(version) == expected


@pytest.mark.parametrize(
    ("built_for", "server", "ok"),
    [
        ("10.11.19", "10.11.6-MariaDB-0+deb12u1", True),
        ("10.11.19", "11.8.3-MariaDB", False),
        ("10.6.20", "10.11.19-MariaDB", False),
        ("8.0.35", "8.0.40", True),
        ("8.0.35", "8.4.0", False),  # MySQL 8.4 needs XtraBackup 8.4
    ],
)
def test_only_a_tool_of_the_same_series_is_used(built_for: str, server: str, ok: bool) -> None:
    if ok:
        require_series("mariadb-backup", built_for, server, "the server")
        return
    with pytest.raises(BackupError, match=r"same major\.minor series"):
        require_series("mariadb-backup", built_for, server, "the server")


@pytest.mark.parametrize(
    ("tail", "ok"),
    [
        (
            "[00] 2026-12-02 01:27:45 Redo log copied. | [00] 2026-12-02 01:27:45 completed OK!",
            True,
        ),
        ("[00] completed OK! | [00] Error: failed to copy", False),
        ("", False),
        ("[01] 2026-12-02 Copying ./ibdata1", False),
    ],
)
def test_success_is_the_last_line_of_the_log(tail: str, ok: bool) -> None:
    assert ended_well(tail) is ok


def test_the_recorded_tables_are_read_as_pairs() -> None:
    meta = {"tables": {"shop": ["orders", "customer"], "app": [], "bad": "x"}}
    assert recorded_tables(meta) == {("shop", "orders"), ("shop", "customer")}
    assert recorded_tables({"tables": ["x"]}) == set()


def test_the_stream_file_is_named_after_the_service() -> None:
    class Named:
        name = "db"

    assert physical.filename(Named()) == "db.xbstream"  # type: ignore[arg-type]
