"""Retention and the append-only repository, with real restic and rest-server."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from backup_agent import agent, cli, maintenance, restic
from backup_agent.metrics import Metrics
from backup_agent.state import RETENTION, State
from tests.agent_process import Agent, metric
from tests.conftest import ManifestFactory, files_spec, wait_for
from tests.forge import forge
from tests.net import HOST, free_port
from tests.rest_server import RestServer

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def make_snapshot(
    repo: restic.Repository, host: str, age: timedelta, tags: dict[str, str], content: bytes = b"x"
) -> str:
    """A real snapshot dated ``age`` ago on ``host``; returns its id."""
    return forge(repo, NOW - age, tags, content, host=host)


def test_retention_removes_exactly_the_policy_across_trusted_host_names(
    repository: restic.Repository, make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    day = timedelta(days=1)

    def snap(service: str, host: str, days: float, kind: str = "full", **extra: str) -> str:
        tags = {"service": service, "kind": kind, **extra}
        return make_snapshot(repository, host, days * day, tags, f"{service}{host}{days}".encode())

    keep = {
        snap("db", "agama", 1),
        snap("db", "agama", 10),
        snap("db", "agama", 20),
        snap("db", "old-container-1f3a", 5),  # a former host name, same service
        snap("db", "agama", -30),  # dated in the future: untrusted, kept, never the reference
        snap("db", "stranger", 90),  # a host name nobody declared: untrusted, kept
        snap("grafana", "old-container-1f3a", 60),  # the only one: newest, kept whatever its age
        snap("files", "agama", 45),  # newest of files
        make_snapshot(repository, "agama", 400 * day, {"unrelated": "yes"}),  # not ours: untouched
    }
    old_dump = snap("db", "agama", 40)
    remove = {
        snap("db", "agama", 25),
        old_dump,
        snap("db", "old-container-1f3a", 23),
        snap("db", "old-container-1f3a", 50),
        snap("db", "agama", 40, kind="meta", of=old_dump),  # metadata follows its dump
        snap("files", "agama", 70),
    }
    services = {
        "db": files_spec([str(tmp_path)]),
        "grafana": files_spec([str(tmp_path)]),
        "files": files_spec([str(tmp_path)]),
    }
    repo = {
        "url": repository.url,
        "password_file": repository.password_file,
        "host": "agama",
        "former_hosts": ["old-container-1f3a"],
        "cache_dir": repository.cache_dir,
    }
    loaded = make_manifest(services, repository=repo)

    planned = maintenance.apply_retention(loaded, NOW, dry_run=True)
    assert [len(p.untrusted) for p in planned] == [2, 0, 0]
    assert {s.id for p in planned for s in p.remove} == remove
    assert {s.id for s in restic.snapshots(repository)} == keep | remove  # dry run removed nothing

    assert cli.main(["-m", loaded.source, "retention"]) == 0
    assert {s.id for s in restic.snapshots(repository)} == keep

    # The maintenance role's run: nothing more to remove; it publishes what is left.
    registry = CollectorRegistry()
    tasks = agent.maintenance_tasks(loaded, State(loaded.agent.state_dir), Metrics(registry))
    next(task for task in tasks if task.id == RETENTION).run()
    assert {s.id for s in restic.snapshots(repository)} == keep
    counts = {
        name: registry.get_sample_value("backup_snapshots", {"service": name}) for name in services
    }
    assert counts == {"db": 4, "grafana": 1, "files": 1}
    assert registry.get_sample_value("backup_untrusted_snapshots", {"service": "db"}) == 2
    size = registry.get_sample_value("backup_repository_size_bytes")
    assert size == restic.stats(repository).total_size and size > 0


@pytest.fixture
def rest_server(tmp_path: Path) -> Iterator[tuple[RestServer, Path]]:
    """restic's rest-server in --append-only mode with one user, and a password file."""
    password_file = tmp_path / "restic-password"
    password_file.write_text("repo password\n")
    server = RestServer({"agent": "agent-s3cret"})
    try:
        yield server, password_file
    finally:
        server.remove()


def agent_repository(
    rest_server: tuple[RestServer, Path], tmp_path: Path, credentials: str
) -> restic.Repository:
    """The repository ``agama`` through rest-server, as a sidecar with ``credentials``."""
    server, password_file = rest_server
    path = tmp_path / f"credentials-{len(list(tmp_path.glob('credentials-*')))}"
    path.write_text(f"{credentials}\n")
    return restic.Repository(
        server.url("agama"), str(password_file), "agama", str(path), str(tmp_path / "cache")
    )


