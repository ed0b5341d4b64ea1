"""Speed of the MySQL job against the raw tools, side by side in one run (issue 14).

Per database size, measured in K rounds (``--pairs``: pairs once, now triples) of the
agent's logical method, its physical method and the raw tools, in that order in even
rounds and the reverse in odd ones:

- first backup into an empty repository: ``mysql.backup`` (``method: logical``, and
  ``method: physical``: mariadb-backup) against ``mariadb-dump FLAGS | restic backup
  --stdin`` with the agent's own dump argv;
- second backup of the unchanged database into the same repository;
- restore: the logical drill (``drill.drill``), and the physical restore
  (``mysql.restore`` into an empty directory, what ``restore db --to DIR`` runs, then
  chown, a server started on it and the rows of every table counted), against
  ``restic dump SNAPSHOT /db.sql | mariadb`` and the same count. Every server (source,
  drill target, raw target, the one on the restored copy) runs with the TUNED flags.

The database is generated and deterministic, mostly one big table (``--shapes big``),
or the same bytes spread over four equal tables (``spread``); its row counts come from
the wanted dump size (``--sizes``, GB) and a calibration dump. Every agent run is a
fresh process (``bench.agent_run``) whose VmRSS the bench samples from
``/proc/PID/status``, so each size's peak is the agent's alone. CPU seconds of the
measured process and of its waited-for children are recorded per run. ``--profile``
adds one cProfile'd agent backup and drill at the smallest size, outside the pairs.

    python -m bench.restore_bench [--sizes 0.25,0.5,1] [--pairs 2] [--shapes big]
    python -m bench.restore_bench --sizes 0.02 --pairs 1      # a smoke run
    python -m bench.restore_bench --table                     # the README's tables

Writes bench/results/restore.json. No assertion on any time: these are measurements.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from tests.mariadb_server import MariaDB

from backup_agent import manifest, restic
from backup_agent.jobs.mysql import record
from backup_agent.jobs.mysql.dump import dump_command
from backup_agent.jobs.mysql.preflight import preflight
from backup_agent.manifest import MysqlOptions
from bench.agent_run import ACTIONS, SERVICE, Sample, timed, vmrss_kib

RESULTS = Path(__file__).parent / "results" / "restore.json"
# Every server of the bench (source, drill target, raw target, restored copy) runs with these.
TUNED = (
    "--innodb-buffer-pool-size=2G",
    "--innodb-log-file-size=512M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--skip-log-bin",
)
CALIBRATION_ROWS = 20_000
RSS_INTERVAL = 0.05  # seconds between two samples of an agent process's VmRSS
METHODS = {"agent": "logical", "physical": "physical"}  # the agent's sides: mysql.method
AGENT_SIDES = tuple(METHODS)
SIDES = (*AGENT_SIDES, "raw")


# --- the generated database -------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """How the rows are spread: ``tables`` copies of the wide table, and ``events``
    rows (a narrower table) per wide row, plus 5000 customers."""

    name: str
    tables: int
    events_per_row: float


SHAPES = {
    "big": Shape("big", 1, 0.5),  # one table holds about 85% of the dump
    "spread": Shape("spread", 4, 0.0),  # four equal tables
}


def populate(server: MariaDB, shape: Shape, rows: int) -> None:
    """Create ``bench`` deterministically: ``rows`` rows in total over the wide
    table(s) (text, decimals, dates, binary, and a unique key in random order, which
    makes buffer pool size matter for the load), ``events`` and ``customers``."""
    server.execute("DROP DATABASE IF EXISTS bench", "CREATE DATABASE bench CHARACTER SET utf8mb4")
    per_table = max(1, rows // shape.tables)
    statements = [
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(64), country CHAR(2))",
        "INSERT INTO customers SELECT seq, CONCAT('customer ', seq), ELT(seq % 4 + 1,"
        " 'DE', 'FR', 'IT', 'ES') FROM seq_1_to_5000",
        "CREATE TABLE events (id BIGINT PRIMARY KEY, order_id BIGINT, kind VARCHAR(20),"
        " body TEXT, KEY (order_id))",
    ]
    events = int(rows * shape.events_per_row)
    if events:
        statements.append(
            f"INSERT INTO events SELECT seq, seq * 2, ELT(seq % 3 + 1, 'created', 'paid',"
            f" 'shipped'), REPEAT(MD5(seq), 3) FROM seq_1_to_{events}"
        )
    for index in range(shape.tables):
        table = "orders" if shape.tables == 1 else f"orders_{index}"
        statements += [
            f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, customer INT, note VARCHAR(200),"
            " amount DECIMAL(12,2), created DATETIME, payload VARBINARY(64), token CHAR(32),"
            " KEY (customer), UNIQUE KEY (token))",
            f"INSERT INTO {table} SELECT seq, seq % 5000 + 1,"
            " CONCAT('order ', seq, ' ', REPEAT('x', seq % 120)), seq / 7,"
            " TIMESTAMP'2026-01-01 00:00:00' - INTERVAL seq SECOND,"
            f" UNHEX(SHA2(CONCAT({index}, '/', seq), 256)), MD5(CONCAT({index}, '/', seq))"
            f" FROM seq_1_to_{per_table}",
        ]
    server.execute(*statements, database="bench")  # the seq_ tables need a database


# --- measuring one run ------------------------------------------------------------


def run_agent(action: str, manifest_path: Path, target: str = "") -> Sample:
    """``action`` in a fresh ``bench.agent_run`` process, its VmRSS sampled from
    ``/proc/PID/status`` every ``RSS_INTERVAL`` until it exits; the times are its own."""
    argv = [sys.executable, "-m", "bench.agent_run", action, str(manifest_path), target]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE)
    peak = 0
    while process.poll() is None:
        with contextlib.suppress(OSError, KeyError):  # it may exit between the two
            peak = max(peak, vmrss_kib(process.pid))
        time.sleep(RSS_INTERVAL)
    assert process.stdout is not None
    output = process.stdout.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"agent {action} exited {process.returncode}")
    sample = Sample(**json.loads(output.splitlines()[-1]))
    sample.rss_peak_mib = round(peak / 1024, 1)
    return sample


# --- what is compared ---------------------------------------------------------------


def manifest_spec(work: Path, url: Path, cache: Path, services: dict[str, Any]) -> dict[str, Any]:
    """A bench manifest: state and work below ``work``, one repository at ``url`` whose
    password is ``work/pw``, host ``bench``, the reference retention."""
    return {
        "version": 1,
        "work_dir": str(work / "work"),
        "agent": {"state_dir": str(work / "state"), "metrics_port": 0},
        "repository": {
            "url": str(url),
            "password_file": str(work / "pw"),
            "host": "bench",
            "cache_dir": str(cache),
        },
        "services": services,
        "retention": {"keep_within": "3w", "max_age": "31d"},
    }


class Bench:
    """One size of one shape: a populated source, a drill server and a raw server; the
    agent's repository (logical), its physical one, and the raw pipeline's."""

    def __init__(
        self, work: Path, source: MariaDB, drill_server: MariaDB, raw_server: MariaDB
    ) -> None:
        self.work = work
        self.raw_server = raw_server
        (work / "pw").write_text("bench\n")
        self.logical = self.write_manifest(source, drill_server, "logical")
        self.physical = self.write_manifest(source, drill_server, "physical")
        self.manifest = manifest.load(self.logical)
        options = self.manifest.service(SERVICE).options
        assert isinstance(options, MysqlOptions)
        # The raw pipeline dumps with the very argv the agent builds.
        self.dump_argv = dump_command(options, preflight(options))
        self.raw_repo = restic.Repository(
            url=str(work / "raw-repo"),
            password_file=str(work / "pw"),
            host="bench",
            cache_dir=str(work / "cache"),
        )
        self.raw_snapshot = ""
        self.expected_rows: dict[str, int] = {}  # set once the source is populated

    def write_manifest(self, source: MariaDB, drill_server: MariaDB, method: str) -> Path:
        """The agent's manifest for ``mysql.method: METHOD``, its repository ``METHOD-repo``."""
        work = self.work
        spec = manifest_spec(
            work,
            work / f"{method}-repo",
            work / "cache",
            {
                SERVICE: {
                    "type": "mysql",
                    "schedule": "0 22 * * *",
                    "rpo": "1d",
                    "rto": {"target": "2h", "limit": "4h"},
                    "mysql": {
                        "socket": source.socket,
                        "defaults_file": source.defaults_file(work / "src.cnf", "root", ""),
                        "client": "mariadb",
                        "method": method,
                    },
                }
            },
        )
        spec["drill"] = {
            "schedule": "0 6 * * 1",
            "scratch_dir": str(work / "drill"),
            "mysql": {
                "socket": drill_server.socket,
                "defaults_file": drill_server.defaults_file(work / "drill.cnf", "root", ""),
            },
        }
        path = work / f"{method}.yaml"
        path.write_text(yaml.safe_dump(spec))
        return path

    def fresh(self, side: str) -> None:
        """An empty repository for ``side`` (not timed)."""
        url = self.raw_repo.url if side == "raw" else str(self.work / f"{METHODS[side]}-repo")
        shutil.rmtree(url, ignore_errors=True)
        restic.init(replace(self.raw_repo, url=url))

    def raw_backup(self) -> None:
        """``mariadb-dump ... | restic backup --stdin``; remembers the snapshot."""
        dump = subprocess.Popen(self.dump_argv, stdout=subprocess.PIPE)
        argv = ["restic", "--json", "backup", "--host", "bench", "--quiet", "--stdin"]
        argv += ["--stdin-filename", "db.sql"]
        env = {**os.environ, **self.raw_repo.env()}
        done = subprocess.run(argv, stdin=dump.stdout, env=env, check=True, capture_output=True)
        assert dump.stdout is not None
        dump.stdout.close()
        if dump.wait() != 0:
            raise RuntimeError(f"mariadb-dump exited {dump.returncode}")
        summary = json.loads(done.stdout.splitlines()[-1])
        self.raw_snapshot = str(summary["snapshot_id"])

    def raw_restore(self) -> None:
        """``restic dump SNAPSHOT /db.sql | mariadb``, then the row counts (the database
        dropped before, untimed)."""
        env = {**os.environ, **self.raw_repo.env()}
        dump = subprocess.Popen(
            ["restic", "dump", self.raw_snapshot, "/db.sql"], env=env, stdout=subprocess.PIPE
        )
        client = ["mariadb", "--no-defaults", f"--socket={self.raw_server.socket}", "-uroot"]
        subprocess.run(client, stdin=dump.stdout, check=True)
        assert dump.stdout is not None
        dump.stdout.close()
        if dump.wait() != 0:
            raise RuntimeError(f"restic dump exited {dump.returncode}")
        self.check_rows(self.raw_server)

    def physical_restore(self) -> Sample:
        """The agent's restore of the newest copy into an empty directory, then what an
        operator does next: chown, start a server (the same flags) on it, count rows."""
        server = MariaDB(TUNED)
        try:
            sample = run_agent("restore", self.physical, str(server.datadir))
            started = time.monotonic()
            if os.geteuid() == 0:
                subprocess.run(["chown", "-R", "mysql:mysql", str(server.datadir)], check=True)
            server.start(initialize=False)
            self.check_rows(server)
            then = time.monotonic() - started
        finally:
            stop(server)
        return replace(sample, seconds=round(sample.seconds + then, 2), then_seconds=round(then, 2))

    def check_rows(self, server: MariaDB) -> None:
        """Count the rows of every table of ``bench``: they must be the source's."""
        counts = count_rows(server)
        if counts != self.expected_rows:
            raise RuntimeError(f"restored row counts {counts}, expected {self.expected_rows}")

    def backups(self, side: str) -> dict[str, Sample]:
        """A first backup into a fresh repository, then one of the unchanged database."""
        self.fresh(side)
        if side == "raw":
            return {"first": timed(self.raw_backup), "unchanged": timed(self.raw_backup)}
        path = self.logical if side == "agent" else self.physical
        return {"first": run_agent("backup", path), "unchanged": run_agent("backup", path)}

    def restore(self, side: str) -> dict[str, Sample]:
        """The drill, the physical restore, or the raw restore, of the newest backup."""
        if side == "agent":
            return {"restore": run_agent("drill", self.logical)}
        if side == "physical":
            return {"restore": self.physical_restore()}
        self.raw_server.execute("DROP DATABASE IF EXISTS bench")
        return {"restore": timed(self.raw_restore)}


