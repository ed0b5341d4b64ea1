"""MySQL job pieces that need no server: argv, option files, trailer, streaming, retarget."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest

from backup_agent import execute
from backup_agent.errors import BackupError
from backup_agent.jobs.mysql import checks, client, dump, load
from backup_agent.jobs.mysql.binlog.chain import Coordinates
from backup_agent.jobs.mysql.binlog.replay import Position, Span, replay_command, replay_flags
from backup_agent.jobs.mysql.binlog.ship import Resume, fetch_command
from backup_agent.jobs.mysql.preflight import POSITION_PRIVILEGES, ServerInfo
from backup_agent.manifest import MysqlOptions

PASSWORD = "Zq9-distinctive-Pw!"
REQUIRED_FLAGS = [
    "--single-transaction",
    "--routines",
    "--events",
    "--triggers",
    "--hex-blob",
    "--default-character-set=utf8mb4",
]
MARIADB = ServerInfo("11.4.2-MariaDB-log", "mariadb", ("app", "shop"), ())
MYSQL = ServerInfo("8.4.0", "mysql", ("app",), ())


@pytest.fixture(autouse=True)
def fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secrets and leaves none behind."""
    monkeypatch.setattr(execute, "_secrets", set())


@pytest.fixture
def defaults_file(tmp_path: Path) -> str:
    """A MySQL option file holding a distinctive password."""
    path = tmp_path / "backup.cnf"
    path.write_text(f"[client]\nuser = backup\npassword = {PASSWORD}\n")
    return str(path)


def fake_programs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Executables named ``names`` in a directory that alone makes up PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in names:
        program = bin_dir / name
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))


def assert_dump_argv(argv: list[str], defaults: str, databases: tuple[str, ...]) -> None:
    """What every dump command must look like, whatever the family."""
    assert argv[1] == f"--defaults-file={defaults}", "the option file must come first"
    for flag in REQUIRED_FLAGS:
        assert flag in argv
    assert argv[-len(databases) - 1 :] == ["--databases", *databases]
    assert not any(PASSWORD in arg for arg in argv)
    assert not any(arg.startswith(("--password", "-p")) for arg in argv)


# --- connection arguments and dump argv -----------------------------------------------------


def test_connection_args_tcp() -> None:
    """Host and port force TCP, so 'localhost' is not silently a socket."""
    options = MysqlOptions(defaults_file="/s/b.cnf", host="mysql", port=3307)
    assert client.connection_args(options) == [
        "--defaults-file=/s/b.cnf",
        "--host=mysql",
        "--port=3307",
        "--protocol=TCP",
    ]


def test_connection_args_socket() -> None:
    """A socket replaces host and port."""
    options = MysqlOptions(defaults_file="/s/b.cnf", host="mysql", socket="/run/mysqld/m.sock")
    assert client.connection_args(options) == [
        "--defaults-file=/s/b.cnf",
        "--socket=/run/mysqld/m.sock",
    ]


def test_dump_command_mariadb_socket(defaults_file: str) -> None:
    """mariadb family over a socket, with an explicit dump program."""
    options = MysqlOptions(
        defaults_file=defaults_file, socket="/run/mysqld/m.sock", dump_program="/bin/true"
    )
    argv = dump.dump_command(options, MARIADB)
    assert argv[0] == "/bin/true"
    assert argv[2] == "--socket=/run/mysqld/m.sock"
    assert not any(arg.startswith(("--host", "--port", "--protocol")) for arg in argv)
    assert "--set-gtid-purged=OFF" not in argv
    assert_dump_argv(argv, defaults_file, ("app", "shop"))
    assert client.read_defaults_file(defaults_file)[1] == PASSWORD  # the file really has it


def test_dump_command_mysql_tcp(defaults_file: str) -> None:
    """mysql family over TCP adds --set-gtid-purged=OFF."""
    options = MysqlOptions(
        defaults_file=defaults_file, host="db", port=3306, dump_program="/bin/true"
    )
    argv = dump.dump_command(options, MYSQL)
    assert argv[2:5] == ["--host=db", "--port=3306", "--protocol=TCP"]
    assert "--set-gtid-purged=OFF" in argv
    assert_dump_argv(argv, defaults_file, ("app",))


