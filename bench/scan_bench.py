"""Backup speed: the agent's pump and scanner against the raw pipeline, side by side.

Raw: ``mariadb-dump ... | restic backup --stdin``. Agent: the same dump read by
``pump.pump`` (SHA-256, byte count, trailer tail, ``DumpScanner(trusted_rows=True)``
in a second thread) and written to ``restic backup --stdin`` through
``restic.StdinBackup``; a third variant, ``hold_back=True``, hashes and scans each
piece before writing it, in one thread, as restores do. Each runs into a fresh
repository (first run) and again into the same one (unchanged database). Pairs
alternate their order; medians and ratios are reported. Then the scanner alone, on
the dump in memory: the scanner of ``--before`` (a git revision) against this one,
trusted and exact.

    python -m bench.scan_bench [--rows N] [--pairs K] [--before REV]

Writes bench/results/scan.json. No assertion: the ratios are measurements.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

from tests.mariadb_server import MariaDB

from backup_agent import execute, restic
from backup_agent.jobs.mysql import pump
from backup_agent.jobs.mysql import scan as dumpscan
from backup_agent.jobs.mysql.dump import COMMON_FLAGS, TRAILER

RESULTS = Path(__file__).parent / "results" / "scan.json"
NOTES = (
    "plain text here",
    "it's a \\ backslash",
    "line1\nline2\r\n",
    "),( and );",
    "\\! touch /tmp/x",
    "emoji \U0001f600 \u00fc",
    '"quoted" `tick` #hash -- dash /* c */',
)


def populate(server: MariaDB, rows: int) -> None:
    """Orders with tricky text and binary data, events with plain text, an empty table."""
    server.execute(
        "CREATE DATABASE bench CHARACTER SET utf8mb4",
        "CREATE TABLE bench.orders (id BIGINT PRIMARY KEY, customer INT, note VARCHAR(300),"
        " amount DECIMAL(12,2), created DATETIME, payload VARBINARY(64), token CHAR(32))",
        "CREATE TABLE bench.events (id BIGINT PRIMARY KEY, order_id BIGINT, kind VARCHAR(20),"
        " body TEXT)",
        "CREATE TABLE bench.empty (id INT)",
    )
    notes = ", ".join("'" + n.replace("\\", "\\\\").replace("'", "''") + "'" for n in NOTES)
    server.execute(
        f"INSERT INTO orders SELECT seq, seq % 5000, CONCAT('order ', seq, ' ',"
        f" IF(seq % 9 = 0, REPEAT('x', seq % 120), ELT(seq % {len(NOTES)} + 1, {notes}))),"
        " seq / 7, '2026-01-01' - INTERVAL seq SECOND, UNHEX(SHA2(seq, 256)), MD5(seq)"
        f" FROM seq_1_to_{rows}",
        f"INSERT INTO events SELECT seq, seq, 'created', REPEAT(MD5(seq), 2) FROM seq_1_to_{rows}",
        database="bench",  # the sequence engine's seq_ tables need a current database
    )


class Bench:
    def __init__(self, server: MariaDB, work: Path) -> None:
        self.work = work
        self.dump_argv = [
            "mariadb-dump",
            "--no-defaults",
            f"--socket={server.socket}",
            "--user=root",
            *COMMON_FLAGS,
            "--databases",
            "bench",
        ]
        (work / "pw").write_text("bench\n")
        self.repos: dict[str, restic.Repository] = {}

    def repo(self, name: str) -> restic.Repository:
        path = self.work / name
        shutil.rmtree(path, ignore_errors=True)
        repo = restic.Repository(
            url=str(path), password_file=str(self.work / "pw"), host="bench", cache_dir=None
        )
        restic.init(repo)
        return repo

    def raw(self, repo: restic.Repository) -> None:
        env = {**os.environ, **repo.env()}
        dump = subprocess.Popen(self.dump_argv, stdout=subprocess.PIPE)
        argv = ["restic", "backup", "--host", "bench", "--quiet", "--stdin", "--stdin-filename"]
        argv.append("db.sql")
        subprocess.run(argv, stdin=dump.stdout, env=env, check=True, stdout=subprocess.DEVNULL)
        assert dump.stdout is not None
        dump.stdout.close()
        assert dump.wait() == 0

    def agent(self, repo: restic.Repository, hold_back: bool = False) -> None:
        """What the MySQL job does: pump into restic, check, then let restic finish."""
        upload = restic.StdinBackup(repo, "db.sql", {"service": "bench"})
        dump = execute.Process(self.dump_argv, stdout=execute.PIPE)
        assert dump.popen.stdout is not None
        scanner = dumpscan.DumpScanner(trusted_rows=True)
        try:
            result = pump.pump(dump.popen.stdout, upload.stdin, scanner, hold_back=hold_back)
            assert dump.wait() == 0 and TRAILER.search(result.tail)
            assert scanner.close()["bench"]["empty"] == 0
            upload.finish()
        except BaseException:
            upload.abort()
            dump.stop()
            raise


def timed(run: Callable[[], None]) -> tuple[float, float]:
    """Wall seconds, and CPU seconds of this process (the agent's own share)."""
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    run()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)


