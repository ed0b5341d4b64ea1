"""Binlog shipping: rotating vs streaming vs polling, side by side on one server.

One MariaDB server with binary logs takes a steady write load (a writer commits
small rows at a fixed rate); each mode ships its binlogs into a fresh restic
repository every ``--interval`` seconds (a scaled-down 5 minutes):

- ``baseline``: no shipping (the reference for commit latency and server CPU);
- ``rotate``: ``FLUSH BINARY LOGS`` then ship what the server wrote (closed files);
- ``poll``: ``ship.ship`` as built: read the new bytes, no flush, no connection kept;
- ``stream``: ``mariadb-binlog --raw --stop-never`` into a spool, and the spool
  backed up whole every interval (what a naive streaming shipper stores).

Measured per run: commit latency (p50, p99, max), server CPU seconds, ship cycle
time, bytes written by the server, repository growth, snapshots and server binlog
files created, and in stream mode the spool lag (commit to bytes in the spool).
Runs alternate between modes; the machine is shared, so compare within a round.

    python -m bench.binlog_bench [--seconds 40] [--interval 5] [--rate 50] [--rounds 2]

Writes bench/results/binlog.json. No assertion: these are measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.mariadb_server import MariaDB

from backup_agent import restic
from backup_agent.jobs.mysql.binlog import ship
from backup_agent.jobs.mysql.binlog.chain import Shipment
from backup_agent.manifest import MysqlOptions

RESULTS = Path(__file__).parent / "results" / "binlog.json"
HOST, PORT = "127.0.0.50", 30010
SERVER_ARGS = (
    "--innodb-buffer-pool-size=128M",
    "--log-bin=mysql-bin",
    "--binlog-format=ROW",
    "--server-id=14",
    "--sync-binlog=1",
    f"--bind-address={HOST}",
    f"--port={PORT}",
)
MODES = ("baseline", "rotate", "poll", "stream")
TICK = os.sysconf("SC_CLK_TCK")


class Writer(threading.Thread):
    """Commits one ~200-byte row ``rate`` times a second; records each commit's latency."""

    def __init__(self, server: MariaDB, rate: float) -> None:
        super().__init__(daemon=True)
        self.server, self.rate = server, rate
        self.stop = threading.Event()
        self.latencies: list[float] = []

    def run(self) -> None:
        conn = self.server.connect("bench")
        with conn.cursor() as cur:
            start = time.monotonic()
            count = 0
            while not self.stop.is_set():
                began = time.monotonic()
                cur.execute(
                    "INSERT INTO ticks (ts, note) VALUES (NOW(6), %s)", ("x" * 180 + str(count),)
                )
                self.latencies.append(time.monotonic() - began)
                count += 1
                pause = start + count / self.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        conn.close()


def binlog_files(server: MariaDB) -> list[tuple[str, int]]:
    return [(str(name), int(str(size))) for name, size, *_ in server.execute("SHOW BINARY LOGS")]


def server_cpu(server: MariaDB) -> float:
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def new_repository(work: Path, name: str) -> restic.Repository:
    (work / "pw").write_text("bench\n")
    repo = restic.Repository(
        url=str(work / f"repo-{name}"),
        password_file=str(work / "pw"),
        host="bench",
        cache_dir=str(work / "cache"),
    )
    shutil.rmtree(repo.url, ignore_errors=True)
    restic.init(repo)
    return repo


def size_of(path: str) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