@pytest.mark.parametrize(
    ("client", "info", "program", "gtid"),
    [
        ("auto", MARIADB, "mariadb-dump", False),
        ("auto", MYSQL, "mysqldump", True),
        ("mysql", MARIADB, "mysqldump", True),
        ("mariadb", MYSQL, "mariadb-dump", False),
    ],
)
def test_dump_program_follows_client_family(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    defaults_file: str,
    client: str,
    info: ServerInfo,
    program: str,
    gtid: bool,
) -> None:
    """'auto' follows the server's flavour; an explicit client overrides it."""
    fake_programs(tmp_path, monkeypatch, "mariadb-dump", "mysqldump")
    argv = dump.dump_command(MysqlOptions(defaults_file=defaults_file, client=client), info)
    assert argv[0] == program
    assert ("--set-gtid-purged=OFF" in argv) is gtid
    assert_dump_argv(argv, defaults_file, info.databases)


def test_dump_program_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, defaults_file: str
) -> None:
    """A dump tool not on PATH is a BackupError saying what to install."""
    fake_programs(tmp_path, monkeypatch, "mariadb-dump")
    with pytest.raises(BackupError) as caught:
        dump.dump_command(MysqlOptions(defaults_file=defaults_file), MYSQL)
    assert str(caught.value) == "program 'mysqldump' not found (install the mysql client tools)"


# --- option files ---------------------------------------------------------------------------


def test_read_defaults_file_quoted_values(tmp_path: Path) -> None:
    """Quotes around values are removed; other sections are ignored; the password is masked."""
    path = tmp_path / "c.cnf"
    path.write_text(
        "[mysqld]\nuser = mysql\n\n[client]\nuser = 'backup'\n"
        'password = "s3cret with spaces"\nhost = db\nskip-ssl\n'
    )
    assert client.read_defaults_file(str(path)) == ("backup", "s3cret with spaces")
    assert execute.mask("Access denied: s3cret with spaces") == "Access denied: ***"


def test_read_defaults_file_without_password(tmp_path: Path) -> None:
    """No password is an empty one (socket authentication), and nothing gets masked."""
    path = tmp_path / "c.cnf"
    path.write_text("[client]\nuser=root\n")
    assert client.read_defaults_file(str(path)) == ("root", "")
    assert execute.mask("root@localhost") == "root@localhost"


def test_read_defaults_file_missing_user(tmp_path: Path) -> None:
    """A [client] section without user is refused."""
    path = tmp_path / "c.cnf"
    path.write_text(f"[mysqld]\nuser = mysql\n[client]\npassword = {PASSWORD}\n")
    with pytest.raises(BackupError) as caught:
        client.read_defaults_file(str(path))
    assert str(caught.value) == f"{path}: no user in its [client] section"


def test_read_defaults_file_missing(tmp_path: Path) -> None:
    """A missing file is a BackupError naming the file."""
    path = tmp_path / "absent.cnf"
    with pytest.raises(BackupError) as caught:
        client.read_defaults_file(str(path))
    assert str(caught.value) == (
        f"cannot read {path} (a MySQL option file): No such file or directory"
    )


def test_read_defaults_file_not_an_option_file(tmp_path: Path) -> None:
    """A file without sections is refused without quoting its content (the password)."""
    path = tmp_path / "c.cnf"
    path.write_text(f"user = backup\npassword = {PASSWORD}\n")
    with pytest.raises(BackupError) as caught:
        client.read_defaults_file(str(path))
    assert "not a MySQL option file" in str(caught.value)
    assert PASSWORD not in str(caught.value)


