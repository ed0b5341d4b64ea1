"""A throwaway single-node Ceph cluster with a RADOS Gateway (S3), for tests and benchmarks.

One monitor, one OSD on memstore (RAM, nothing on disk but a few small files), one
radosgw; no manager, no cephx. Everything lives under one temporary directory with
its own ``ceph.conf``; the daemons listen on the tests' loopback address on free ports
of a range (``tests.net``: ``BACKUP_AGENT_TEST_HOST`` and ``BACKUP_AGENT_TEST_PORTS``,
else 127.0.0.1 and 23100-23199: the OSD needs a range to bind in). ``start()`` fails
with the tail of the daemons' logs when the cluster does not come up in time; ``stop()``
(also run at interpreter exit, and by the kernel should this process die) leaves no Ceph
process behind.

    with CephRGW() as rgw:
        user = rgw.create_user("agent")
        rgw.restic_url("bucket")   # s3:http://HOST:PORT/bucket

Debian bookworm's ``ceph-mon ceph-osd radosgw ceph-common`` (Ceph 16.2) provide it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests import net

_LOW, _, _HIGH = (net.PORTS or "23100-23199").partition("-")
PORTS = range(int(_LOW), int(_HIGH or _LOW) + 1)  # for Ceph's monitor, OSD and gateways
OSD_PORT_WINDOW = 8  # the OSD binds four msgr2 ports somewhere in such a window
LOG_TAIL_LINES = 15
STOP_GRACE = 1.0  # radosgw often ignores SIGTERM for longer; SIGKILL follows (all is throwaway)

_PR_SET_PDEATHSIG = 1
_live: set[subprocess.Popen[bytes]] = set()


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills it should the test process die."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _stop_all(processes: Iterable[subprocess.Popen[bytes]], grace: float = STOP_GRACE) -> None:
    """SIGTERM every process, wait up to ``grace`` seconds in all, then SIGKILL the rest."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + grace
    for process in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    for process in running:
        if process.poll() is None:
            process.kill()
            process.wait()
    for process in processes:
        _live.discard(process)


atexit.register(lambda: _stop_all(list(_live)))


def free_ports(host: str, ports: Iterable[int], count: int, consecutive: bool = False) -> list[int]:
    """``count`` ports of ``ports`` nobody listens on now (a run of them if ``consecutive``)."""
    found: list[int] = []
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                if consecutive:
                    found = []
                continue
        if consecutive and found and port != found[-1] + 1:
            found = []
        found.append(port)
        if len(found) == count:
            return found
    raise RuntimeError(f"no {count} free ports on {host} in {ports}")


@dataclass(frozen=True)
class S3User:
    """An RGW user and its S3 key pair."""

    uid: str
    access_key: str
    secret_key: str

    @property
    def arn(self) -> str:
        """The principal naming this user in a bucket policy (RGW: no tenant, no account)."""
        return f"arn:aws:iam:::user/{self.uid}"


class CephError(RuntimeError):
    """The cluster did not start, or a Ceph command failed."""


