"""Speed of the MySQL job against the raw tools, side by side in one run (issue 14).

Per database size, each measured in K pairs whose order alternates (agent first in
even pairs, raw first in odd ones):

- first backup into an empty repository: ``mysql.backup`` against
  ``mariadb-dump FLAGS | restic backup --stdin`` with the agent's own dump argv;
- second backup of the unchanged database into the same repository (agent vs raw);
- the logical drill (``drill.drill``) against ``restic dump SNAPSHOT /db.sql |
  mariadb``, each into its own server started with the same TUNED flags.

The database is generated and deterministic, mostly one big table (``--shapes big``),
or the same bytes spread over four equal tables (``spread``); its row counts come from
the wanted dump size (``--sizes``, GB) and a calibration dump. The agent runs in this
process: its memory is sampled from ``/proc/self/status`` while it runs (restic and
the clients are other processes). CPU seconds of this process and of the waited-for
children are recorded per run. ``--profile`` adds one cProfile'd agent backup and
drill at the smallest size, outside the pairs.

    python -m bench.restore_bench [--sizes 0.25,0.5,1] [--pairs 3] [--shapes big]
    python -m bench.restore_bench --sizes 0.02 --pairs 1      # a smoke run

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
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import yaml
from tests.mariadb_server import MariaDB

from backup_agent import drill, manifest, restic
from backup_agent.jobs import mysql
from backup_agent.jobs.mysql import record
from backup_agent.jobs.mysql.dump import dump_command
from backup_agent.jobs.mysql.preflight import preflight
from backup_agent.manifest import Manifest, MysqlOptions

RESULTS = Path(__file__).parent / "results" / "restore.json"
# Every server of the bench (source, drill target, raw target) runs with these.
TUNED = (
    "--innodb-buffer-pool-size=2G",
    "--innodb-log-file-size=512M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--skip-log-bin",
)
CALIBRATION_ROWS = 20_000
RSS_INTERVAL = 0.05  # seconds between two samples of this process's VmRSS
SIDES = ("agent", "raw")
BACKUPS = ("first", "unchanged")


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


@dataclass
class Sample:
    """One timed run: wall seconds, CPU of this process and of its waited-for children,
    and (agent runs) this process's peak VmRSS while it ran."""

    seconds: float
    cpu_self: float
    cpu_children: float
    rss_peak_mib: float | None = None
    rss_before_mib: float | None = None


def proc_status(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (VmRSS, VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


@contextlib.contextmanager
def rss_peak() -> Iterator[list[int]]:
    """Sample this process's VmRSS in a thread while the block runs; the list holds
    the peak (KiB) afterwards. VmHWM cannot do this: it never goes down."""
    peak = [proc_status("VmRSS")]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(RSS_INTERVAL):
            peak[0] = max(peak[0], proc_status("VmRSS"))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], proc_status("VmRSS"))


def measure(run: Callable[[], object], agent: bool) -> Sample:
    """Run once; wall and CPU seconds, and the memory peak of an agent run."""
    before_self = resource.getrusage(resource.RUSAGE_SELF)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = proc_status("VmRSS")
    with rss_peak() as peak:
        started = time.monotonic()
        run()
        seconds = time.monotonic() - started
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Sample(
        round(seconds, 2),
        round(cpu(after_self) - cpu(before_self), 2),
        round(cpu(after_children) - cpu(before_children), 2),
        round(peak[0] / 1024, 1) if agent else None,
        round(before / 1024, 1) if agent else None,
    )


def cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


# --- what is compared ---------------------------------------------------------------