def count_rows(server: MariaDB) -> dict[str, int]:
    """Rows of every table of ``bench``."""
    tables = server.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'bench'"
    )
    return {
        str(name): int(str(server.execute(f"SELECT COUNT(*) FROM bench.`{name}`")[0][0]))
        for (name,) in tables
    }


def run_pair(index: int, run: Callable[[str], dict[str, Sample]]) -> dict[str, dict[str, Sample]]:
    """Every side of one round: agent, physical, raw in even rounds and the reverse in
    odd ones, so that the agent and the raw tools take turns going first."""
    order = SIDES if index % 2 == 0 else SIDES[::-1]
    return {side: run(side) for side in order}


def summarize(pairs: list[dict[str, dict[str, Sample]]]) -> dict[str, Any]:
    """Per step: every sample per side, the medians, each side's ratio over raw per pair
    and its median, and each agent side's highest VmRSS peak."""
    summary: dict[str, Any] = {}
    sides = list(pairs[0])  # the sides measured: raw and one or more agent sides
    agents = [side for side in sides if side != "raw"]
    for step in pairs[0]["raw"]:
        samples = {side: [pair[side][step] for pair in pairs] for side in sides}
        ratios = {
            side: [
                round(s.seconds / r.seconds, 3)
                for s, r in zip(samples[side], samples["raw"], strict=True)
            ]
            for side in agents
        }
        summary[step] = {
            **{side: [asdict(sample) for sample in samples[side]] for side in sides},
            "median_seconds": {
                side: round(statistics.median(s.seconds for s in samples[side]), 3)
                for side in sides
            },
            "ratio_over_raw_per_pair": ratios,
            "median_ratio_over_raw": {
                side: round(statistics.median(ratios[side]), 3) for side in agents
            },
            "rss_peak_mib_max": {
                side: max(s.rss_peak_mib or 0.0 for s in samples[side]) for side in agents
            },
        }
    return summary