class Streamer:
    """``mariadb-binlog --stop-never`` into a spool; measures commit-to-spool lag."""

    def __init__(self, options: MysqlOptions, spool: Path, first: str) -> None:
        spool.mkdir(parents=True, exist_ok=True)
        self.spool = spool
        start = ship.Resume(first, None, 0)
        argv = ship.fetch_command("mariadb-binlog", options, start, [first], spool)
        argv.insert(-1, "--stop-never")  # implies reading on into the files after
        argv.insert(-1, "--stop-never-slave-server-id=4242")
        self.process = subprocess.Popen(argv, stderr=subprocess.DEVNULL)

    def sample_lag(self, server: MariaDB, stop: threading.Event, into: list[float]) -> None:
        """Until ``stop``: commit a marker, wait until the spool holds the server's new end."""
        conn = server.connect("bench")
        with conn.cursor() as cur:
            while not stop.wait(0.25):
                cur.execute("INSERT INTO ticks (ts, note) VALUES (NOW(6), 'marker')")
                committed = time.monotonic()
                cur.execute("SHOW BINARY LOGS")
                name, size = (str(v) for v in cur.fetchall()[-1][:2])
                target = self.spool / name
                while not (target.exists() and target.stat().st_size >= int(size)):
                    if time.monotonic() - committed > 10:
                        break
                    time.sleep(0.001)
                into.append(time.monotonic() - committed)
        conn.close()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def run_mode(
    mode: str,
    server: MariaDB,
    options: MysqlOptions,
    work: Path,
    seconds: float,
    interval: float,
    rate: float,
) -> dict[str, Any]:
    repo = new_repository(work, mode)
    spool = work / f"spool-{mode}"
    shutil.rmtree(spool, ignore_errors=True)
    files_before = len(binlog_files(server))
    shipments: list[Shipment] = []
    cycles: list[float] = []
    streamer = None
    if mode == "stream":
        streamer = Streamer(options, spool / "live", binlog_files(server)[-1][0])
    elif mode in ("rotate", "poll"):
        # Start from the current end, as a shipper that has caught up would.
        first = ship.ship(repo, options, mode, spool, [])
        shipments += [first.shipment] if first.shipment else []
    position_before = sum(size for _, size in binlog_files(server))
    repo_before = size_of(repo.url)
    cpu_before, children_before = server_cpu(server), children_cpu()
    writer = Writer(server, rate)
    writer.start()
    began = time.monotonic()
    lags: list[float] = []
    sampling = threading.Event()
    if streamer is not None:
        sampler = threading.Thread(target=streamer.sample_lag, args=(server, sampling, lags))
        sampler.start()
    while time.monotonic() - began < seconds:
        time.sleep(max(0.0, interval - (time.monotonic() - began) % interval))
        cycle = time.monotonic()
        if mode == "rotate":
            server.execute("FLUSH BINARY LOGS")
        if mode in ("rotate", "poll"):
            result = ship.ship(repo, options, mode, spool, shipments)
            if result.shipment:
                shipments.append(result.shipment)
        elif streamer is not None:
            restic.backup(repo, [str(spool / "live")], {"service": "stream", "kind": "binlog"})
        cycles.append(time.monotonic() - cycle)
    writer.stop.set()
    writer.join()
    sampling.set()
    if streamer is not None:
        sampler.join()
        streamer.close()
    server_written = sum(size for _, size in binlog_files(server)) - position_before
    return {
        "mode": mode,
        "commits": len(writer.latencies),
        "commit_ms": {
            "p50": round(1000 * percentile(writer.latencies, 0.5), 2),
            "p99": round(1000 * percentile(writer.latencies, 0.99), 2),
            "max": round(1000 * max(writer.latencies), 2),
        },
        "server_cpu_s": round(server_cpu(server) - cpu_before, 2),
        "shipper_children_cpu_s": round(children_cpu() - children_before, 2),
        "ship_cycle_s": {
            "median": round(statistics.median(cycles), 3) if cycles and mode != "baseline" else 0,
            "max": round(max(cycles), 3) if cycles and mode != "baseline" else 0,
        },
        "server_binlog_bytes": server_written,
        "repository_growth_bytes": size_of(repo.url) - repo_before,
        "snapshots": len(restic.snapshots(repo)),
        "server_files_created": len(binlog_files(server)) - files_before,
        "spool_lag_ms": {
            "p50": round(1000 * percentile(lags, 0.5), 1),
            "p99": round(1000 * percentile(lags, 0.99), 1),
        }
        if lags
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--interval", type=float, default=5)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="binlog-bench-", dir="/var/tmp"))
    server = MariaDB(SERVER_ARGS)
    server.start()
    try:
        server.execute(
            "CREATE DATABASE bench",
            "CREATE TABLE bench.ticks (id BIGINT PRIMARY KEY AUTO_INCREMENT,"
            " ts DATETIME(6) NOT NULL, note VARCHAR(250) NOT NULL)",
            "CREATE USER 'ship'@'%' IDENTIFIED BY 'ship'",
            "GRANT BINLOG MONITOR, REPLICATION SLAVE ON *.* TO 'ship'@'%'",
        )
        options = MysqlOptions(
            defaults_file=server.defaults_file(work / "ship.cnf", "ship", "ship"),
            host=HOST,
            port=PORT,
        )
        runs = [
            run_mode(mode, server, options, work, args.seconds, args.interval, args.rate)
            for _ in range(args.rounds)
            for mode in MODES
        ]
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "setup": {
            "seconds_per_run": args.seconds,
            "interval_s": args.interval,
            "commits_per_s": args.rate,
            "row_bytes": 200,
            "sync_binlog": 1,
            "note": "shared 2-core machine: compare modes within a round, not absolute times",
        },
        "runs": runs,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