class Bench:
    """One size of one shape: a populated source, a drill server and a raw server."""

    def __init__(
        self, work: Path, source: MariaDB, drill_server: MariaDB, raw_server: MariaDB
    ) -> None:
        self.work = work
        self.raw_server = raw_server
        (work / "pw").write_text("bench\n")
        self.manifest = self.write_manifest(source, drill_server)
        self.service = self.manifest.service("db")
        options = self.service.options
        assert isinstance(options, MysqlOptions)
        # The raw pipeline dumps with the very argv the agent builds.
        self.dump_argv = dump_command(options, preflight(options))
        self.repo = self.manifest.repository_for("db")
        self.raw_repo = restic.Repository(
            url=str(work / "raw-repo"),
            password_file=str(work / "pw"),
            host="bench",
            cache_dir=str(work / "cache"),
        )
        self.raw_snapshot = ""

    def write_manifest(self, source: MariaDB, drill_server: MariaDB) -> Manifest:
        work = self.work
        spec = {
            "version": 1,
            "work_dir": str(work / "work"),
            "agent": {"state_dir": str(work / "state"), "metrics_port": 0},
            "repository": {
                "url": str(work / "agent-repo"),
                "password_file": str(work / "pw"),
                "host": "bench",
                "cache_dir": str(work / "cache"),
            },
            "services": {
                "db": {
                    "type": "mysql",
                    "schedule": "0 22 * * *",
                    "rpo": "1d",
                    "rto": {"target": "2h", "limit": "4h"},
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
        return manifest.load(work / "manifest.yaml")

    @staticmethod
    def fresh(repo: restic.Repository) -> None:
        """An empty repository at ``repo.url`` (not timed)."""
        shutil.rmtree(repo.url, ignore_errors=True)
        restic.init(repo)

    def agent_backup(self) -> None:
        mysql.backup(self.manifest, self.service, "full")

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

    def agent_drill(self) -> None:
        outcome = drill.drill(self.manifest, self.service)
        if not outcome.passed:
            raise RuntimeError(f"the drill failed: {outcome.error}")

    def raw_restore(self) -> None:
        """``restic dump SNAPSHOT /db.sql | mariadb`` (the database dropped before,
        untimed, by ``reset_raw``)."""
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

    def reset_raw(self) -> None:
        self.raw_server.execute("DROP DATABASE IF EXISTS bench")

    def backups(self, side: str) -> dict[str, Sample]:
        """A first backup into a fresh repository, then one of the unchanged database."""
        agent = side == "agent"
        self.fresh(self.repo if agent else self.raw_repo)
        run = self.agent_backup if agent else self.raw_backup
        return {"first": measure(run, agent), "unchanged": measure(run, agent)}

    def restore(self, side: str) -> dict[str, Sample]:
        """The drill, or the raw restore, of the repository's newest dump."""
        if side == "agent":
            return {"restore": measure(self.agent_drill, True)}
        self.reset_raw()
        return {"restore": measure(self.raw_restore, False)}


def run_pair(index: int, run: Callable[[str], dict[str, Sample]]) -> dict[str, dict[str, Sample]]:
    """Both sides of one pair, agent first in even pairs and raw first in odd ones."""
    order = SIDES if index % 2 == 0 else SIDES[::-1]
    return {side: run(side) for side in order}


def summarize(pairs: list[dict[str, dict[str, Sample]]]) -> dict[str, Any]:
    """Per step: every sample, the medians, and the agent/raw ratio of each pair."""
    steps = list(pairs[0]["agent"])
    summary: dict[str, Any] = {}
    for step in steps:
        agent = [pair["agent"][step] for pair in pairs]
        raw = [pair["raw"][step] for pair in pairs]
        ratios = [round(a.seconds / r.seconds, 3) for a, r in zip(agent, raw, strict=True)]
        summary[step] = {
            "agent": [asdict(sample) for sample in agent],
            "raw": [asdict(sample) for sample in raw],
            "median_seconds": {
                "agent": statistics.median(s.seconds for s in agent),
                "raw": statistics.median(s.seconds for s in raw),
            },
            "ratio_agent_over_raw_per_pair": ratios,
            "median_ratio_agent_over_raw": statistics.median(ratios),
            "agent_rss_peak_mib_max": max(s.rss_peak_mib or 0.0 for s in agent),
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
    generated = time.monotonic() - started
    print(f"{shape.name} {gb} GB: {rows} rows generated in {generated:.0f} s", flush=True)
    backups = [run_pair(index, bench.backups) for index in range(pairs)]
    restores = [run_pair(index, bench.restore) for index in range(pairs)]
    meta = record.select_dump(bench.manifest, bench.service, "latest")[1]
    entry: dict[str, Any] = {
        "shape": shape.name,
        "size_gb_asked": gb,
        "rows_generated": rows,
        "dump_bytes": int(meta["bytes"]),
        "rows_per_table": meta["tables"]["bench"],
        "dump_argv": bench.dump_argv,
        "table_bytes_in_server": table_bytes(servers["source"]),
        **summarize(backups),
        **summarize(restores),
    }
    if profile:
        bench.fresh(bench.repo)
        entry["profile_agent_backup"] = profiled(bench.agent_backup)
        entry["profile_agent_drill"] = profiled(bench.agent_drill)
    shutil.rmtree(work, ignore_errors=True)
    return entry


def brief(entry: Mapping[str, Any]) -> str:
    """One line per size for the console."""
    parts = [f"{entry['shape']} {entry['dump_bytes'] / 1e6:.0f} MB:"]
    for step in ("first", "unchanged", "restore"):
        medians = entry[step]["median_seconds"]
        parts.append(
            f"{step} agent {medians['agent']} s raw {medians['raw']} s"
            f" ({entry[step]['median_ratio_agent_over_raw']}x);"
        )
    peak = max(entry[step]["agent_rss_peak_mib_max"] for step in ("first", "unchanged", "restore"))
    return " ".join([*parts, f"agent RSS peak {peak} MiB"])


def table(report: Mapping[str, Any]) -> str:
    """The README's Markdown table of a results file: medians (seconds), the median of
    the per-pair ratios with each pair's in brackets, and this process's highest VmRSS
    during the agent's backups and drills, with the most it grew during one run."""

    def ratios(entry: Mapping[str, Any], step: str, invert: bool = False) -> str:
        pairs = entry[step]["ratio_agent_over_raw_per_pair"]
        values = [1 / ratio if invert else ratio for ratio in pairs]
        each = ", ".join(f"{value:.2f}" for value in values)
        return f"**{statistics.median(values):.2f}x** ({each})"

    def memory(entry: Mapping[str, Any], steps: tuple[str, ...]) -> str:
        samples = [sample for step in steps for sample in entry[step]["agent"]]
        peak = max(sample["rss_peak_mib"] for sample in samples)
        growth = max(sample["rss_peak_mib"] - sample["rss_before_mib"] for sample in samples)
        return f"{peak:.0f} MiB (+{growth:.0f})"

    lines = [
        "| shape | dump | first backup: agent / raw | ratio | unchanged: agent / raw | ratio"
        " | drill / raw restore | raw / drill | agent VmRSS peak: backup / drill |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in report["results"]:
        cells = [entry["shape"], f"{entry['dump_bytes'] / 1e6:.0f} MB"]
        for step in ("first", "unchanged", "restore"):
            medians = entry[step]["median_seconds"]
            cells.append(f"{medians['agent']:.1f} s / {medians['raw']:.1f} s")
            cells.append(ratios(entry, step, invert=step == "restore"))
        cells.append(" / ".join(memory(entry, steps) for steps in (BACKUPS, ("restore",))))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stop(server: MariaDB) -> None:
    """Stop one server; kill it if it does not stop (a run stopped mid-load once left
    its servers running), so that the others are stopped too."""
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
    report["agent_vmhwm_mib_at_end"] = round(proc_status("VmHWM") / 1024, 1)
    report["total_seconds"] = round(time.monotonic() - started)
    output.parent.mkdir(exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="0.25,0.5,1", help="GB of dump, comma-separated")
    parser.add_argument("--pairs", type=int, default=3)
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
        "agent": "mysql.backup (dump | pump: SHA-256, scan | restic backup --stdin; record);"
        " drill.drill (restic dump | parallel load into the drill server; SHA-256, row counts)",
        "raw": "mariadb-dump (the agent's argv) | restic backup --stdin;"
        " restic dump SNAPSHOT /db.sql | mariadb into the raw server",
        "results": [],
    }
    started = time.monotonic()
    servers = {name: MariaDB(TUNED) for name in ("source", "drill", "raw")}
    try:
        for server in servers.values():
            server.start()
        for shape in shapes:
            for number, gb in enumerate(sizes):
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