# --- profiling ------------------------------------------------------------------------


def profiled(run: Callable[[], object], top: int = 20) -> dict[str, list[str]]:
    """Run once under cProfile: the calling thread by wall time, sorted by cumulative
    time (where the time goes, step by step), every other thread (the pump's hashing
    and scanning thread, the stream readers) by its own CPU time (``thread_time``),
    sorted by own time. cProfile slows Python code down: read proportions."""
    threads: list[cProfile.Profile] = []
    thread_run = threading.Thread.run

    def run_profiled(thread: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)
        try:
            profile.runcall(thread_run, thread)
        finally:  # a thread still running at the end is left out: its clock is its own
            profile.create_stats()
            threads.append(profile)

    main = cProfile.Profile()
    with mock.patch.object(threading.Thread, "run", run_profiled):
        main.runcall(run)
    return {
        "calling_thread_wall_by_cumulative": stats_lines([main], "cumulative", top),
        "other_threads_cpu_by_own_time": stats_lines(threads, "tottime", top),
    }


def stats_lines(profiles: list[cProfile.Profile], key: str, top: int) -> list[str]:
    """The ``top`` rows of merged profiles, sorted by ``key``."""
    if not profiles:
        return []
    out = io.StringIO()
    pstats.Stats(*profiles, stream=out).sort_stats(key).print_stats(top)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    return [line.replace(str(Path.cwd()) + "/", "") for line in lines if line.strip()]


