"""Speed of the Grafana and files jobs, retention and check against the raw tools,
side by side in one run (issue 14).

Each step is measured in K pairs whose order alternates (agent first in even pairs,
raw first in odd ones), with the helpers of ``bench.restore_bench`` (medians, per-pair
ratios, the agent's VmRSS sampled from /proc while it runs in this process):

- Grafana, first backup into an empty repository and a second of the unchanged
  installation: ``grafana.backup`` (online copy, integrity_check, SHA-256, counts,
  ``restic backup`` of the copy, grafana.ini, provisioning and plugins) against
  ``sqlite3 -readonly grafana.db .backup STAGE/grafana.db`` and ``restic backup`` of
  the same paths with a fixed staging directory;
- files, first backup, unchanged incremental and unchanged full: ``files.backup``
  against ``restic backup DIR`` with the same excludes (``--force`` for full);
- retention on a repository of a few hundred small snapshots (MySQL dumps with their
  meta records, Grafana, files; 90 days): ``maintenance.apply_retention`` against
  ``restic forget --group-by host --keep-within 21d --prune``, each on its own copy
  of the repository, which must be left with the same snapshots;
- check of that repository: ``maintenance.check_repositories`` against
  ``restic check --read-data-subset=1/4``.

The data is generated and deterministic. Repositories are local directories, as in
the integration tests. ``--profile`` adds one cProfile'd agent run per job.

    python -m bench.jobs_bench [--pairs 3] [--profile]
    python -m bench.jobs_bench --table

Writes bench/results/jobs.json. No assertion on any time: these are measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from tests import grafana_db
from tests.conftest import files_spec, service_spec

from backup_agent import maintenance, manifest, restic
from backup_agent.jobs import files, grafana
from backup_agent.manifest import Manifest
from bench.agent_run import Sample, timed, vmrss_kib
from bench.restore_bench import (
    RSS_INTERVAL,
    machine,
    manifest_spec,
    profiled,
    run_pair,
    summarize,
    version_of,
)

RESULTS = Path(__file__).parent / "results" / "jobs.json"
SEED = 20260105
HOST = "bench"
EXCLUDES = ("*.tmp", "cache")
HISTORY_DAYS = 90
HISTORY_WORKERS = 4
KEEP_WITHIN = "21d"  # the manifest's retention.keep_within, in restic's words
PARTS = ("grafana", "files", "retention", "check")


# --- the generated data --------------------------------------------------------------


def generator(stream: int = 0) -> random.Random:
    """A seeded generator of the bytes the bench writes: the same data in each run."""
    return random.Random(SEED + stream)  # noqa: S311 (test data, not a secret)


def make_grafana(root: Path) -> grafana_db.GrafanaDirs:
    """A Grafana installation: grafana.db with 3000 dashboards of 40 panels (about
    38 MB), and beside the small plugin a backend plugin's 32 MB binary."""
    grafana_db.UIDS.seed(SEED)
    dirs = grafana_db.make_grafana_dirs(root / "data", root / "conf")
    with closing(grafana_db.connect(dirs.database)) as db:
        grafana_db.populate(
            db, folders=40, dashboards=3000, data_sources=8, alert_rules=300, panels=40
        )
    backend = dirs.plugins_dir / "bench-backend-datasource"
    backend.mkdir()
    (backend / "gpx_bench_linux_amd64").write_bytes(generator().randbytes(32 << 20))
    return dirs