class CephRGW:
    """A single-node Ceph cluster with one or more RADOS Gateways; see the module doc."""

    def __init__(
        self,
        *,
        host: str = net.HOST,
        ports: Sequence[int] = PORTS,
        start_timeout: float = 120.0,
        memstore_bytes: int = 4 << 30,
    ) -> None:
        self.host = host
        self.ports = ports
        self.start_timeout = start_timeout
        self.memstore_bytes = memstore_bytes
        self.base = Path(tempfile.mkdtemp(prefix="backup-agent-ceph-", dir="/var/tmp"))
        self.conf = self.base / "ceph.conf"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.gateways: dict[str, str] = {}  # name -> http endpoint
        self.mon_port = 0
        self.osd_ports = range(0)

    # --- life cycle -------------------------------------------------------------------

    def __enter__(self) -> CephRGW:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Create and start the cluster and the gateway ``a``; stop everything on failure."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        self.mon_port = free_ports(self.host, self.ports, 1)[0]
        window = free_ports(
            self.host, [p for p in self.ports if p != self.mon_port], OSD_PORT_WINDOW, True
        )
        self.osd_ports = range(window[0], window[-1] + 1)
        self.conf.write_text(self._config(window[0], window[-1]))
        fsid = str(uuid.uuid4())
        self.conf.write_text(self.conf.read_text().replace("@FSID@", fsid))
        monmap = str(self.base / "monmap")
        addr = f"[v2:{self.host}:{self.mon_port}]"
        self._run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a", addr, monmap])
        self._run(["ceph-mon", *self._conf_args(), "-i", "a", "--mkfs", "--monmap", monmap])
        self._daemon("mon.a", ["ceph-mon", "-i", "a"])
        osd_uuid = str(uuid.uuid4())
        osd_id = self.ceph("osd", "new", osd_uuid).strip()
        (self.base / f"osd.{osd_id}").mkdir()
        self._run(["ceph-osd", *self._conf_args(), "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid])
        self._daemon(f"osd.{osd_id}", ["ceph-osd", "-i", osd_id])
        self._wait("the OSD to be up", deadline, self._osd_up)
        self.start_gateway("a", deadline=deadline)

    def start_gateway(
        self,
        name: str,
        env: Mapping[str, str] | None = None,
        deadline: float | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> str:
        """Start another radosgw ``client.rgw.NAME`` on a free port (``env`` adds to its
        environment, e.g. libfaketime's; ``tls`` is (certificate, key) for HTTPS);
        returns its endpoint once it answers HTTP."""
        if deadline is None:
            deadline = time.monotonic() + self.start_timeout
        used = self.used_ports()
        port = free_ports(self.host, [p for p in self.ports if p not in used], 1)[0]
        frontend = f"beast endpoint={self.host}:{port}"
        endpoint = f"http://{self.host}:{port}"
        if tls:
            frontend = (
                f"beast ssl_endpoint={self.host}:{port} "
                f"ssl_certificate={tls[0]} ssl_private_key={tls[1]}"
            )
            endpoint = f"https://{self.host}:{port}"
        (self.base / f"rgw.{name}").mkdir()
        self._daemon(
            f"client.rgw.{name}",
            [
                "radosgw",
                "-n",
                f"client.rgw.{name}",
                f"--rgw-frontends={frontend}",
                f"--rgw-data={self.base / f'rgw.{name}'}",
            ],
            env,
        )
        cafile = str(tls[0]) if tls else None
        self._wait(f"radosgw {name} on {endpoint}", deadline, lambda: _answers(endpoint, cafile))
        self.gateways[name] = endpoint
        return endpoint

    def used_ports(self) -> set[int]:
        """The ports of this cluster's daemons."""
        gateways = {int(e.rsplit(":", 1)[1]) for e in self.gateways.values()}
        return {self.mon_port, *self.osd_ports, *gateways}

    def stop(self) -> None:
        """Stop every daemon (gateways first, the monitor last) and remove the directory."""
        order = sorted(self.processes, key=lambda n: ("client." in n, "osd." in n), reverse=True)
        _stop_all([self.processes[name] for name in order])
        self.processes.clear()
        self.gateways.clear()
        shutil.rmtree(self.base, ignore_errors=True)

    # --- what tests use ---------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The first gateway's URL, ``http://HOST:PORT``."""
        return self.gateways["a"]

    def restic_url(self, bucket: str, prefix: str = "", gateway: str = "a") -> str:
        """restic's repository location for ``bucket`` (and a path inside it)."""
        path = f"{bucket}/{prefix}".rstrip("/")
        return f"s3:{self.gateways[gateway]}/{path}"

    def create_user(self, uid: str, may_create_buckets: bool = True) -> S3User:
        """A new RGW user with a generated S3 key pair (no secret on a command line).

        Any RGW user may create buckets unless told otherwise (``--max-buckets=-1``);
        agents must not, or ``restic init`` with a mistyped bucket makes one they own.
        """
        limit = [] if may_create_buckets else ["--max-buckets=-1"]
        info = json.loads(self.admin("user", "create", "--uid", uid, "--display-name", uid, *limit))
        key = next(k for k in info["keys"] if k["user"] == uid)
        return S3User(uid, key["access_key"], key["secret_key"])

    def ceph(self, *args: str) -> str:
        """Run the ``ceph`` CLI against this cluster; its stdout."""
        return self._run(["ceph", *self._conf_args(), "--connect-timeout", "30", *args])

    def admin(self, *args: str) -> str:
        """Run ``radosgw-admin`` against this cluster; its stdout."""
        return self._run(["radosgw-admin", *self._conf_args(), "-n", "client.rgw.a", *args])

    def memory(self) -> dict[str, int]:
        """Resident memory (bytes) of each running daemon, from /proc."""
        sizes = {}
        for name, process in self.processes.items():
            with contextlib.suppress(OSError, ValueError):
                status = Path(f"/proc/{process.pid}/status").read_text()
                line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
                sizes[name] = int(line.split()[1]) * 1024
        return sizes

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of every daemon's log and console output, for error messages."""
        parts = []
        for path in sorted([*self.base.glob("*.log"), *self.base.glob("*.out")]):
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                if tail:
                    parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts) or "(no logs)"

    # --- internals --------------------------------------------------------------------

    def _config(self, osd_port_min: int, osd_port_max: int) -> str:
        d = self.base
        return f"""[global]
fsid = @FSID@
mon host = v2:{self.host}:{self.mon_port}
public addr = {self.host}
cluster addr = {self.host}
ms bind msgr1 = false
ms bind port min = {osd_port_min}
ms bind port max = {osd_port_max}
auth cluster required = none
auth service required = none
auth client required = none
keyring = /dev/null
run dir = {d}
admin socket = {d}/$name.asok
pid file = {d}/$name.pid
log file = {d}/$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon data avail warn = 1
mon data avail crit = 1
paxos propose interval = 0.05
paxos min wait = 0.01

[mon]
mon data = {d}/mon.$id

[osd]
osd data = {d}/osd.$id
osd objectstore = memstore
memstore device bytes = {self.memstore_bytes}

[client]
# radosgw otherwise insists on "secure" mode, which auth none cannot give, and retries forever
ms mon client mode = crc
"""

    def _conf_args(self) -> list[str]:
        return ["-c", str(self.conf)]

    def _run(self, argv: list[str]) -> str:
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CephError(f"{argv[0]} {argv[-1]}: no answer in 60 s\n{self.log_tail()}") from exc
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace").strip()[-2000:]
            raise CephError(
                f"{' '.join(argv[:4])} ... exited {done.returncode}: {stderr}\n{self.log_tail()}"
            )
        return done.stdout.decode()

    def _daemon(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        out = (self.base / f"{name}.out").open("wb")
        with out:
            process = subprocess.Popen(
                [argv[0], *self._conf_args(), "-f", *argv[1:]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env} if env else None,
                preexec_fn=_die_with_parent,
            )
        _live.add(process)
        self.processes[name] = process

    def _wait(self, what: str, deadline: float, check: Callable[[], bool]) -> None:
        while True:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise CephError(
                        f"{name} exited with {process.returncode} while waiting for {what}\n"
                        f"{self.log_tail()}"
                    )
            if check():
                return
            if time.monotonic() > deadline:
                raise CephError(
                    f"Ceph did not start within {self.start_timeout:.0f} s: no {what}\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.2)

    def _osd_up(self) -> bool:
        with contextlib.suppress(CephError, ValueError):
            return int(json.loads(self.ceph("osd", "stat", "-f", "json"))["num_up_osds"]) >= 1
        return False


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (an IP address) and its key, in ``directory``."""
    cert, key = directory / "tls-cert.pem", directory / "tls-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=rgw",
         "-addext", f"subjectAltName=IP:{host}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def _answers(endpoint: str, cafile: str | None = None) -> bool:
    """Whether an HTTP server answers at ``endpoint`` (any status counts); HTTPS with
    a certificate ``cafile`` signed."""
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(endpoint, timeout=2, context=context):  # noqa: S310
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