def test_an_agent_can_append_but_not_delete_through_rest_server(
    rest_server: tuple[RestServer, Path], tmp_path: Path
) -> None:
    agent = agent_repository(rest_server, tmp_path, "agent:agent-s3cret")
    restic.init(agent)
    source = tmp_path / "src"
    source.mkdir()
    (source / "f").write_text("data")
    summary = restic.backup(agent, [str(source)], {"service": "files", "kind": "full"})

    # Named alike whether restic exits 0 first or its guard stops it at the 403.
    refused = "refused access: server refuses deletions"
    with pytest.raises(restic.ResticError, match=refused) as caught:
        restic.forget(agent, [summary.snapshot_id])
    assert caught.value.reason == "access_refused"
    assert [s.id for s in restic.snapshots(agent)] == [summary.snapshot_id]

    # The maintenance role reaches the same repository directly and may delete.
    server, password_file = rest_server
    direct = restic.Repository(str(server.data / "agama"), str(password_file), "agama")
    assert [s.id for s in restic.snapshots(direct)] == [summary.snapshot_id]


def test_wrong_rest_credentials_are_reported(
    rest_server: tuple[RestServer, Path], tmp_path: Path
) -> None:
    repo = agent_repository(rest_server, tmp_path, "agent:not-it")
    with pytest.raises(restic.ResticError, match="401") as caught:
        restic.snapshots(repo)
    assert "not-it" not in str(caught.value)


def start_backup_holding_a_lock(repo: restic.Repository) -> subprocess.Popen[bytes]:
    """A real ``restic backup --stdin`` that has taken its lock and waits for input."""
    process = subprocess.Popen(
        ["restic", "backup", "--stdin", "--host", repo.host, "--tag", "service=db,kind=full"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **repo.env()},
    )
    assert process.stdin is not None
    process.stdin.write(b"x" * 1000)
    process.stdin.flush()

    def locked() -> bool:
        locks = subprocess.run(
            ["restic", "list", "locks", "--no-lock"],
            env={**os.environ, **repo.env()},
            capture_output=True,
            check=True,
        )
        return bool(locks.stdout.strip())

    wait_for("restic backup to take its lock", locked, 30, every=0.2)
    return process