# --- the run ----------------------------------------------------------------------------


def version_of(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0]


def machine() -> dict[str, Any]:
    """What the numbers depend on: CPUs, memory, load, versions."""
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    total = next(line for line in meminfo if line.startswith("MemTotal:"))
    mariadbd = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin") or "mariadbd"
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(int(total.split()[1]) / 1024 / 1024, 1),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        ),
        "kernel": platform.release(),
        "mariadb": version_of([mariadbd, "--version"]),
        "restic": version_of(["restic", "version"]),
        "python": sys.version.split()[0],
        "commit": version_of(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"]),
    }


def calibrate(server: MariaDB, shape: Shape, dump_argv: list[str]) -> float:
    """Dump bytes per generated row of ``shape``, from a small dump."""
    populate(server, shape, CALIBRATION_ROWS)
    small = len(subprocess.run(dump_argv, capture_output=True, check=True).stdout)
    populate(server, shape, 2 * CALIBRATION_ROWS)
    large = len(subprocess.run(dump_argv, capture_output=True, check=True).stdout)
    return (large - small) / CALIBRATION_ROWS


def table_bytes(server: MariaDB) -> dict[str, int]:
    """Data + index bytes of each table of ``bench`` (from information_schema)."""
    rows = server.execute(
        "SELECT table_name, data_length + index_length FROM information_schema.tables"
        " WHERE table_schema = 'bench' ORDER BY 2 DESC"
    )
    return {str(name): int(str(size)) for name, size in rows}


