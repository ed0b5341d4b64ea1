"""Talking to a MySQL-family server: option files, connections and client programs.

Credentials are read from MySQL option files (``[client]`` user and password) and
reach the client tools only as ``--defaults-file``, never on a command line.
"""

from __future__ import annotations

import configparser
import re
import shutil
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import cache

import pymysql

from backup_agent import execute, inifile
from backup_agent.errors import BackupError
from backup_agent.manifest import MysqlOptions

# A server that stops answering mid-query (its host gone without a reset) fails the
# query after this long instead of holding the job until its deadline.
READ_TIMEOUT = 600


@dataclass(frozen=True)
class Family:
    """The client tools of one server family."""

    dump: str  # the logical dump program
    dump_flags: tuple[str, ...]  # flags only this family's dump program takes
    load: str  # the client that loads a dump
    binlog: str  # reads binary logs: from the server (shipping), from files (replay)
    # Makes the dump name, in a comment, the binlog position it is consistent with.
    position_flags: tuple[str, ...]


FAMILIES = {
    "mariadb": Family("mariadb-dump", (), "mariadb", "mariadb-binlog", ("--master-data=2",)),
    # Oracle mysqldump 8.x: GTID statements would make the dump unrestorable elsewhere.
    # --source-data replaced --master-data in 8.0.26 (removed in 8.4).
    "mysql": Family(
        "mysqldump", ("--set-gtid-purged=OFF",), "mysql", "mysqlbinlog", ("--source-data=2",)
    ),
}


def family_of(version: str) -> str:
    """``mariadb`` or ``mysql``, from the server's version string."""
    return "mariadb" if "mariadb" in version.lower() else "mysql"


def read_defaults_file(path: str) -> tuple[str, str]:
    """User and password from the ``[client]`` section of a MySQL option file."""
    parser = inifile.read(
        path,
        "a MySQL option file",
        configparser.ConfigParser(allow_no_value=True, interpolation=None, strict=False),
    )
    section = parser["client"] if parser.has_section("client") else {}
    user = (section.get("user") or "").strip("'\"")
    password = (section.get("password") or "").strip("'\"")
    if not user:
        raise BackupError(f"{path}: no user in its [client] section")
    execute.register_secret(password)
    return user, password


@contextmanager
def connect(
    options: MysqlOptions,
) -> Iterator[pymysql.connections.Connection[pymysql.cursors.Cursor]]:
    """A pymysql connection with the defaults file's credentials."""
    user, password = read_defaults_file(options.defaults_file)
    try:
        conn = pymysql.connect(
            user=user,
            password=password,
            host=options.host,
            port=options.port,
            unix_socket=options.socket,
            connect_timeout=10,
            read_timeout=READ_TIMEOUT,
            write_timeout=READ_TIMEOUT,
            charset="utf8mb4",
        )
    except pymysql.err.MySQLError as exc:
        reason = exc.args[1] if len(exc.args) > 1 else str(exc)
        raise BackupError(
            f"cannot connect to MySQL at {where(options)} as {user!r}: {reason}"
        ) from exc
    with closing(conn):
        yield conn


def connection_args(options: MysqlOptions) -> list[str]:
    """Client options: credentials from the option file (first, as the tools require)."""
    args = [f"--defaults-file={options.defaults_file}"]
    if options.socket:
        return [*args, f"--socket={options.socket}"]
    return [*args, f"--host={options.host}", f"--port={options.port}", "--protocol=TCP"]


def load_command(family: str, options: MysqlOptions) -> list[str]:
    """argv of the client that loads a dump into ``options``' server.

    A dump read back from a repository is hostile input: a line ``\\! CMD`` or
    ``system CMD`` would run CMD here if the client parsed its input the interactive
    way. ``--binary-mode`` turns off every client command but ``\\C`` and ``DELIMITER``
    when the input is piped, and ``--sandbox`` (MariaDB 10.5.25, 10.6.18, 10.11.8 and
    later) refuses the ones that touch files or run programs even then. The stream is
    also scanned for client commands before it reaches the client (``scan``).
    """
    program = require_program(FAMILIES[family].load, family)
    return [program, *connection_args(options), *safety_flags(program)]


@cache
def safety_flags(program: str) -> tuple[str, ...]:
    """The flags that stop ``program`` from running client commands, by what its own
    ``--help`` offers; a client without ``--binary-mode`` is refused."""
    offered = set(re.findall(r"^\s+(--[a-z-]+)", client_help(program), re.MULTILINE))
    if "--binary-mode" not in offered:
        raise BackupError(
            f"{program} has no --binary-mode: it would run client commands found in a "
            "dump; install a current MariaDB or MySQL client"
        )
    return ("--binary-mode", *(flag for flag in ("--sandbox",) if flag in offered))


def client_help(program: str) -> str:
    """``program --help``: the options this build of the client knows."""
    return execute.run([program, "--no-defaults", "--help"]).stdout.decode(errors="replace")


def require_program(program: str, family: str) -> str:
    """``program`` if it is on PATH; a clear error naming the family otherwise."""
    if shutil.which(program) is None:
        raise BackupError(f"program {program!r} not found (install the {family} client tools)")
    return program


def where(options: MysqlOptions) -> str:
    """The server's address, for messages."""
    return options.socket or f"{options.host}:{options.port}"


def quote(name: str) -> str:
    """A schema or table name as a quoted identifier."""
    return "`" + name.replace("`", "``") + "`"
