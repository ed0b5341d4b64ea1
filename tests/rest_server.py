"""restic's rest-server as a child process for the tests, on a free loopback port."""

from __future__ import annotations

import base64
import hashlib
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.conftest import need, wait_for
from tests.mariadb_server import free_port


def accepts(address: str, port: int) -> bool:
    """Whether something accepts TCP connections on ``address:port``."""
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


class RestServer:
    """rest-server serving ``data`` with the given users (``--append-only`` by default)."""

    def __init__(
        self,
        base: Path,
        users: Mapping[str, str],
        *,
        append_only: bool = True,
        address: str = "127.0.0.1",
        extra: Sequence[str] = (),
    ) -> None:
        self.data = base / "rest-data"
        self.address, self.port = address, free_port()
        htpasswd = base / "htpasswd"
        lines = []
        for user, password in users.items():
            digest = hashlib.sha1(password.encode()).digest()  # noqa: S324 - test users only
            lines.append(f"{user}:{{SHA}}{base64.b64encode(digest).decode()}\n")
        htpasswd.write_text("".join(lines))
        argv = [
            need("restic-rest-server"),
            "--path",
            str(self.data),
            "--listen",
            f"{address}:{self.port}",
            "--htpasswd-file",
            str(htpasswd),
            *(["--append-only"] if append_only else []),
            *extra,
        ]
        self.log = base / "rest-server.log"
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))
        wait_for("rest-server to listen", self.listening, 15, every=0.05)

    def listening(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"rest-server exited: {self.log.read_text()[-500:]}")
        return accepts(self.address, self.port)

    def url(self, path: str) -> str:
        return f"rest:http://{self.address}:{self.port}/{path}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