def scanner_of(revision: str) -> type[dumpscan.DumpScanner]:
    """``DumpScanner`` as it was at ``revision`` of this repository."""
    source = subprocess.run(
        ["git", "show", f"{revision}:agents/backup_agent/dumpscan.py"],
        capture_output=True,
        check=True,
        cwd=Path(__file__).parent,
    ).stdout
    module = types.ModuleType(f"dumpscan_{revision}")
    exec(compile(source, f"dumpscan@{revision}", "exec"), module.__dict__)  # noqa: S102
    scanner: type[dumpscan.DumpScanner] = module.DumpScanner
    return scanner


def scan_speed(data: bytes, make: Callable[[], dumpscan.DumpScanner]) -> float:
    """MB/s of one scanner over ``data`` fed in 1 MiB chunks (CPU time)."""
    scanner = make()
    started = time.process_time()
    for start in range(0, len(data), pump.CHUNK):
        scanner.feed(data[start : start + pump.CHUNK])
    scanner.close()
    return round(len(data) / (time.process_time() - started) / 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--before", default="cd5c6cd", help="git revision of the old scanner")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="scan-bench-"))
    server = MariaDB(("--innodb-buffer-pool-size=2G", "--skip-log-bin"))
    server.start()
    try:
        populate(server, args.rows)
        bench = Bench(server, work)
        data = subprocess.run(bench.dump_argv, capture_output=True, check=True).stdout
        variants: dict[str, Callable[[restic.Repository], None]] = {
            "raw": bench.raw,
            "agent": bench.agent,
            "agent_in_order": lambda repo: bench.agent(repo, hold_back=True),
        }
        wall: dict[str, list[float]] = {f"{v}_{k}": [] for v in variants for k in ("new", "same")}
        cpu: dict[str, list[float]] = {key: [] for key in wall}
        for pair in range(args.pairs):
            order = list(variants) if pair % 2 == 0 else list(reversed(variants))
            for name in order:
                repo = bench.repo(name)
                for kind in ("new", "same"):  # first run, then the unchanged database again
                    seconds, agent_cpu = timed(lambda: variants[name](repo))  # noqa: B023
                    wall[f"{name}_{kind}"].append(round(seconds, 2))
                    cpu[f"{name}_{kind}"].append(round(agent_cpu, 2))
                shutil.rmtree(work / name)
        medians = {key: statistics.median(values) for key, values in wall.items()}
        report = {
            "dump_bytes": len(data),
            "rows_per_table": args.rows,
            "pairs": args.pairs,
            "seconds": wall,
            "agent_cpu_seconds": cpu,
            "median_seconds": medians,
            "ratio_first_run": round(medians["agent_new"] / medians["raw_new"], 3),
            "ratio_unchanged": round(medians["agent_same"] / medians["raw_same"], 3),
            "ratio_in_order_first_run": round(
                medians["agent_in_order_new"] / medians["raw_new"], 3
            ),
            "ratio_in_order_unchanged": round(
                medians["agent_in_order_same"] / medians["raw_same"], 3
            ),
            "scanner_mb_per_s": {
                f"before ({args.before})": scan_speed(data, scanner_of(args.before)),
                "trusted_rows": scan_speed(data, lambda: dumpscan.DumpScanner(True)),
                "exact": scan_speed(data, dumpscan.DumpScanner),
            },
            "sha256_mb_per_s": scan_speed(data, Sha256Only),
            "load_average": os.getloadavg(),
        }
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


class Sha256Only(dumpscan.DumpScanner):
    """A yardstick for the scanner speeds: hashing the same chunks."""

    def __init__(self) -> None:
        super().__init__()
        self.digest = hashlib.sha256()

    def feed(self, chunk: bytes) -> None:
        self.digest.update(chunk)

    def close(self) -> dict[str, dict[str, int]]:
        return {}


if __name__ == "__main__":
    main()
