"""The long-lived agent for real: cron slots every minute, catch-up, SIGTERM, Prometheus.

One scenario, in order, because each step needs real minutes to pass:
1. a new agent (no state) backs up both services at start-up, one after the other
   (the second one's wait is counted);
2. stopped across a slot, the agent catches up once per service at start-up;
3. SIGTERM during a backup: the agent exits 0 promptly, restic leaves no lock and no
   snapshot;
4. a real Prometheus scrapes the agent and evaluates the shipped rules: the freshness
   alert fires when a service passes its RPO and clears after the next good run.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from backup_agent import restic
from tests.agent_process import Agent, metric
from tests.conftest import files_spec, need, wait_for
from tests.net import free_port
from tests.prometheus import Prometheus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]  # minutes of real cron slots


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path]:
    small = tmp_path / "src-b"
    small.mkdir()
    (small / "notes.txt").write_text("hello\n" * 1000)
    big = tmp_path / "src-a"
    big.mkdir()
    with (big / "blob.bin").open("wb") as handle:  # slow enough to interrupt mid-run
        for _ in range(48):
            handle.write(os.urandom(8 << 20))
    return small, big


@pytest.fixture
def agent(
    tmp_path: Path, repository: restic.Repository, sources: tuple[Path, Path]
) -> Iterator[Agent]:
    small, big = sources
    port = free_port()
    data = {
        "version": 1,
        "repository": {
            "url": repository.url,
            "password_file": repository.password_file,
            "host": repository.host,
            "cache_dir": repository.cache_dir,
        },
        "agent": {
            "state_dir": str(tmp_path / "state"),
            "metrics_port": port,
            "metrics_address": "127.0.0.1",
        },
        "services": {
            # a: big and slow (a full re-read every minute), so it can be interrupted.
            "a": files_spec(
                [str(big)], {"incremental": "0 0 1 1 *", "full": "* * * * *"}, "10m", ("1m", "2m")
            ),
            # b: small, with a 90 s RPO for the freshness alert.
            "b": files_spec(
                [str(small)], {"incremental": "* * * * *", "full": "0 0 1 1 *"}, "90s", ("1m", "2m")
            ),
        },
        "retention": {"keep_within": "3w", "max_age": "31d"},
    }
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data))
    runner = Agent(path, tmp_path / "agent.log", port)
    try:
        yield runner
    finally:
        runner.kill()


def count(repository: restic.Repository, service: str) -> int:
    return len(restic.snapshots(repository, {"service": service}))


def seconds_to_next_minute() -> float:
    return 60 - time.time() % 60


def test_agent_schedules_catches_up_stops_cleanly_and_alerts(
    agent: Agent, repository: restic.Repository, sources: tuple[Path, Path], tmp_path: Path
) -> None:
    port = agent.port
    small, _ = sources

    # 1. A new agent backs up both services at start-up, b waiting for a.
    agent.start()
    wait_for("both first runs", lambda: agent.find("finished", task="b/full"), 120)
    a_done = agent.find("finished", task="a/full")[0]["time"]
    b_start = agent.find("started", task="b/full")[0]["time"]
    assert b_start >= a_done, "jobs of one agent overlapped"
    # A first start is said to be one, not a catch-up of runs that were never missed.
    assert agent.find("first start: running now a/full, b/full")
    assert not [e for e in agent.entries() if e["msg"].startswith("catching up")]
    assert (metric(port, "backup_task_waits_total", service="b") or 0) >= 1
    assert metric(port, "backup_last_run_success", service="b") == 1
    assert count(repository, "a") >= 1 and count(repository, "b") >= 1
    # promtool finds nothing to complain about in a real scrape.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        scrape = response.read()
    lint = subprocess.run([need("promtool"), "check", "metrics"], input=scrape, capture_output=True)
    assert lint.returncode == 0 and lint.stdout + lint.stderr == b"", lint

    # 2. Stopped across a slot: one catch-up run per service at start-up.
    code, took = agent.stop()
    assert code == 0 and took < 30
    slot_passed = time.time() + seconds_to_next_minute() + 2
    wait_for("the next cron slot to pass", lambda: time.time() >= slot_passed, 70)
    before = count(repository, "a")
    agent.start()
    wait_for("catch-up", lambda: agent.find("started", task="a/full"), 30, every=0.05)
    assert agent.find("catching up runs missed while the agent was down: a/full, b/incremental")

    # 3. SIGTERM while a's catch-up backup runs (restic is reading): prompt exit, no lock,
    # no snapshot.
    wait_for("restic to run for a", lambda: agent.running("restic"), 30, every=0.05)
    assert not agent.find("finished", task="a/full"), "a finished too fast to interrupt"
    code, took = agent.stop()
    assert code == 0 and took < 20
    assert agent.find("interrupted", task="a/full")
    locks = subprocess.run(
        ["restic", "list", "locks", "--no-lock"],
        env={**os.environ, **repository.env()},
        capture_output=True,
        check=True,
    )
    assert locks.stdout.strip() == b""
    assert count(repository, "a") == before

    # 4. Prometheus evaluates the shipped rules: b passes its 90 s RPO, then recovers.
    prometheus = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{port}")
    try:
        small.rename(small.with_name("src-b-gone"))
        agent.start()
        wait_for("a's interrupted run caught up", lambda: agent.find("finished", task="a/full"), 60)
        wait_for(
            "BackupStale for b", lambda: prometheus.firing("BackupStale", service="b"), 300, every=2
        )
        assert not prometheus.firing("BackupStale", service="a")
        failures = [
            e
            for e in agent.entries()
            if e["level"] == "error" and e.get("task", "").startswith("b/")
        ]
        assert failures and "path(s) not found" in failures[0]["msg"]
        small.with_name("src-b-gone").rename(small)
        wait_for(
            "BackupStale for b to clear",
            lambda: not prometheus.firing("BackupStale", service="b"),
            150,
            every=2,
        )
        assert metric(port, "backup_last_run_success", service="b") == 1
        code, _ = agent.stop()
        assert code == 0
    finally:
        prometheus.stop()
