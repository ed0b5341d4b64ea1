"""S3 (Ceph RGW) against rest-server as restic's store, side by side in one run.

Both stores run on this machine over loopback (``tests.net``'s address): a throwaway
single-node Ceph cluster (memstore OSD, so RAM, not disk) with its RADOS Gateway, and
``restic-rest-server`` on a temporary directory with a user, without ``--append-only``.
The same operations alternate between them, K times, and the medians are compared:

* backup of the same ~200 MB (incompressible files) into a fresh repository, then a
  restore of that snapshot;
* on a repository of N small snapshots (made once in a local repository and brought in
  with the maintenance role's ``restic.copy``, which is timed too):
  ``check --read-data-subset=10%``, and ``forget`` of a batch of snapshots, then ``prune``.

S3 runs as the bucket's maintenance user (prune deletes). Also reported: resident
memory of each Ceph daemon and of rest-server at the end (and their peaks).

    python -m bench.s3_bench [--megabytes 200] [--snapshots 300] [--repeat 3]

Writes bench/results/s3.json. No assertion: the ratios are measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.ceph_rgw import CephRGW
from tests.rest_server import RestServer
from tests.s3_client import S3Client
from tests.s3_fixtures import write_credentials

from backup_agent import restic, s3policy

RESULTS = Path(__file__).parent / "results" / "s3.json"
TAGS = {"service": "bench", "kind": "full"}
REST_PASSWORD = "bench-rest"  # noqa: S105 (a throwaway server's user)
T = TypeVar("T")


def timed(action: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[float, T]:
    """Seconds ``action(*args, **kwargs)`` took, and its result."""
    started = time.monotonic()
    result = action(*args, **kwargs)
    return time.monotonic() - started, result


def memory_of(pid: int) -> dict[str, int]:
    """Resident and peak resident memory of ``pid`` in bytes."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


class Stores:
    """Makes fresh repositories on either store."""

    def __init__(self, work: Path, rgw: CephRGW, rest: RestServer) -> None:
        self.work, self.rgw, self.rest = work, rgw, rest
        self.password = work / "password"
        self.password.write_text("bench\n")
        self.rest_credentials = work / "rest.credentials"
        self.rest_credentials.write_text(f"bench:{REST_PASSWORD}\n")
        self.user = rgw.create_user("bench-maintenance")
        self.credentials = write_credentials(
            work / "s3.credentials", self.user.access_key, self.user.secret_key
        )
        self.client = S3Client(rgw.endpoint, self.user.access_key, self.user.secret_key)
        self.count = 0

    def fresh(self, store: str) -> restic.Repository:
        """A new, initialised repository on ``store`` ('s3' or 'rest')."""
        self.count += 1
        name = f"bench-{self.count}"
        if store == "s3":
            assert self.client.create_bucket(name).status == 200
            versioning = s3policy.versioning_configuration()
            assert self.client.configure(name, "versioning", versioning).status == 200
            url, credentials = self.rgw.restic_url(name), str(self.credentials)
        else:
            url, credentials = self.rest.url(name), str(self.rest_credentials)
        repo = restic.Repository(
            url, str(self.password), "bench", credentials, str(self.work / f"cache-{name}")
        )
        restic.init(repo)
        return repo


def make_data(path: Path, megabytes: int) -> None:
    path.mkdir(parents=True)
    for i in range(megabytes // 4):
        (path / f"file-{i:03d}.bin").write_bytes(os.urandom(4 << 20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--snapshots", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="backup-agent-s3-bench-", dir="/var/tmp"))
    rgw = CephRGW()
    rest: RestServer | None = None
    try:
        rgw.start()
        # rest-server as the stack runs it, with a user, but without --append-only: the
        # bench prunes there as the maintenance role does on the server's disk.
        rest = RestServer({"bench": REST_PASSWORD}, append_only=False)
        assert rest.process is not None
        stores = Stores(work, rgw, rest)
        report = run(args, work, stores)
        report["memory_bytes"] = {
            **{name: memory_of(p.pid) for name, p in rgw.processes.items()},
            "rest-server": memory_of(rest.process.pid),
        }
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    finally:
        if rest is not None:
            rest.remove()
        rgw.stop()
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, stores: Stores) -> dict[str, object]:
    load_before = os.getloadavg()
    data = work / "data"
    make_data(data, args.megabytes)
    seconds: dict[str, dict[str, list[float]]] = {}

    def record(operation: str, store: str, value: float) -> None:
        seconds.setdefault(operation, {}).setdefault(store, []).append(round(value, 3))

    order = ["s3", "rest"]
    for _ in range(args.repeat):
        for store in order:
            repo = stores.fresh(store)
            took, summary = timed(restic.backup, repo, [str(data)], TAGS)
            record("backup", store, took)
            target = work / "restored"
            record(
                "restore", store, timed(restic.restore, repo, summary.snapshot_id, str(target))[0]
            )
            shutil.rmtree(target)
        order.reverse()

    # Many small snapshots, made once locally, copied into each store.
    local = restic.Repository(str(work / "local"), str(stores.password), "bench")
    restic.init(local)
    small = work / "small"
    small.mkdir()
    for i in range(args.snapshots):
        (small / "counter.txt").write_text(f"{i}\n" * 100)
        (small / f"added-{i}.bin").write_bytes(os.urandom(2048))
        restic.backup(local, [str(small)], TAGS)
    many = {store: stores.fresh(store) for store in order}
    for store, repo in many.items():
        record("copy_in", store, timed(restic.copy, local, repo)[0])
    batch = max(1, args.snapshots // (4 * args.repeat))
    for _ in range(args.repeat):
        for store in order:
            repo = many[store]
            record("check_read_10pct", store, timed(restic.check, repo, "10%")[0])
            ids = [s.id for s in restic.snapshots(repo)[:batch]]
            record("forget_batch", store, timed(restic.forget, repo, ids)[0])
            record("prune", store, timed(restic.prune, repo)[0])
        order.reverse()

    medians = {
        op: {store: statistics.median(values) for store, values in by_store.items()}
        for op, by_store in seconds.items()
    }
    return {
        "load_average_before_after": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
        "cores": os.cpu_count(),
        "data_megabytes": args.megabytes,
        "small_snapshots": args.snapshots,
        "forget_batch": batch,
        "seconds": seconds,
        "median_seconds": medians,
        "s3_over_rest": {op: round(m["s3"] / m["rest"], 2) for op, m in medians.items()},
    }


if __name__ == "__main__":
    main()