def make_tree(root: Path) -> None:
    """About 3000 files in 60 directories, half hex text and half random bytes: 85%
    of 1-32 KiB, 14% of 32-512 KiB, 1% of 2-8 MiB; plus ``*.tmp`` files and ``cache``
    directories the excludes leave out."""
    rng = generator()
    for number in range(3000):
        directory = root / f"project-{number % 12}" / f"part-{number % 5}"
        directory.mkdir(parents=True, exist_ok=True)
        draw = rng.random()
        if draw < 0.85:
            size = rng.randint(1 << 10, 32 << 10)
        elif draw < 0.99:
            size = rng.randint(32 << 10, 512 << 10)
        else:
            size = rng.randint(2 << 20, 8 << 20)
        text = number % 2 == 0
        data = rng.randbytes(size // 2).hex().encode() if text else rng.randbytes(size)
        suffix = ".tmp" if number % 40 == 0 else (".txt" if text else ".bin")
        (directory / f"file-{number}{suffix}").write_bytes(data)
        if number % 250 == 0:
            cache = directory.parent / "cache"
            cache.mkdir(exist_ok=True)
            (cache / f"blob-{number}").write_bytes(rng.randbytes(1 << 20))


def tree_bytes(root: Path) -> tuple[int, int]:
    """Files and bytes below ``root``."""
    sizes = [path.stat().st_size for path in root.rglob("*") if path.is_file()]
    return len(sizes), sum(sizes)


def make_history(repo: restic.Repository, end: datetime) -> int:
    """HISTORY_DAYS days of small snapshots ending at ``end``, HISTORY_WORKERS days at a
    time (a restic run mostly waits: on its lock, on the key's KDF). Returns how many."""
    with ThreadPoolExecutor(HISTORY_WORKERS) as pool:
        return sum(pool.map(partial(make_day, repo, end), range(HISTORY_DAYS)))


def make_day(repo: restic.Repository, end: datetime, back: int) -> int:
    """The snapshots of the day ``back`` days before ``end``: a dump of ``db`` and its
    meta record, ``files`` (full on Sundays), ``grafana`` every other day, minutes
    apart. Days before the last are an hour earlier, so that no snapshot sits on a
    service's keep-within boundary (nor on restic's, from the newest snapshot)."""
    rng = generator(back)
    at = end - timedelta(days=back, hours=0 if back == 0 else 1)
    dump = stdin_snapshot(repo, "db.sql", rng.randbytes(128 << 10), at, "db", "full")
    record = json.dumps({"bytes": 128 << 10, "day": back}).encode()
    stdin_snapshot(repo, "db.meta.json", record, at + timedelta(seconds=30), "db", "meta", of=dump)
    kind = "full" if at.weekday() == 6 else "incremental"
    files_at = at + timedelta(minutes=5)
    stdin_snapshot(repo, "files.tar", rng.randbytes(32 << 10), files_at, "files", kind)
    if back % 2:
        return 3
    grafana_at = at + timedelta(minutes=10)
    stdin_snapshot(repo, "grafana.db", rng.randbytes(64 << 10), grafana_at, "grafana", "full")
    return 4


def stdin_snapshot(
    repo: restic.Repository,
    name: str,
    data: bytes,
    at: datetime,
    service: str,
    kind: str,
    **more: str,
) -> str:
    """One snapshot of ``data`` as ``/name``, dated ``at``, tagged like the agent's."""
    tags = restic.tag_args({"service": service, "kind": kind, **more})
    argv = ["restic", "--json", "backup", "--quiet", "--host", HOST, *tags]
    argv += ["--time", at.strftime("%Y-%m-%d %H:%M:%S"), "--stdin", "--stdin-filename", name]
    done = subprocess.run(argv, input=data, env=env_of(repo), capture_output=True, check=True)
    return str(json.loads(done.stdout.splitlines()[-1])["snapshot_id"])


def env_of(repo: restic.Repository) -> dict[str, str]:
    """restic's environment for ``repo``; TZ=UTC for ``--time``."""
    return {**os.environ, **repo.env(), "TZ": "UTC"}


def raw(argv: Sequence[str], repo: restic.Repository | None = None) -> None:
    """Run a raw tool to completion (restic with ``repo``'s environment)."""
    env = env_of(repo) if repo else None
    subprocess.run(argv, env=env, check=True, capture_output=True)


# --- the manifests ---------------------------------------------------------------------


def write_manifest(work: Path, name: str, services: dict[str, Any]) -> Manifest:
    """A manifest whose services share the repository ``work/agent-NAME``; ``work/pw``
    is the password of every repository below ``work``."""
    (work / "pw").write_text("bench\n")
    spec = manifest_spec(work, work / f"agent-{name}", work / f"cache-agent-{name}", services)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return manifest.load(path)


def repository(work: Path, name: str) -> restic.Repository:
    """A repository ``work/NAME`` (the raw side's, and the history)."""
    return restic.Repository(
        url=str(work / name),
        password_file=str(work / "pw"),
        host=HOST,
        cache_dir=str(work / f"cache-{name}"),
    )


def fresh(repo: restic.Repository) -> None:
    """An empty repository at ``repo.url`` (not timed)."""
    shutil.rmtree(repo.url, ignore_errors=True)
    restic.init(repo)


# --- what is compared --------------------------------------------------------------------


class GrafanaBench:
    """The Grafana job against ``sqlite3 .backup`` and ``restic backup``."""

    def __init__(self, work: Path) -> None:
        self.dirs = make_grafana(work / "grafana")
        spec = {
            "data_dir": str(self.dirs.data_dir),
            "config_file": str(self.dirs.config_file),
            "provisioning_dir": str(self.dirs.provisioning_dir),
        }
        self.manifest = write_manifest(work, "grafana", {"grafana": service_spec("grafana", spec)})
        self.service = self.manifest.service("grafana")
        self.repo = self.manifest.repository_for("grafana")
        self.raw_repo = repository(work, "raw-grafana")
        self.stage = work / "raw-stage"

    def describe(self) -> dict[str, Any]:
        return {
            "database_bytes": self.dirs.database.stat().st_size,
            "counts": grafana.count_objects(self.dirs.database),
            "plugins_bytes": tree_bytes(self.dirs.plugins_dir)[1],
            "agent": "grafana.backup: online copy (backup API) into a new staging directory,"
            " integrity_check, SHA-256, counts, restic backup of it with grafana.ini,"
            " provisioning and plugins",
            "raw": "sqlite3 -readonly grafana.db '.backup STAGE/grafana.db' (a fixed STAGE),"
            " restic backup STAGE grafana.ini provisioning plugins",
        }

    def agent(self) -> None:
        grafana.backup(self.manifest, self.service, "full")

    def raw(self) -> None:
        """``sqlite3 .backup`` into a fixed staging directory, then ``restic backup``."""
        shutil.rmtree(self.stage, ignore_errors=True)
        self.stage.mkdir()
        target = self.stage / grafana.DATABASE_NAME
        raw(["sqlite3", "-readonly", str(self.dirs.database), f".backup '{target}'"])
        dirs = self.dirs
        paths = [self.stage, dirs.config_file, dirs.provisioning_dir, dirs.plugins_dir]
        argv = ["restic", "--json", "backup", "--quiet", "--host", HOST, *map(str, paths)]
        raw(argv, self.raw_repo)

    def run(self, side: str) -> dict[str, Sample]:
        """A first backup into a fresh repository, then one of the unchanged data."""
        agent = side == "agent"
        fresh(self.repo if agent else self.raw_repo)
        backup = self.agent if agent else self.raw
        return {"first": measure(backup, agent), "unchanged": measure(backup, agent)}


# The files steps: (step, the job's kind, the raw side's extra flags).
FILES_STEPS = (
    ("first", "incremental", ()),
    ("incremental", "incremental", ()),
    ("full", "full", ("--force",)),
)


class FilesBench:
    """The files job against ``restic backup DIR`` with the same excludes."""

    def __init__(self, work: Path) -> None:
        self.tree = work / "tree"
        make_tree(self.tree)
        spec = files_spec([str(self.tree)])
        spec["files"]["exclude"] = list(EXCLUDES)
        self.manifest = write_manifest(work, "files", {"files": spec})
        self.service = self.manifest.service("files")
        self.repo = self.manifest.repository_for("files")
        self.raw_repo = repository(work, "raw-files")

    def describe(self) -> dict[str, Any]:
        count, size = tree_bytes(self.tree)
        return {
            "files": count,
            "bytes": size,
            "excludes": list(EXCLUDES),
            "agent": "files.backup: first (incremental, no parent yet), incremental (the"
            " newest trusted snapshot as --parent), full (--force)",
            "raw": "restic backup --exclude ... DIR (restic picks the parent), --force for full",
        }

    def agent(self, kind: str) -> None:
        files.backup(self.manifest, self.service, kind)

    def raw(self, *flags: str) -> None:
        excludes = [arg for pattern in EXCLUDES for arg in ("--exclude", pattern)]
        argv = ["restic", "--json", "backup", "--quiet", "--host", HOST, *excludes, *flags]
        raw([*argv, str(self.tree)], self.raw_repo)

    def run(self, side: str) -> dict[str, Sample]:
        """First backup into a fresh repository, unchanged incremental, unchanged full."""
        agent = side == "agent"
        fresh(self.repo if agent else self.raw_repo)
        return {
            step: measure(partial(self.agent, kind) if agent else partial(self.raw, *flags), agent)
            for step, kind, flags in FILES_STEPS
        }


class MaintenanceBench:
    """Retention and check of one repository of HISTORY_DAYS days of snapshots; each
    side works on its own copy of it."""

    def __init__(self, work: Path) -> None:
        services = {
            "db": service_spec("mysql", {"socket": "none", "defaults_file": "none"}),
            "files": files_spec([str(work / "none")]),
            "grafana": service_spec("grafana", {"data_dir": str(work / "none")}),
        }
        self.manifest = write_manifest(work, "history", services)
        self.repo = self.manifest.repository_for("db")
        self.raw_repo = repository(work, "raw-history")
        self.history = repository(work, "history")
        self.now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        restic.init(self.history)
        started = time.monotonic()
        self.snapshots = make_history(self.history, self.now - timedelta(hours=1))
        self.generated_seconds = round(time.monotonic() - started, 1)
        self.left: dict[str, list[tuple[str, tuple[str, ...]]]] = {}

    def describe(self) -> dict[str, Any]:
        return {
            "snapshots": self.snapshots,
            "days": HISTORY_DAYS,
            "stored_bytes": restic.stats(self.history).total_size,
            "generated_in_seconds": self.generated_seconds,
        }

    def copy(self, repo: restic.Repository) -> None:
        """``repo`` becomes a copy of the history, with an empty cache (not timed)."""
        shutil.rmtree(repo.url, ignore_errors=True)
        shutil.rmtree(str(repo.cache_dir), ignore_errors=True)
        shutil.copytree(self.history.url, repo.url)

    def agent_retention(self) -> None:
        maintenance.apply_retention(self.manifest, self.now, dry_run=False)

    def raw_retention(self) -> None:
        argv = ["restic", "forget", "--group-by", "host", "--keep-within", KEEP_WITHIN]
        raw([*argv, "--prune"], self.raw_repo)

    def retention(self, side: str) -> dict[str, Sample]:
        """Retention on a fresh copy; what is left is remembered, to compare."""
        agent = side == "agent"
        repo = self.repo if agent else self.raw_repo
        self.copy(repo)
        sample = measure(self.agent_retention if agent else self.raw_retention, agent)
        self.left[side] = [(s.time.isoformat(), s.tags) for s in restic.snapshots(repo)]
        return {"retention": sample}

    def retained(self) -> dict[str, Any]:
        """What retention left on each side (the same snapshots, or the run fails)."""
        if self.left["agent"] != self.left["raw"]:
            raise RuntimeError(f"retention left different snapshots: {self.left}")
        return {
            "snapshots_left": len(self.left["agent"]),
            "agent": "maintenance.apply_retention: restic snapshots, the plan per service"
            " (trust, meta records follow their dump), restic forget IDS, restic prune",
            "raw": f"restic forget --group-by host --keep-within {KEEP_WITHIN} --prune",
        }

    def agent_check(self) -> None:
        maintenance.check_repositories(self.manifest, 0)  # run 0: subset 1/4

    def raw_check(self) -> None:
        raw(["restic", "check", "--read-data-subset=1/4"], self.raw_repo)

    def check(self, side: str) -> dict[str, Sample]:
        """The check of a fresh copy of the history."""
        agent = side == "agent"
        self.copy(self.repo if agent else self.raw_repo)
        return {"check": measure(self.agent_check if agent else self.raw_check, agent)}


# --- the run ---------------------------------------------------------------------------


def measured(run: Callable[[str], dict[str, Sample]], pairs: int) -> dict[str, Any]:
    """The pairs of one part, with the load average before them and their duration."""
    started = time.monotonic()
    entry: dict[str, Any] = {"load_average_before": os.getloadavg()}
    entry.update(summarize([run_pair(index, run) for index in range(pairs)]))
    entry["seconds"] = round(time.monotonic() - started)
    return entry


def measure(run: Callable[[], object], agent: bool) -> Sample:
    """Run once in this process (``timed``); for the agent also its VmRSS peak, sampled
    from ``/proc/self/status`` by a thread while it runs (these jobs are small enough
    to run in the bench process, whose memory does not grow between their steps)."""
    if not agent:
        return timed(run)
    before = vmrss_kib()
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(RSS_INTERVAL):
            peak[0] = max(peak[0], vmrss_kib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = timed(run)
    finally:
        stop.set()
        sampler.join()
    result.rss_peak_mib = round(max(peak[0], vmrss_kib()) / 1024, 1)
    result.rss_before_mib = round(before / 1024, 1)
    return result


def restic_floor(repo: restic.Repository, runs: int = 5) -> float:
    """The median wall time of ``restic cat config``: what any restic run costs here
    before it does anything (restic's start, the key's KDF, the config's download)."""
    argv = ["restic", "cat", "config"]
    return float(statistics.median(timed(partial(raw, argv, repo)).seconds for _ in range(runs)))


def run_parts(work: Path, pairs: int, profile: bool) -> dict[str, Any]:
    """Each part in its own directory below ``work``, removed after it; with
    ``profile``, one cProfile'd agent run after the pairs."""
    results: dict[str, Any] = {}

    def part(name: str, entry: dict[str, Any], agent: Callable[[], object]) -> None:
        if profile:
            entry["profile_agent"] = profiled(agent)
        results[name] = entry
        print(brief(name, entry), flush=True)

    (work / "grafana").mkdir()
    job = GrafanaBench(work / "grafana")
    part("grafana", {**job.describe(), **measured(job.run, pairs)}, job.agent)
    shutil.rmtree(work / "grafana")

    (work / "files").mkdir()
    tree = FilesBench(work / "files")
    part(
        "files",
        {**tree.describe(), **measured(tree.run, pairs)},
        partial(tree.agent, "incremental"),
    )
    shutil.rmtree(work / "files")

    (work / "history").mkdir()
    history = MaintenanceBench(work / "history")
    described = {**history.describe(), "restic_open_seconds": restic_floor(history.history)}
    checks = {
        "agent": "maintenance.check_repositories (restic check --read-data-subset=1/4)",
        "raw": "restic check --read-data-subset=1/4",
    }
    part("check", {**described, **checks, **measured(history.check, pairs)}, history.agent_check)
    entry = measured(history.retention, pairs)
    history.copy(history.repo)  # a fresh copy for the profiled run
    part("retention", {**described, **history.retained(), **entry}, history.agent_retention)
    return results


def steps(entry: Mapping[str, Any]) -> list[str]:
    """The measured steps of one part's entry, in order."""
    return [key for key, value in entry.items() if isinstance(value, dict) and "agent" in value]


def brief(part: str, entry: Mapping[str, Any]) -> str:
    """One line per part for the console."""
    parts = [f"{part}:"]
    for step in steps(entry):
        medians = entry[step]["median_seconds"]
        ratio = entry[step]["median_ratio_over_raw"]["agent"]
        parts.append(f"{step} agent {medians['agent']} s raw {medians['raw']} s ({ratio}x);")
    return " ".join(parts)


def what(part: str, entry: Mapping[str, Any]) -> str:
    """The data a part ran on, for the table."""
    if part == "grafana":
        return (
            f"grafana.db {entry['database_bytes'] / 1e6:.0f} MB"
            f" ({entry['counts']['dashboards']} dashboards),"
            f" plugins {entry['plugins_bytes'] / 1e6:.0f} MB"
        )
    if part == "files":
        return f"{entry['files']} files, {entry['bytes'] / 1e6:.0f} MB"
    return f"{entry['snapshots']} snapshots, {entry['stored_bytes'] / 1e6:.0f} MB stored"


def table(report: Mapping[str, Any]) -> str:
    """The README's Markdown table: per step the medians, the median of the per-pair
    ratios agent / raw (each pair's in brackets), and this process's highest VmRSS
    during the agent's runs with the most it grew during one run."""
    lines = [
        "| job | data | step | agent / raw (median) | ratio agent / raw | agent VmRSS peak |",
        "|---|---|---|---|---|---|",
    ]
    for part in PARTS:
        entry = report["results"][part]
        for step in steps(entry):
            result = entry[step]
            medians = result["median_seconds"]
            pairs = ", ".join(f"{r:.2f}" for r in result["ratio_over_raw_per_pair"]["agent"])
            peak = max(s["rss_peak_mib"] for s in result["agent"])
            growth = max(s["rss_peak_mib"] - s["rss_before_mib"] for s in result["agent"])
            cells = [
                part,
                what(part, entry),
                step,
                f"{medians['agent']:.2f} s / {medians['raw']:.2f} s",
                f"**{result['median_ratio_over_raw']['agent']:.2f}x** ({pairs})",
                f"{peak:.0f} MiB (+{growth:.0f})",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="one cProfile'd agent run per job")
    parser.add_argument("--note", default="", help="recorded in the results (the machine's load)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--table", action="store_true", help="print --output as Markdown; no run")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.output.read_text())))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: the cleanup runs
    work = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    report: dict[str, Any] = {
        "command": " ".join(["python -m bench.jobs_bench", *sys.argv[1:]]),
        "note": args.note,
        "machine": {**machine(), "sqlite3": version_of(["sqlite3", "--version"])},
        "load_average_before": os.getloadavg(),
        "pairs": args.pairs,
        "repositories": "local directories (no rest-server)",
    }
    started = time.monotonic()
    try:
        report["results"] = run_parts(work, args.pairs, args.profile)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        shutil.rmtree(work, ignore_errors=True)
    report["load_average_after"] = os.getloadavg()
    report["total_seconds"] = round(time.monotonic() - started)
    args.output.parent.mkdir(exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