# --- trailer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tail",
    [
        b"UNLOCK TABLES;\n-- Dump completed on 2026-11-26 10:00:00\n",
        b"-- Dump completed on 2026-11-26 10:00:00\n",
        b"-- Dump completed\n",
        b"/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n\n-- Dump completed on 2026-11-26 10:00:00",
    ],
)
def test_trailer_found(tail: bytes) -> None:
    """A dump that ran to the end carries the trailer on its last line."""
    assert dump.TRAILER.search(tail)


@pytest.mark.parametrize(
    "tail",
    [
        b"INSERT INTO `t` VALUES (1,'a'),(2,",
        b"-- Dump completed on 2026-11-26 10:00:00\nINSERT INTO `t` VALUES (3)",
        b"-- Dump comp",
        b"",
        b"-- Dump completed on 2026-11-26 10:00:00\n\n",
    ],
)
def test_trailer_missing(tail: bytes) -> None:
    """A truncated dump (or one with data after the trailer) is not complete."""
    assert dump.TRAILER.search(tail) is None


# --- retarget -------------------------------------------------------------------------------

OPTIONS = MysqlOptions(
    defaults_file="/run/secrets/backup.cnf",
    host="mysql",
    port=3306,
    restore_defaults_file="/run/secrets/restore.cnf",
)


def test_retarget_default_uses_restore_credentials() -> None:
    """No target: the configured server, with the restore option file."""
    target = load.retarget(OPTIONS, None)
    assert (target.host, target.port, target.socket) == ("mysql", 3306, None)
    assert target.defaults_file == "/run/secrets/restore.cnf"


def test_retarget_without_restore_file_keeps_defaults_file() -> None:
    """Without restore_defaults_file the backup option file is used."""
    options = MysqlOptions(defaults_file="/run/secrets/backup.cnf")
    assert load.retarget(options, None).defaults_file == "/run/secrets/backup.cnf"


@pytest.mark.parametrize(
    ("where", "host", "port"), [("db2:3307", "db2", 3307), ("db2", "db2", 3306)]
)
def test_retarget_host_port(where: str, host: str, port: int) -> None:
    """HOST[:PORT] replaces the server, and a configured socket is dropped."""
    options = MysqlOptions(
        defaults_file="/b.cnf", socket="/run/mysqld/m.sock", restore_defaults_file="/r.cnf"
    )
    target = load.retarget(options, where)
    assert (target.host, target.port, target.socket) == (host, port, None)
    assert target.defaults_file == "/r.cnf"
    assert client.connection_args(target) == [
        "--defaults-file=/r.cnf",
        f"--host={host}",
        f"--port={port}",
        "--protocol=TCP",
    ]


def test_retarget_socket() -> None:
    """A path is a socket."""
    target = load.retarget(OPTIONS, "/tmp/restore/mysqld.sock")
    assert target.socket == "/tmp/restore/mysqld.sock"
    assert target.defaults_file == "/run/secrets/restore.cnf"
    assert client.connection_args(target) == [
        "--defaults-file=/run/secrets/restore.cnf",
        "--socket=/tmp/restore/mysqld.sock",
    ]


def test_retarget_bad_port_is_a_backup_error() -> None:
    """`restore --to db2:abc` is an operator mistake, reported as one clear line."""
    with pytest.raises(BackupError, match="restore target 'db2:abc' is not HOST"):
        load.retarget(OPTIONS, "db2:abc")


# --- binlog positions and MySQL 8 (point-in-time recovery) -------------------------------

# Options of Oracle's tools as the MySQL 8.0 and 8.4 reference manuals list them
# (mysqldump: "6.5.4 mysqldump", mysqlbinlog: "6.6.9 mysqlbinlog"): no Oracle server or
# client is obtainable here, so these commands are checked against the documentation.
MYSQLDUMP_8_OPTIONS = frozenset(
    {
        "--defaults-file", "--host", "--port", "--protocol", "--socket",
        "--single-transaction", "--quick", "--routines", "--events", "--triggers",
        "--hex-blob", "--default-character-set", "--no-tablespaces", "--databases",
        "--set-gtid-purged", "--source-data",  # --source-data since 8.0.26
    }
)  # fmt: skip
MYSQLBINLOG_8_OPTIONS = frozenset(
    {
        "--defaults-file", "--no-defaults", "--host", "--port", "--protocol", "--socket",
        "--read-from-remote-server", "--raw", "--result-file", "--start-position",
        "--stop-position", "--skip-gtids", "--database",
    }
)  # fmt: skip


