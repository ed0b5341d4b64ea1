"""Restore speed: the drill's restore against the raw baseline, side by side in one run.

Baseline: ``restic dump SNAPSHOT /db.sql | mariadb`` into an untuned server (the
packaged defaults). Drill: ``drill.drill`` (restore into a disposable server tuned
for a bulk load, then the proofs: SHA-256, every table's row count, sanity queries)
into a second server started from the same binary. Both load the same snapshot of
the same generated database; the runs alternate and the medians are compared.

    python -m bench.restore_bench [--rows N] [--repeat K]

Writes bench/results/restore.json. No assertion: the ratio is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from tests.mariadb_server import MariaDB

from backup_agent import drill, manifest, restic
from backup_agent.jobs import mysql

RESULTS = Path(__file__).parent / "results" / "restore.json"
TUNED = (
    "--innodb-buffer-pool-size=2G",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--skip-log-bin",
)
UNTUNED = ("--skip-log-bin",)  # the baseline keeps the packaged defaults otherwise


def populate(server: MariaDB, rows: int) -> None:
    """Two tables with text, numbers, dates and binary data; ``orders`` has a secondary
    index in random order (like e-mail addresses or UUIDs), where buffer pool size
    decides the load speed."""
    server.execute(
        "CREATE DATABASE bench CHARACTER SET utf8mb4",
        "CREATE TABLE bench.orders (id BIGINT PRIMARY KEY, customer INT, note VARCHAR(200),"
        " amount DECIMAL(12,2), created DATETIME, payload VARBINARY(64), token CHAR(32),"
        " KEY (customer), UNIQUE KEY (token))",
        "CREATE TABLE bench.events (id BIGINT PRIMARY KEY AUTO_INCREMENT, order_id BIGINT,"
        " kind VARCHAR(20), body TEXT, KEY (order_id))",
    )
    server.execute(
        "INSERT INTO bench.orders SELECT seq, seq % 5000,"
        " CONCAT('order ', seq, ' ', REPEAT('x', seq % 120)),"
        f" seq / 7, NOW() - INTERVAL seq SECOND, UNHEX(SHA2(seq, 256)), MD5(seq)"
        f" FROM seq_1_to_{rows}",
        f"INSERT INTO bench.events (order_id, kind, body) SELECT seq, 'created',"
        f" REPEAT(MD5(seq), 3) FROM seq_1_to_{rows}",
        database="bench",  # the sequence engine's seq_ tables need a current database
    )


def reset(server: MariaDB) -> None:
    server.execute("DROP DATABASE IF EXISTS bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_500_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="restore-bench-"))
    servers = {"source": MariaDB(UNTUNED), "baseline": MariaDB(UNTUNED), "drill": MariaDB(TUNED)}
    for server in servers.values():
        server.start()
    try:
        source, baseline, drill_server = servers["source"], servers["baseline"], servers["drill"]
        populate(source, args.rows)
        (work / "pw").write_text("bench\n")
        spec = {
            "version": 1,
            "work_dir": str(work / "work"),
            "agent": {"state_dir": str(work / "state"), "metrics_port": 0},
            "repository": {
                "url": str(work / "repo"),
                "password_file": str(work / "pw"),
                "host": "bench",
            },
            "services": {
                "db": {
                    "type": "mysql",
                    "schedule": "0 22 * * *",
                    "rpo": "1d",
                    "rto": {"target": "30m", "limit": "2h"},
                    "mysql": {
                        "socket": source.socket,
                        "defaults_file": source.defaults_file(work / "src.cnf", "root", ""),
                        "client": "mariadb",
                    },
                }
            },
            "retention": {"keep_within": "3w", "max_age": "31d"},
            "drill": {
                "schedule": "0 6 * * 1",
                "scratch_dir": str(work / "drill"),
                "mysql": {
                    "socket": drill_server.socket,
                    "defaults_file": drill_server.defaults_file(work / "drill.cnf", "root", ""),
                },
            },
        }
        (work / "manifest.yaml").write_text(yaml.safe_dump(spec))
        loaded = manifest.load(work / "manifest.yaml")
        restic.init(loaded.repository)
        result = mysql.backup(loaded, loaded.service("db"), "full")
        env = {**os.environ, **loaded.repository.env()}

        def run_baseline() -> float:
            reset(baseline)
            started = time.monotonic()
            dump = subprocess.Popen(
                ["restic", "dump", result.snapshot_id, "/db.sql"], env=env, stdout=subprocess.PIPE
            )
            subprocess.run(
                ["mariadb", "-S", baseline.socket, "-uroot"], stdin=dump.stdout, check=True
            )
            dump.wait()
            return time.monotonic() - started

        def run_drill() -> float:
            outcome = drill.drill(loaded, loaded.service("db"))
            assert outcome.passed, outcome.error
            return outcome.seconds

        timings: dict[str, list[float]] = {"baseline": [], "drill": []}
        for _ in range(args.repeat):
            timings["baseline"].append(run_baseline())
            timings["drill"].append(run_drill())
        medians = {name: statistics.median(values) for name, values in timings.items()}
        report = {
            "rows_per_table": args.rows,
            "dump_bytes": result.bytes_read,
            "baseline": "restic dump | mariadb into an untuned server",
            "drill": "backup-agent drill: tuned disposable server, restore + SHA-256 + row counts",
            "seconds": timings,
            "median_seconds": medians,
            "drill_speedup": round(medians["baseline"] / medians["drill"], 2),
        }
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