def run_size(
    work: Path, servers: Mapping[str, MariaDB], shape: Shape, gb: float, pairs: int, profile: bool
) -> dict[str, Any]:
    """Populate for ``gb`` of dump, then the pairs; one entry of the results."""
    work.mkdir()
    populate(servers["source"], shape, CALIBRATION_ROWS)  # preflight wants a database
    bench = Bench(work, servers["source"], servers["drill"], servers["raw"])
    per_row = calibrate(servers["source"], shape, bench.dump_argv)
    rows = max(CALIBRATION_ROWS, round(gb * 1e9 / per_row))
    started = time.monotonic()
    populate(servers["source"], shape, rows)
    bench.expected_rows = count_rows(servers["source"])
    generated = time.monotonic() - started
    print(f"{shape.name} {gb} GB: {rows} rows generated in {generated:.0f} s", flush=True)
    backups = [run_pair(index, bench.backups) for index in range(pairs)]
    restores = [run_pair(index, bench.restore) for index in range(pairs)]
    service = bench.manifest.service(SERVICE)
    meta = record.select_dump(bench.manifest, service, "latest")[1]
    copied = manifest.load(bench.physical)
    copy = record.select_dump(copied, copied.service(SERVICE), "latest", "physical")[1]
    entry: dict[str, Any] = {
        "shape": shape.name,
        "size_gb_asked": gb,
        "rows_generated": rows,
        "dump_bytes": int(meta["bytes"]),
        "physical_bytes": int(copy["bytes"]),
        "rows_per_table": meta["tables"]["bench"],
        "dump_argv": bench.dump_argv,
        "table_bytes_in_server": table_bytes(servers["source"]),
        **summarize(backups),
        **summarize(restores),
    }
    if profile:
        bench.fresh("agent")
        entry["profile_agent_backup"] = profiled(lambda: ACTIONS["backup"](bench.manifest, ""))
        entry["profile_agent_drill"] = profiled(lambda: ACTIONS["drill"](bench.manifest, ""))
    shutil.rmtree(work, ignore_errors=True)
    return entry


STEPS = ("first", "unchanged", "restore")


def brief(entry: Mapping[str, Any]) -> str:
    """One line per size for the console."""
    parts = [f"{entry['shape']} {entry['dump_bytes'] / 1e6:.0f} MB:"]
    for step in STEPS:
        medians = entry[step]["median_seconds"]
        ratios = entry[step]["median_ratio_over_raw"]
        parts.append(
            f"{step} agent {medians['agent']} s ({ratios['agent']}x)"
            f" physical {medians['physical']} s ({ratios['physical']}x) raw {medians['raw']} s;"
        )
    peaks = {side: max(entry[step]["rss_peak_mib_max"][side] for step in STEPS) for side in METHODS}
    return " ".join([*parts, f"agent VmRSS peak {peaks} MiB"])


def table(report: Mapping[str, Any]) -> str:
    """The README's Markdown tables of a results file: the logical method, the physical
    one (medians in seconds, the median of the per-pair ratios with each pair's in
    brackets; restores as raw / agent, above 1 the agent is faster), and each agent
    process's VmRSS peak per size, with the most it grew during one run."""

    def timing(entry: Mapping[str, Any], step: str, side: str) -> list[str]:
        medians = entry[step]["median_seconds"]
        values = entry[step]["ratio_over_raw_per_pair"][side]
        if step == "restore":
            values = [1 / value for value in values]
        each = ", ".join(f"{value:.2f}" for value in values)
        return [
            f"{medians[side]:.1f} s / {medians['raw']:.1f} s",
            f"**{statistics.median(values):.2f}x** ({each})",
        ]

    def memory(entry: Mapping[str, Any], steps: tuple[str, ...], side: str) -> str:
        samples = [sample for step in steps for sample in entry[step][side]]
        peak = max(sample["rss_peak_mib"] for sample in samples)
        growth = max(sample["rss_peak_mib"] - sample["rss_before_mib"] for sample in samples)
        return f"{peak:.0f} MiB (+{growth:.0f})"

    tables = {
        "agent": [
            "| shape | dump | first backup: agent / raw | ratio | unchanged: agent / raw | ratio"
            " | drill / raw restore | raw / drill |",
            "|---|---|---|---|---|---|---|---|",
        ],
        "physical": [
            "| shape | dump / copy | first backup: physical / raw | ratio | unchanged:"
            " physical / raw | ratio | physical restore / raw restore | raw / physical |",
            "|---|---|---|---|---|---|---|---|",
        ],
        "memory": [
            "| shape | dump | agent VmRSS peak: logical backup | drill | physical backup"
            " | physical restore |",
            "|---|---|---|---|---|---|",
        ],
    }
    for entry in report["results"]:
        dump = f"{entry['dump_bytes'] / 1e6:.0f} MB"
        copy = f"{dump} / {entry['physical_bytes'] / 1e6:.0f} MB"
        for side in AGENT_SIDES:
            cells = [entry["shape"], copy if side == "physical" else dump]
            cells += [cell for step in STEPS for cell in timing(entry, step, side)]
            tables[side].append("| " + " | ".join(cells) + " |")
        cells = [entry["shape"], dump]
        cells += [memory(entry, steps, side) for side in AGENT_SIDES for steps in BY_MEMORY]
        tables["memory"].append("| " + " | ".join(cells) + " |")
    return "\n\n".join("\n".join(lines) for lines in tables.values())


