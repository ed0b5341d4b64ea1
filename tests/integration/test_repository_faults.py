"""Every named repository failure, caused for real against rest-server, and bounded.

Each test breaks the backup server in one way, runs restic through ``repository_guard``
with short limits (so no test waits for restic's own 15-minute give-up), and checks the
``reason`` label and the one-line message. ``tests/faults`` proves the same through the
agent with its real limits and deadlines.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from backup_agent import repository_errors as causes
from backup_agent import repository_guard as guard
from backup_agent import restic
from tests.conftest import need, wait_for
from tests.net import HOST, free_port
from tests.rest_server import RestServer

REST_PASSWORD = "rest-s3cret"
REPO_PASSWORD = "repo-password-xyz"
# Short enough for tests, long enough for a loaded CI machine to answer a healthy request.
FAST = guard.Limits(stuck_request="3s", retry_budget=4, deadline=60, grace=5)


def repository(
    tmp_path: Path, url: str, *, rest_password: str = REST_PASSWORD, password: str = REPO_PASSWORD
) -> restic.Repository:
    credentials = tmp_path / f"rest-credentials-{rest_password}"
    credentials.write_text(f"agent:{rest_password}\n")
    password_file = tmp_path / f"restic-password-{password}"
    password_file.write_text(password + "\n")
    return restic.Repository(
        url, str(password_file), "agama", str(credentials), str(tmp_path / "cache")
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RestServer]:
    """A running rest-server holding an initialised repository ``agama``."""
    need("restic")
    rest = RestServer({"agent": REST_PASSWORD}, append_only=False)
    try:
        restic.init(repository(tmp_path, rest.url("agama")))
        yield rest
    finally:
        rest.remove()


def url(rest: RestServer, name: str = "agama", scheme: str = "http") -> str:
    return rest.url(name, scheme)


def run(repo: restic.Repository, argv: list[str], limits: guard.Limits = FAST) -> None:
    """``argv`` as ``restic._run`` runs it, with ``limits``."""
    guard.run(argv, repo.env(), repo.url, limits, restic.error)


def failure(
    repo: restic.Repository, argv: list[str], limits: guard.Limits = FAST
) -> restic.ResticError:
    with pytest.raises(restic.ResticError) as caught:
        run(repo, argv, limits)
    error = caught.value
    text = str(error)
    assert "\n" not in text and "\\n" not in text and "Is there a repository" not in text
    assert REST_PASSWORD not in text and REPO_PASSWORD not in text
    return error


CAT_CONFIG = restic.command("cat", "config")


def test_preflight_passes_on_an_append_only_server_and_leaves_no_lock(
    server: RestServer, tmp_path: Path
) -> None:
    server.stop()
    server.start("--append-only")
    restic.preflight(repository(tmp_path, url(server)))
    assert server.locks("agama") == []


def test_nothing_listening_is_server_unreachable(tmp_path: Path) -> None:
    need("restic")
    repo = repository(tmp_path, f"rest:http://{HOST}:{free_port()}/agama")
    error = failure(repo, CAT_CONFIG)
    assert error.reason == causes.UNREACHABLE
    assert "unreachable: connection refused (restic cat gave up after" in str(error)


def test_a_server_that_never_answers_is_server_unreachable(tmp_path: Path) -> None:
    need("restic")
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(8)
    held: list[socket.socket] = []

    def hold() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=hold, daemon=True).start()
    try:
        repo = repository(tmp_path, f"rest:http://{HOST}:{listener.getsockname()[1]}/agama")
        error = failure(repo, CAT_CONFIG)
        assert error.reason == causes.UNREACHABLE
        assert "no answer" in str(error)
        # Without a stuck-request timeout shorter than the deadline, only the deadline acts.
        slow = guard.Limits(stuck_request="5m", retry_budget=60, deadline=3, grace=5)
        assert failure(repo, CAT_CONFIG, slow).reason == causes.TIMEOUT
    finally:
        listener.close()
        for connection in held:
            connection.close()


def test_wrong_rest_password_is_access_refused(server: RestServer, tmp_path: Path) -> None:
    error = failure(repository(tmp_path, url(server), rest_password="not-it"), CAT_CONFIG)
    assert error.reason == causes.REFUSED
    assert str(error) == (
        f"backup server {server.netloc} refused access: rest-server credentials refused (HTTP 401)"
    )


def test_unknown_certificate_authority_is_access_refused(tmp_path: Path) -> None:
    openssl = need("openssl")
    need("restic")
    key, cert = tmp_path / "server.key", tmp_path / "server.crt"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=backup",
         "-addext", f"subjectAltName=IP:{HOST}"],
        check=True, capture_output=True,
    )  # fmt: skip
    rest = RestServer({"agent": REST_PASSWORD}, extra=("--tls", "--tls-cert", str(cert),
                                                       "--tls-key", str(key)))  # fmt: skip
    try:
        error = failure(repository(tmp_path, url(rest, scheme="https")), CAT_CONFIG)
    finally:
        rest.remove()
    assert error.reason == causes.REFUSED
    assert "TLS certificate signed by an unknown CA" in str(error)


def test_missing_repository_keeps_restics_exception(server: RestServer, tmp_path: Path) -> None:
    error = failure(repository(tmp_path, url(server, "nothere")), CAT_CONFIG)
    assert isinstance(error, restic.RepositoryNotFound)
    assert error.reason == causes.MISSING
    assert str(error).startswith(f"no restic repository at rest:http://{server.netloc}/nothere")


def test_wrong_repository_password(server: RestServer, tmp_path: Path) -> None:
    error = failure(repository(tmp_path, url(server), password="not-it"), CAT_CONFIG)
    assert isinstance(error, restic.WrongPassword)
    assert error.reason == causes.WRONG_PASSWORD


def test_read_only_repository_fails_preflight_before_any_dump(
    server: RestServer, tmp_path: Path
) -> None:
    server.stop()
    server.serve_as("nobody")
    for path in [server.data / "agama", *(server.data / "agama").rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    server.start()
    with pytest.raises(restic.ResticError) as caught:
        run(repository(tmp_path, url(server)), CAT_CONFIG)
    assert caught.value.reason == causes.NOT_WRITABLE
    assert "HTTP 500" in str(caught.value)


def test_full_server_stops_a_streaming_backup_at_its_first_refusal(
    server: RestServer, tmp_path: Path
) -> None:
    server.stop()
    server.start("--max-size", str(server.used_bytes() + 2_000_000))
    repo = repository(tmp_path, url(server))
    error = stream_until_stopped(repo, FAST)
    assert error.reason == causes.NOT_WRITABLE
    assert "HTTP 507" in str(error)
    assert snapshots(server, tmp_path) == 0


def test_server_stopped_mid_upload_is_unreachable_and_bounded(
    server: RestServer, tmp_path: Path
) -> None:
    repo = repository(tmp_path, url(server))
    error = stream_until_stopped(repo, FAST, stop_server=server)
    assert error.reason == causes.UNREACHABLE
    assert "connection refused" in str(error)
    server.start()
    assert snapshots(server, tmp_path) == 0


def test_a_lock_held_by_a_live_backup_stops_forget(server: RestServer, tmp_path: Path) -> None:
    repo = repository(tmp_path, url(server))
    restic.backup_bytes(repo, "first", b"x", {"service": "files"})
    upload = restic.StdinBackup(repo, "held.sql", {"service": "db"})
    try:
        upload.stdin.write(b"data")
        upload.stdin.flush()
        wait_for("the backup's lock", lambda: server.locks("agama"), timeout=20, every=0.05)
        forget = restic.command("forget", "--retry-lock", "1s", "--keep-last", "1")
        error = failure(repo, forget)
    finally:
        upload.abort()
    assert isinstance(error, restic.RepositoryLocked)
    assert error.reason == causes.LOCKED
    assert "is locked: held by PID" in str(error)


def test_failed_dump_command_is_dump_failed_and_saves_nothing(
    server: RestServer, tmp_path: Path
) -> None:
    repo = repository(tmp_path, url(server))
    producer = (
        "import sys; print('CREATE TABLE t'); sys.stderr.write('Access denied\\n'); sys.exit(2)"
    )
    argv = restic.command(
        "backup", "--host", "agama", "--stdin-filename", "db.sql",
        "--stdin-from-command", "--", sys.executable, "-c", producer,
    )  # fmt: skip
    error = failure(repo, argv)
    assert error.reason == causes.DUMP_FAILED
    assert str(error).endswith("failed (exit status 2): Access denied")
    assert snapshots(server, tmp_path) == 0


def test_abort_while_restic_waits_for_input_saves_nothing_and_leaves_no_lock(
    server: RestServer, tmp_path: Path
) -> None:
    repo = repository(tmp_path, url(server))
    upload = restic.StdinBackup(repo, "db.sql", {"service": "db"})
    upload.stdin.write(os.urandom(3 << 20))
    upload.stdin.flush()
    wait_for("the backup's lock", lambda: server.locks("agama"), timeout=20, every=0.05)
    upload.abort(grace=30)
    # restic exited by itself: the old abort waited out the grace and SIGKILLed it (-9).
    assert upload.running.process.popen.returncode == 1
    assert server.locks("agama") == []
    assert snapshots(server, tmp_path) == 0


def test_a_sealed_backup_saves_its_document_only_when_sealed(
    server: RestServer, tmp_path: Path
) -> None:
    """A record's restic starts beside the dump and waits; ``abort`` saves nothing."""
    repo = repository(tmp_path, url(server))
    aborted = restic.SealedBackup(repo, "db.meta.json", {"service": "db", "kind": "meta"})
    wait_for("the waiting backup's lock", lambda: server.locks("agama"), timeout=20, every=0.05)
    aborted.abort()
    assert aborted.running.process.popen.returncode == 1
    assert snapshots(server, tmp_path) == 0 and server.locks("agama") == []

    sealed = restic.SealedBackup(repo, "db.meta.json", {"service": "db", "kind": "meta"})
    summary = sealed.seal(b'{"sha256": "00"}')
    assert restic.dump_bytes(repo, summary.snapshot_id, "/db.meta.json") == b'{"sha256": "00"}'
    assert [s.tags for s in restic.snapshots(repo)] == [("service=db", "kind=meta")]


