"""Capture how restic fails against a real S3 store, as samples for the unit tests.

Starts a throwaway Ceph RGW (``tests.ceph_rgw``), breaks access to a prepared bucket
in one way per case, runs real restic and writes its exit code and stderr verbatim to
``tests/unit/data/restic_failures/s3-*.json``, with the cause the agent must name.
Failures restic retries for 15 minutes are stopped with SIGTERM after a few seconds,
as the agent's guard would. ``tests/integration/test_s3.py`` causes the same
failures through the agent and checks the same names, so the samples cannot drift
from what restic does.

    .venv/bin/python -m tests.capture_s3_failures
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from backup_agent import repository_errors as causes
from backup_agent.repository_guard import verb_of
from tests.ceph_rgw import CephRGW, free_ports, self_signed
from tests.s3_fixtures import S3Repository, no_deletes_policy, prepare_bucket, write_credentials

OUT = Path(__file__).parent / "unit" / "data" / "restic_failures"
SIGTERM_AFTER = 4.0  # seconds, for the failures restic retries


@dataclass
class Case:
    """One failure: how to cause it and the cause the agent must name."""

    name: str
    what: str
    reason: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""  # default: the repository's
    wait: float = 60.0  # SIGTERM after this many seconds (the retried failures)


def run_case(case: Case, base_env: dict[str, str], url: str) -> dict[str, object]:
    env = {**os.environ, **base_env, "RESTIC_REPOSITORY": url, **case.env}
    started = time.monotonic()
    process = subprocess.Popen(
        ["restic", "--json", *case.args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stopped_after: float | None = None
    try:
        _, stderr = process.communicate(timeout=case.wait)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        stopped_after = case.wait
        _, stderr = process.communicate(timeout=60)
    return {
        "what": case.what,
        "verb": verb_of(["restic", *case.args]),
        "url": url,
        "exit": process.returncode,
        "seconds": round(time.monotonic() - started, 2),
        "stopped_after": stopped_after,
        "reason": case.reason,
        "stderr": [line for line in stderr.splitlines() if line.strip()],
    }


@contextmanager
def plain_http_server(port: int) -> Iterator[str]:
    """Python's http.server: answers 404 to every S3 request (not an S3 store)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