def test_a_stale_lock_is_recovered_but_a_live_one_is_respected(
    repository: restic.Repository,
    make_manifest: ManifestFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # restic waits RETRY_LOCK for a live lock, twice (before and after unlock): 2 s here,
    # not the 2 minutes of a real maintenance run (tests/faults waits for a real one).
    monkeypatch.setattr(restic, "RETRY_LOCK", "2s")
    make_snapshot(repository, repository.host, timedelta(days=1), {"service": "db", "kind": "full"})
    loaded = make_manifest({"db": files_spec([str(tmp_path)])})

    live = start_backup_holding_a_lock(repository)
    try:
        # prune needs an exclusive lock; the running backup's lock is not stale.
        old = make_snapshot(
            repository, repository.host, timedelta(days=40), {"service": "db", "kind": "full"}
        )
        with pytest.raises(restic.RepositoryLocked, match="locked"):
            maintenance.apply_retention(loaded, NOW, dry_run=False)
    finally:
        live.kill()  # SIGKILL: the lock stays behind, and restic can prove it stale
        live.wait()
    plans = maintenance.apply_retention(loaded, NOW, dry_run=False)
    assert [s.id for p in plans for s in p.remove] == [old]
    assert old not in {s.id for s in restic.snapshots(repository)}


def test_the_maintenance_role_publishes_the_repository_at_start_up(
    repository: restic.Repository, make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    for days, content in ((1, b"new"), (2, b"old")):
        make_snapshot(
            repository,
            repository.host,
            timedelta(days=days),
            {"service": "db", "kind": "full"},
            content,
        )
    port = free_port()
    state = tmp_path / "state"
    # Retention and check ran just now and their next slots are far away: whatever is
    # published comes from start-up, as after a restart of the maintenance container.
    state.mkdir()
    now = time.time()
    jobs = {
        key: {"last_run": now, "last_success": now} for key in ("retention/forget", "check/check")
    }
    (state / "state.json").write_text(json.dumps({"jobs": jobs}))
    loaded = make_manifest(
        {"db": files_spec([str(tmp_path)])},
        agent={"state_dir": str(state), "metrics_port": port, "metrics_address": "127.0.0.1"},
        maintenance={"retention_schedule": "0 0 1 1 *", "check_schedule": "0 0 1 1 *"},
    )
    runner = Agent(Path(loaded.source), tmp_path / "agent.log", port, role="maintenance")
    runner.start()
    try:
        size = wait_for("repository size", lambda: metric(port, "backup_repository_size_bytes"), 30)
        assert size == restic.stats(repository).total_size  # published last
        assert metric(port, "backup_snapshots", service="db") == 2
        assert not runner.find("started", task="retention")  # not from a retention run
        assert runner.stop()[0] == 0
    finally:
        runner.kill()


def test_a_starting_sidecar_waits_for_its_repository_then_backs_up(
    tmp_path: Path, make_manifest: ManifestFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """On a new backup server, repository-init may still be running when a sidecar
    starts: the sidecar waits while its repository is missing, and goes on as soon as
    it answers."""
    loaded = make_manifest({"docs": files_spec([str(tmp_path)])})
    repo = loaded.repository_for("docs")
    moved = restic.Repository(
        str(tmp_path / "later"), repo.password_file, repo.host, cache_dir=repo.cache_dir
    )
    waiting = replace(loaded, repository=moved)
    creator = threading.Timer(3.0, restic.init, (moved,))
    creator.start()
    polls: list[int] = []  # the agent publishes its metrics between attempts
    try:
        with caplog.at_level("INFO", logger="backup_agent.agent"):
            answered = agent.await_repositories(
                waiting, ["docs"], limit=120, poll=0.5, on_poll=lambda: polls.append(1)
            )
    finally:
        creator.join()
    assert polls, "nothing ran while the sidecar waited"
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith("waiting up to 120 s for the repository: no restic repository")
        for m in messages
    )
    assert messages[-1] == f"repository {moved.url} answers"
    assert [r.url for r in answered] == [moved.url]  # its stale locks are looked for
    restic.preflight(moved)


def test_a_sidecar_does_not_wait_for_what_waiting_cannot_fix(
    tmp_path: Path, make_manifest: ManifestFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password, or a backup server that does not answer: the first backup runs
    at once and fails with its cause, counted and alerted (tests/faults/test_unreachable.py)."""
    loaded = make_manifest({"docs": files_spec([str(tmp_path)])})
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the password\n")
    closed = f"rest:http://{HOST}:{free_port()}/docs"
    for repo, cause in (
        (replace(loaded.repository, password_file=str(wrong)), "wrong password"),
        (replace(loaded.repository, url=closed), f"backup server {HOST}:"),
    ):
        caplog.clear()
        with caplog.at_level("INFO", logger="backup_agent.agent"):
            answered = agent.await_repositories(
                replace(loaded, repository=repo), ["docs"], limit=600, poll=0.5
            )
        (message,) = [r.getMessage() for r in caplog.records]
        assert message.startswith(f"starting without the repository: {cause}"), message
        assert answered == []


def test_a_copy_repository_found_missing_by_two_processes_is_created_once(
    repository: restic.Repository, make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    """The scheduled copy and an operator's ``init --copy`` both find no copy repository:
    the one that waited finds the other's and neither replaces it."""
    copy_url = str(tmp_path / "copy")
    loaded = make_manifest(
        {"files": files_spec([str(tmp_path)])},
        maintenance={"copy": {"url": copy_url, "schedule": "0 7 * * *"}},
    )
    [(source, target, _)] = loaded.copies()
    lock_file = Path(loaded.agent.state_dir) / maintenance.COPY_INIT_LOCK
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    results: list[str] = []
    with open(lock_file, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other process, deciding
        waiting = threading.Thread(
            target=lambda: results.extend(made for *_, made in maintenance.init_copies(loaded))
        )
        waiting.start()
        time.sleep(2)  # time enough to find no repository and create one, without the lock
        assert not restic.exists(target)
        first = restic.init(target, chunker_from=source)
    waiting.join(timeout=120)
    assert results == [""]  # it found the repository the first process created
    shown = subprocess.run(
        ["restic", "cat", "config"],
        env={**os.environ, **target.env()},
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(shown.stdout)["id"] == first