BY_MEMORY = (("first", "unchanged"), ("restore",))  # a table column each, per agent side


def stop(server: MariaDB | None) -> None:
    """Stop one server; kill it if it does not stop (a run stopped mid-load once left
    its servers running), so that the others are stopped too."""
    if server is None:
        return
    try:
        server.stop()
    except Exception as exc:
        print(f"stopping {server.base}: {exc!r}; killing it", file=sys.stderr)
        if server.process is not None:
            server.process.kill()
            server.process.wait()


def write(output: Path, report: dict[str, Any], started: float, complete: bool) -> None:
    """The results so far: after each size (``complete`` false), and at the end."""
    report["complete"] = complete
    report["load_average_after"] = os.getloadavg()
    report["total_seconds"] = round(time.monotonic() - started)
    output.parent.mkdir(exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="0.25,0.5,1", help="GB of dump, comma-separated")
    # Two rounds: one round of the three sizes took 41 minutes on a shared 2-core machine.
    parser.add_argument("--pairs", type=int, default=2, help="rounds per size")
    parser.add_argument("--shapes", default="big", help=f"of {', '.join(SHAPES)}")
    parser.add_argument("--profile", action="store_true", help="cProfile at the smallest size")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="print --output as Markdown; no run")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.output.read_text())))
        return
    sizes = [float(size) for size in args.sizes.split(",")]
    shapes = [SHAPES[name] for name in args.shapes.split(",")]
    # A SIGTERM (a run stopped from outside) unwinds like ^C: the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The servers' directories go below the bench's own directory.
    work = Path(tempfile.mkdtemp(prefix="bench-restore-", dir="/tmp"))
    work.chmod(0o755)  # the servers run as mysql when the bench runs as root
    tempfile.tempdir = str(work)  # MariaDB() makes its directory with mkdtemp

    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.restore_bench", *sys.argv[1:]]),
        "machine": machine(),
        "load_average_before": os.getloadavg(),
        "server_flags": list(TUNED),
        "pairs": args.pairs,
        "agent": "mysql.backup, method logical (dump | pump: SHA-256, scan | restic backup"
        " --stdin; record); drill.drill (restic dump | parallel load into the drill server;"
        " SHA-256, row counts); each in a fresh bench.agent_run process",
        "physical": "mysql.backup, method physical (mariadb-backup --stream | pump: SHA-256,"
        " xbstream reader | restic backup --stdin; record); mysql.restore --to DIR (restic dump"
        " | reader | mbstream -x, SHA-256, mariadb-backup --prepare) in a fresh process, then"
        " chown, a server started on DIR, every table counted",
        "raw": "mariadb-dump (the agent's argv) | restic backup --stdin;"
        " restic dump SNAPSHOT /db.sql | mariadb into the raw server, every table counted",
        "results": [],
    }
    started = time.monotonic()
    servers = {name: MariaDB(TUNED) for name in ("drill", "raw")}
    try:
        for server in servers.values():
            server.start()
        for shape in shapes:
            for number, gb in enumerate(sizes):
                # A fresh source per size: a physical copy holds the whole server, and
                # its ibdata1 keeps the undo of every earlier load.
                stop(servers.pop("source", None))
                servers["source"] = MariaDB(TUNED)
                servers["source"].start()
                profile = args.profile and number == 0 and shape == shapes[0]
                entry = run_size(
                    work / f"{shape.name}-{gb}", servers, shape, gb, args.pairs, profile
                )
                report["results"].append(entry)
                print(brief(entry), flush=True)
                write(args.output, report, started, complete=False)
        write(args.output, report, started, complete=True)
        print(f"written to {args.output}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM: clean up anyway
        for server in servers.values():
            stop(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