@contextmanager
def rest_server(port: int, base: Path, auth: bool) -> Iterator[str]:
    """restic's rest-server, an HTTP server that is not S3: without authentication it
    answers 405 to S3's requests, with it 401."""
    address = f"127.0.0.1:{port}"
    (base / "htpasswd").write_text("agent:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n")
    login = ["--htpasswd-file", str(base / "htpasswd")] if auth else ["--no-auth"]
    server = subprocess.Popen(
        ["restic-rest-server", *login, "--path", str(base / "rest"), "--listen", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def cases(rgw: CephRGW, s3: S3Repository, work: Path) -> Iterator[tuple[Case, dict[str, str]]]:
    """Each case with the environment (role) it runs as; set-up happens in between."""
    agent, reader = s3.agent.env(), s3.reader.env()
    user = s3.users.agent
    bucket = s3.bucket
    source = work / "source"
    source.mkdir()
    (source / "data.bin").write_bytes(os.urandom(300_000))
    handed: set[int] = set()

    def free() -> int:
        """A port of the range nothing listens on, and not handed out before."""
        taken = rgw.used_ports() | handed
        [port] = free_ports(rgw.host, [p for p in rgw.ports if p not in taken], 1)
        handed.add(port)
        return port

    retried = SIGTERM_AFTER

    yield Case("s3-bucket-missing", "the bucket does not exist; SIGTERM after 4 s",
               causes.MISSING, ["cat", "config"], url=rgw.restic_url("no-such-bucket"),
               wait=retried), agent  # fmt: skip
    yield Case("s3-repository-missing", "the bucket exists, no repository at the path",
               causes.MISSING, ["cat", "config"], url=rgw.restic_url(bucket, "elsewhere"),
               ), agent  # fmt: skip
    stranger = rgw.create_user(f"stranger-{bucket}", may_create_buckets=False)
    yield Case("s3-access-denied", "a user the bucket policy does not name", causes.REFUSED,
               ["cat", "config"], env={"AWS_SHARED_CREDENTIALS_FILE": write_credentials(
                   work / "stranger", stranger.access_key, stranger.secret_key)},
               ), agent  # fmt: skip
    yield Case("s3-wrong-secret", "the secret key is wrong; SIGTERM after 4 s", causes.REFUSED,
               ["cat", "config"], env={"AWS_SHARED_CREDENTIALS_FILE": write_credentials(
                   work / "wrong-secret", user.access_key, "not-the-secret")}, wait=retried,
               ), agent  # fmt: skip
    yield Case("s3-unknown-access-key", "an access key the store does not know; SIGTERM "
               "after 4 s", causes.REFUSED, ["cat", "config"],
               env={"AWS_SHARED_CREDENTIALS_FILE": write_credentials(
                   work / "unknown-key", "NOSUCHKEY000", user.secret_key)}, wait=retried,
               ), agent  # fmt: skip
    yield Case("s3-no-credentials", "the credentials file does not exist", causes.REFUSED,
               ["cat", "config"], env={"AWS_SHARED_CREDENTIALS_FILE": str(work / "absent")},
               ), agent  # fmt: skip
    skewed = rgw.start_gateway("skew", env=faketime("-1h"))
    yield Case("s3-clock-skew", "the store's clock is an hour behind; SIGTERM after 4 s",
               causes.CLOCK_SKEW, ["cat", "config"], url=f"s3:{skewed}/{bucket}",
               wait=retried), agent  # fmt: skip
    port = free()
    yield Case("s3-connection-refused", "nothing listens at the endpoint; SIGTERM after 4 s",
               causes.UNREACHABLE, ["cat", "config"],
               url=f"s3:http://{rgw.host}:{port}/{bucket}", wait=retried), agent  # fmt: skip
    yield Case("s3-not-http", "the endpoint is Ceph's monitor port; SIGTERM after 4 s",
               causes.WRONG_ENDPOINT, ["cat", "config"],
               url=f"s3:http://{rgw.host}:{rgw.mon_port}/{bucket}",
               wait=retried), agent  # fmt: skip
    with rest_server(free(), work, auth=False) as endpoint:
        yield Case("s3-not-s3-rest-server", "the endpoint is a rest-server; SIGTERM after 4 s",
                   causes.WRONG_ENDPOINT, ["cat", "config"], url=f"s3:{endpoint}/{bucket}",
                   wait=retried), agent  # fmt: skip
    with rest_server(free(), work, auth=True) as endpoint:
        yield Case("s3-not-s3-http-auth", "the endpoint is a rest-server asking for HTTP "
                   "authentication; SIGTERM after 4 s", causes.WRONG_ENDPOINT, ["cat", "config"],
                   url=f"s3:{endpoint}/{bucket}", wait=retried), agent  # fmt: skip
    yield Case("s3-bucket-name-invalid", "a bucket name S3 does not allow; SIGTERM after 4 s",
               causes.MISSING, ["cat", "config"], url=rgw.restic_url("ab"),
               wait=retried), agent  # fmt: skip
    with plain_http_server(free()) as endpoint:
        yield Case("s3-not-s3-404", "the endpoint is a plain web server answering 404 (not "
                   "told from a missing bucket); SIGTERM after 4 s", causes.MISSING,
                   ["cat", "config"], url=f"s3:{endpoint}/{bucket}",
                   wait=retried), agent  # fmt: skip
    yield Case("s3-path-style-off", "bucket in the host name (dns lookup) with an IP "
               "endpoint; SIGTERM after 4 s", causes.UNREACHABLE,
               ["--option=s3.bucket-lookup=dns", "cat", "config"], wait=retried), agent  # fmt: skip
    yield Case("s3-https-to-http", "https:// URL, plain HTTP gateway; SIGTERM after 4 s",
               causes.REFUSED, ["cat", "config"],
               url=s3.url.replace("s3:http:", "s3:https:"), wait=retried), agent  # fmt: skip
    cert, key = self_signed(work, rgw.host)
    tls = rgw.start_gateway("tls", tls=(cert, key))
    yield Case("s3-tls-unknown-ca", "TLS gateway, CA not given; SIGTERM after 4 s",
               causes.REFUSED, ["cat", "config"], url=f"s3:{tls}/{bucket}",
               wait=retried), agent  # fmt: skip
    yield Case("s3-http-to-tls", "http:// URL, TLS gateway; SIGTERM after 4 s", causes.REFUSED,
               ["cat", "config"], url=f"s3:{tls.replace('https:', 'http:')}/{bucket}",
               wait=retried), agent  # fmt: skip
    yield Case("s3-reader-backup", "the verifier's read-only key pair backs up",
               causes.REFUSED, ["backup", "--host", "agama", str(source)]), reader  # fmt: skip
    yield Case("s3-agent-forget", "an agent forgets a snapshot: refused, restic exits 0",
               causes.REFUSED, ["forget", "--keep-last", "1"]), agent  # fmt: skip
    yield Case("s3-agent-prune", "an agent runs forget --prune: refused",
               causes.REFUSED, ["forget", "--keep-last", "1", "--prune"]), agent  # fmt: skip
    quota_bucket(rgw, bucket)
    yield Case("s3-quota-exceeded", "the bucket's quota is full; SIGTERM after 6 s",
               causes.NOT_WRITABLE, ["backup", "--host", "agama", str(big_file(work))],
               wait=6.0), agent  # fmt: skip
    deny_lock_deletes(s3)
    yield Case("s3-lock-delete-denied", "a bucket policy denying every delete: the "
               "pre-flight's lock stays behind, restic exits 0", causes.REFUSED,
               ["cat", "config"]), agent  # fmt: skip


def faketime(offset: str) -> dict[str, str]:
    """The environment that runs a program with its clock moved by ``offset``."""
    [library] = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
    return {"LD_PRELOAD": library, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def quota_bucket(rgw: CephRGW, bucket: str) -> None:
    rgw.admin("quota", "set", "--quota-scope=bucket", "--bucket", bucket, "--max-size=4000000")
    rgw.admin("quota", "enable", "--quota-scope=bucket", "--bucket", bucket)


def big_file(work: Path) -> Path:
    path = work / "big"
    path.mkdir()
    (path / "data.bin").write_bytes(os.urandom(12_000_000))
    return path


def deny_lock_deletes(s3: S3Repository) -> None:
    reply = s3.owner.put_policy(s3.bucket, no_deletes_policy(s3.bucket, s3.users))
    assert reply.status == 204, reply


def main(select: Callable[[str], bool] = lambda name: True) -> None:
    work = Path(tempfile.mkdtemp(prefix="s3port-capture-", dir="/var/tmp"))
    with CephRGW() as rgw:
        s3 = prepare_bucket(rgw, work)
        (work / "source-1").mkdir()
        (work / "source-1" / "a").write_text("one")
        subprocess.run(
            ["restic", "backup", "--host", "agama", "-q", str(work / "source-1")],
            env={**os.environ, **s3.agent.env()},
            check=True,
        )
        (work / "source-1" / "a").write_text("two")
        subprocess.run(
            ["restic", "backup", "--host", "agama", "-q", str(work / "source-1")],
            env={**os.environ, **s3.agent.env()},
            check=True,
        )
        for case, env in cases(rgw, s3, work):
            if not select(case.name):
                continue
            sample = run_case(case, env, case.url or s3.url)
            (OUT / f"{case.name}.json").write_text(json.dumps(sample, indent=1) + "\n")
            print(f"{case.name}: exit {sample['exit']} in {sample['seconds']} s")
    subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    names = set(sys.argv[1:])
    main(lambda name: not names or name in names)