def options_used(argv: list[str]) -> set[str]:
    return {arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith("--")}


@pytest.mark.parametrize(
    ("info", "flag"), [(MARIADB, "--master-data=2"), (MYSQL, "--source-data=2")]
)
def test_a_dump_names_its_binlog_position_when_the_server_writes_binlogs(
    defaults_file: str, info: ServerInfo, flag: str
) -> None:
    options = MysqlOptions(defaults_file=defaults_file, host="db", dump_program="/bin/true")
    assert flag not in dump.dump_command(options, info)  # binary logging off
    argv = dump.dump_command(options, replace(info, log_bin=True))
    assert flag in argv and "--single-transaction" in argv
    assert "--flush-logs" not in argv and "--master-data" not in (argv if info is MYSQL else [])
    assert_dump_argv(argv, defaults_file, info.databases)


def test_mysql_8_commands_use_only_documented_options(defaults_file: str) -> None:
    options = MysqlOptions(defaults_file=defaults_file, host="db", dump_program="/bin/true")
    dumping = dump.dump_command(options, replace(MYSQL, log_bin=True))
    assert options_used(dumping) <= MYSQLDUMP_8_OPTIONS
    start = Resume("binlog.000007", 1_796_000_000, 157)
    fetching = fetch_command("mysqlbinlog", options, start, ["binlog.000007"], Path("/spool"))
    assert options_used(fetching) <= MYSQLBINLOG_8_OPTIONS
    assert "--start-position=157" in fetching  # numeric: MySQL's tool takes no GTID here
    flags = replay_flags(
        "  --skip-gtids        Do not preserve Global Transaction Identifiers\n"
        "  --start-position=#  Start reading the binlog at position N.\n"
    )
    span = Span(
        (Path("/w/binlog.000007"),),
        Coordinates("binlog.000007", 157),
        900,
        Position("binlog.000007", 800),
        2,
    )
    replaying = replay_command("mysqlbinlog", flags, span.files, span, "app")
    assert options_used(replaying) <= MYSQLBINLOG_8_OPTIONS
    assert "--skip-gtids" in replaying  # else a restore in place applies nothing


def test_the_privileges_a_position_needs_are_named() -> None:
    assert POSITION_PRIVILEGES == {"mariadb": (), "mysql": ("RELOAD", "REPLICATION CLIENT")}


def unreachable_scratch_server(tmp_path: Path) -> MysqlOptions:
    """A scratch server that cannot be reached: every drop fails."""
    defaults = tmp_path / "scratch.cnf"
    defaults.write_text("[client]\nuser = drill\npassword = x\n")
    return MysqlOptions(defaults_file=str(defaults), socket=str(tmp_path / "absent.sock"))


def test_a_drop_failing_after_a_failed_drill_leaves_the_drills_own_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = unreachable_scratch_server(tmp_path)
    with (
        pytest.raises(ValueError, match="the drill's own failure"),
        checks.dropped_after(target, ["agama"], shared=True),
    ):
        raise ValueError("the drill's own failure")
    assert "could not drop the drill's databases" in caplog.text


def test_a_drop_failing_after_a_passed_drill_fails_it(tmp_path: Path) -> None:
    target = unreachable_scratch_server(tmp_path)
    with (
        pytest.raises(BackupError, match="cannot connect to MySQL"),
        checks.dropped_after(target, ["agama"], shared=True),
    ):
        pass


def test_a_drill_container_is_not_dropped_from(tmp_path: Path) -> None:
    with checks.dropped_after(unreachable_scratch_server(tmp_path), ["agama"], shared=False):
        pass
