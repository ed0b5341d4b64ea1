"""restic's rest-server as a child process for the tests: on the test loopback address
(``tests.net``), with htpasswd users, ``--append-only`` by default, an access log, and
stoppable and restartable on the same port (a backup server that goes away and back)."""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.conftest import need, wait_for
from tests.net import HOST, accepts, free_port


class RestServer:
    """rest-server serving its own data directory with ``users`` (name: password).

    The directory is not below pytest's ``tmp_path`` (mode 0700), so that the server can
    also run as an ordinary user (``serve_as``): root ignores file modes, and a read-only
    repository only refuses writes to someone else. ``remove()`` deletes it.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        append_only: bool = True,
        address: str = HOST,
        extra: Sequence[str] = (),
        start: bool = True,
    ) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="backup-agent-rest-"))
        self.home.chmod(0o755)
        self.data = self.home / "data"
        self.htpasswd = self.home / "htpasswd"
        self.htpasswd.write_text("".join(_htpasswd_line(u, p) for u, p in users.items()))
        self.address, self.port = address, free_port(address)
        self.extra = [*(["--append-only"] if append_only else []), *extra]
        self.log = self.home / "rest-server.log"
        self.access_log = self.home / "access.log"  # every request, combined log format
        self.user: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        if start:
            self.start()

    @property
    def netloc(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self, *extra: str) -> None:
        """Start serving (again, on the same port), with ``extra`` arguments this time."""
        argv = [need("restic-rest-server"), "--path", str(self.data)]
        argv += ["--listen", self.netloc, "--htpasswd-file", str(self.htpasswd)]
        argv += ["--log", str(self.access_log), *self.extra, *extra]
        if self.user:
            account = pwd.getpwnam(self.user)
            argv = [need("setpriv"), f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                    "--clear-groups", *argv]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
        wait_for("rest-server to listen", self.listening, 15, every=0.05)

    def listening(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"rest-server exited: {self.log.read_text()[-500:]}")
        return accepts(self.address, self.port)

    def serve_as(self, user: str) -> None:
        """Run as ``user`` from the next ``start`` on, owning the data (when root)."""
        if os.geteuid() == 0:
            account = pwd.getpwnam(user)
            for path in [self.home, *self.home.rglob("*")]:
                os.chown(path, account.pw_uid, account.pw_gid)
            self.user = user

    def stop(self) -> None:
        """SIGTERM: the server goes away as when its host shuts down."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def remove(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
        shutil.rmtree(self.home, ignore_errors=True)

    def url(self, path: str, scheme: str = "http") -> str:
        return f"rest:{scheme}://{self.netloc}/{path}"

    def files(self, repo: str, kind: str) -> list[Path]:
        """The repository's files of one kind (``locks``, ``snapshots``, ``data``...)."""
        folder = self.data / repo / kind
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []

    def locks(self, repo: str) -> list[Path]:
        return self.files(repo, "locks")

    def used_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.data.rglob("*") if path.is_file())

    def requests(self, method: str, status: int) -> list[str]:
        """Access log lines of ``method`` requests answered with ``status``."""
        if not self.access_log.exists():
            return []
        lines = self.access_log.read_text(errors="replace").splitlines()
        return [line for line in lines if f'"{method} ' in line and f'" {status} ' in line]


def _htpasswd_line(user: str, password: str) -> str:
    digest = hashlib.sha1(password.encode()).digest()  # noqa: S324 - test users only
    return f"{user}:{{SHA}}{base64.b64encode(digest).decode()}\n"