DIES_BEFORE_SEALING = """
import os, sys
from backup_agent import restic
repo = restic.Repository(*sys.argv[1:5])
upload = restic.SealedBackup(repo, "db.meta.json", {"service": "db"})
print(upload.running.process.popen.pid, flush=True)
sys.stdin.readline()
os._exit(0)
"""


def test_a_sealed_backup_saves_nothing_when_its_agent_dies_before_sealing(
    server: RestServer, tmp_path: Path
) -> None:
    repo = repository(tmp_path, url(server))
    args = [repo.url, repo.password_file, repo.host, str(repo.credentials_file)]
    agent = subprocess.Popen(
        [sys.executable, "-c", DIES_BEFORE_SEALING, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert agent.stdin is not None and agent.stdout is not None
    waiting = int(agent.stdout.readline())
    wait_for("the waiting backup's lock", lambda: server.locks("agama"), timeout=20, every=0.05)
    agent.communicate(b"die\n", timeout=30)
    wait_for("restic to end", lambda: not os.path.exists(f"/proc/{waiting}"), timeout=30)
    assert snapshots(server, tmp_path) == 0


# --- helpers --------------------------------------------------------------------------


def stream_until_stopped(
    repo: restic.Repository, limits: guard.Limits, stop_server: RestServer | None = None
) -> restic.ResticError:
    """Stream random data into ``restic backup --stdin`` under ``limits`` until restic stops
    (its guard stopped it); ``stop_server`` is stopped after 4 MiB."""
    upload = restic.StdinBackup(repo, "db.sql", {"service": "db"}, limits)
    process = upload.running.process
    sent = 0
    try:
        while process.popen.poll() is None and sent < 512 << 20:
            upload.stdin.write(os.urandom(1 << 20))
            sent += 1 << 20
            if stop_server is not None and sent == 4 << 20:
                stop_server.stop()
    except BrokenPipeError:
        pass
    upload.abort()
    error = upload.failure()
    assert isinstance(error, restic.ResticError)
    return error


def snapshots(rest: RestServer, tmp_path: Path) -> int:
    return len(restic.snapshots(repository(tmp_path, url(rest))))
