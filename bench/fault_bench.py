"""Time to fail: each repository failure under ``repository_guard``'s recommended limits,
and the abort of a ``restic backup --stdin`` blocked on its input, old way against new.

restic's own give-up for the retried cases is about 15 minutes (measured separately,
see the report); this bench measures only what the agent now does. Old and new abort
alternate, ``--repeat`` times each, in one run.

    python -m bench.fault_bench [--repeat K] [--only NAME]

Writes bench/results/faults.json. No assertion: these are measurements.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.test_repository_faults import REST_PASSWORD, repository, url
from tests.net import HOST, free_port
from tests.rest_server import RestServer

from backup_agent import repository_guard as guard
from backup_agent import restic

RESULTS = Path(__file__).parent / "results" / "faults.json"
WRONG = "not-it"


def timed(action: Callable[[], object]) -> tuple[float, str, str]:
    """Seconds until ``action`` raised, its reason label and its message."""
    start = time.monotonic()
    try:
        action()
    except restic.ResticError as error:
        return time.monotonic() - start, error.reason, str(error)
    return time.monotonic() - start, "ok", ""


def initialised(tmp: Path, *extra: str) -> RestServer:
    rest = RestServer({"agent": REST_PASSWORD}, append_only=False, extra=extra)
    restic.init(repository(tmp, url(rest)))
    return rest


def stream(repo: restic.Repository, limits: guard.Limits, stop: RestServer | None) -> None:
    """``restic backup --stdin`` under ``limits``, fed until restic stops; raises its failure."""
    upload = restic.StdinBackup(repo, "db.sql", {"service": "db"}, limits)
    sent = 0
    with contextlib.suppress(BrokenPipeError):
        while upload.running.process.popen.poll() is None:
            upload.stdin.write(os.urandom(1 << 20))
            sent += 1
            if stop is not None and sent == 4:
                stop.stop()
    upload.abort()
    raise upload.failure()


def cases(tmp: Path) -> dict[str, Callable[[], tuple[float, str, str]]]:
    def refused() -> tuple[float, str, str]:
        repo = repository(tmp, f"rest:http://{HOST}:{free_port()}/agama")
        return timed(lambda: restic.preflight(repo))

    def stalled() -> tuple[float, str, str]:
        with socket.socket() as listener:
            listener.bind((HOST, 0))
            listener.listen(8)
            repo = repository(tmp, f"rest:http://{HOST}:{listener.getsockname()[1]}/agama")
            return timed(lambda: restic.preflight(repo))

    def with_server(
        action: Callable[[RestServer], object], *extra: str
    ) -> Callable[[], tuple[float, str, str]]:
        def run() -> tuple[float, str, str]:
            rest = initialised(tmp, *extra)
            try:
                return timed(lambda: action(rest))
            finally:
                rest.remove()

        return run

    def full(rest: RestServer) -> None:
        rest.stop()
        rest.start("--max-size", str(rest.used_bytes() + 2_000_000))
        stream(repository(tmp, url(rest)), guard.LONG, None)

    def read_only(rest: RestServer) -> None:
        rest.stop()
        for path in [rest.data / "agama", *(rest.data / "agama").rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        rest.serve_as("nobody")
        rest.start()
        restic.preflight(repository(tmp, url(rest)))

    def locked(rest: RestServer) -> None:
        repo = repository(tmp, url(rest))
        upload = restic.StdinBackup(repo, "held.sql", {"service": "db"})
        upload.stdin.write(b"x")
        upload.stdin.flush()
        while not rest.locks("agama"):
            time.sleep(0.05)
        try:
            argv = restic.command("forget", "--retry-lock", restic.RETRY_LOCK, "--keep-last", "1")
            guard.run(argv, repo.env(), repo.url, guard.QUICK, restic.error)
        finally:
            upload.abort()

    return {
        "refused (preflight)": refused,
        "stalled (preflight)": stalled,
        "401 (preflight)": with_server(
            lambda r: restic.preflight(repository(tmp, url(r), rest_password=WRONG))
        ),
        "missing (preflight)": with_server(
            lambda r: restic.preflight(repository(tmp, url(r, "nothere")))
        ),
        "wrong password (preflight)": with_server(
            lambda r: restic.preflight(repository(tmp, url(r), password=WRONG))
        ),
        "read-only (preflight)": with_server(read_only),
        "full, mid-upload (LONG)": with_server(full),
        "stopped mid-upload (LONG)": with_server(
            lambda r: stream(repository(tmp, url(r)), guard.LONG, r)
        ),
        "locked by a live backup (forget, QUICK, retry-lock 2m)": with_server(locked),
    }


def old_abort(upload: restic.StdinBackup) -> None:
    """The abort before this change: SIGTERM, up to 20 s, SIGKILL, then close stdin."""
    upload.running.process.stop(20.0)
    with contextlib.suppress(BrokenPipeError, OSError):
        upload.stdin.close()


def abort_once(tmp: Path, rest: RestServer, new: bool) -> dict[str, object]:
    repo = repository(tmp, url(rest))
    upload = restic.StdinBackup(repo, "db.sql", {"service": "db"})
    upload.stdin.write(os.urandom(8 << 20))
    upload.stdin.flush()
    while not rest.locks("agama"):
        time.sleep(0.02)
    time.sleep(1.0)  # restic has read what it got and blocks on stdin
    start = time.monotonic()
    if new:
        upload.abort()
    else:
        old_abort(upload)
    seconds = time.monotonic() - start
    snapshots = len(restic.snapshots(repo))
    leftover = len(rest.locks("agama"))
    for lock in rest.locks("agama"):  # a SIGKILLed restic's lock: clear it for the next round
        lock.unlink()
    return {"seconds": seconds, "exit": upload.running.process.popen.returncode,
            "snapshots": snapshots, "locks_left": leftover}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="")
    options = parser.parse_args()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for case, measure in cases(tmp).items():
            if options.only and options.only not in case:
                continue
            seconds, reason, message = measure()
            results[case] = {"seconds": round(seconds, 2), "reason": reason, "message": message}
            print(f"{case}: {seconds:.1f} s, {reason}: {message}", flush=True)
        if not options.only or "abort" in options.only:
            rest = initialised(tmp)
            try:
                rounds: dict[str, list[dict[str, object]]] = {"old": [], "new": []}
                for _ in range(options.repeat):
                    for way in ("old", "new"):
                        rounds[way].append(abort_once(tmp, rest, way == "new"))
            finally:
                rest.remove()
            for way, runs in rounds.items():
                median = statistics.median(float(str(run["seconds"])) for run in runs)
                print(f"abort {way}: median {median:.3f} s, {runs}", flush=True)
                results[f"abort {way}"] = {"median_seconds": round(median, 3), "runs": runs}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    threading.excepthook = lambda args: None  # a guard thread may outlive its restic
    main()
