"""A throwaway MariaDB server for tests: its own data dir, socket and TCP port."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pymysql

from tests.net import HOST, free_port


class MariaDB:
    """Start with ``start()``, stop with ``stop()``; root connects over the socket."""

    TEST_ARGS = ("--innodb-buffer-pool-size=64M", "--skip-log-bin")

    def __init__(self, args: tuple[str, ...] = TEST_ARGS) -> None:
        self.args = args
        # Not under pytest's tmp_path: that is private to root, and the server runs as mysql.
        self.base = Path(tempfile.mkdtemp(prefix="backup-agent-mariadb-"))
        self.datadir = self.base / "data"
        self.socket = str(self.base / "mysqld.sock")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def _user_args(self) -> list[str]:
        # As root the server must run as the mysql user; otherwise as ourselves.
        return ["--user=mysql"] if os.geteuid() == 0 else []

    def start(self, initialize: bool = True) -> None:
        """Start the server; without ``initialize`` on the data directory already there."""
        if os.geteuid() == 0:
            shutil.chown(self.base, "mysql", "mysql")
        if initialize:
            install = shutil.which("mariadb-install-db") or "mariadb-install-db"
            subprocess.run(
                [
                    install,
                    *self._user_args(),
                    f"--datadir={self.datadir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                check=True,
                capture_output=True,
            )
        server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
        assert server, "mariadbd not found"
        log = (self.base / "server.log").open("wb")
        self.process = subprocess.Popen(
            [
                server,
                "--no-defaults",
                *self._user_args(),
                f"--datadir={self.datadir}",
                f"--socket={self.socket}",
                f"--pid-file={self.base / 'mysqld.pid'}",
                f"--port={self.port}",
                f"--bind-address={HOST}",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"mariadbd exited: {(self.base / 'server.log').read_text()[-2000:]}"
                )
            try:
                self.connect().close()
                return
            except pymysql.err.OperationalError:
                time.sleep(0.2)
        raise RuntimeError("mariadbd did not start within 60 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(60)
            self.process = None
        shutil.rmtree(self.base, ignore_errors=True)

    def connect(
        self, database: str | None = None
    ) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        return pymysql.connect(
            unix_socket=self.socket,
            user="root",
            database=database,
            charset="utf8mb4",
            autocommit=True,
        )

    def execute(self, *statements: str, database: str | None = None) -> list[tuple[object, ...]]:
        """Run statements as root; return the rows of the last one."""
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                rows: list[tuple[object, ...]] = []
                for statement in statements:
                    cur.execute(statement)
                    rows = list(cur.fetchall())
                return rows
        finally:
            conn.close()

    def defaults_file(self, path: Path, user: str, password: str) -> str:
        """Write a MySQL option file for ``user``; returns its path."""
        path.write_text(f"[client]\nuser={user}\npassword={password}\n")
        path.chmod(0o600)
        return str(path)
