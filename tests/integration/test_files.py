"""Files job against real files (text, binary, nested, empty, symlink, unicode names)
and a real restic repository."""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backup_agent import cli, restic
from backup_agent.errors import BackupError
from backup_agent.jobs import files
from backup_agent.jobs.base import BackupResult, RestoreRequest
from backup_agent.manifest import Manifest, Service
from tests.conftest import ManifestFactory, files_spec

pytestmark = pytest.mark.integration

SERVICE = "files"
UNICODE_NAME = "ünïcødé-файл-✓.txt"
Entry = tuple[object, ...]


def files_service(*paths: Path, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    spec = files_spec([str(p) for p in paths])
    spec["files"]["exclude"] = list(exclude)
    return spec


def tree_state(root: Path) -> dict[str, Entry]:
    """Everything restic should preserve below ``root``, by relative path: file bytes
    (as SHA-256), permissions and modification times, directories, symlink targets."""
    state: dict[str, Entry] = {}

    def walk(directory: Path) -> None:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            path = Path(entry.path)
            info = entry.stat(follow_symlinks=False)
            name = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                state[name] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                state[name] = ("dir", stat.S_IMODE(info.st_mode))
                walk(path)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                state[name] = (
                    "file",
                    digest,
                    info.st_size,
                    stat.S_IMODE(info.st_mode),
                    info.st_mtime_ns,
                )

    walk(root)
    return state


def make_tree(root: Path) -> None:
    rng = random.Random(20260105)
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "readme.txt").write_text("Agama backups\n" + "línea ✓\n" * 200)
    (root / "docs" / "notes.md").write_text("# Notes\n\n- keep\n")
    (root / "data").mkdir()
    (root / "data" / "random.bin").write_bytes(rng.randbytes(256 * 1024))
    (root / "nested" / "deep" / "deeper").mkdir(parents=True)
    (root / "nested" / "deep" / "data.bin").write_bytes(rng.randbytes(64 * 1024))
    (root / "nested" / "deep" / "deeper" / "leaf.txt").write_text("leaf\n")
    (root / "empty.txt").touch()
    (root / UNICODE_NAME).write_text("unicode name, unicode text: ✓ ü ф\n")
    script = root / "script.sh"
    script.write_text("#!/bin/sh\necho restored\n")
    script.chmod(0o750)
    (root / "link-to-readme").symlink_to("docs/readme.txt")
    (root / "cache").mkdir()
    (root / "cache" / "build.tmp").write_bytes(b"excluded" * 100)
    (root / "scratch.tmp").write_text("excluded\n")


def without_excluded(state: dict[str, Entry]) -> dict[str, Entry]:
    return {name: entry for name, entry in state.items() if not name.endswith(".tmp")}


def restored_tree(target: Path, source: Path) -> Path:
    """Where restic puts ``source`` when a snapshot is restored into ``target``."""
    return target / source.relative_to(source.anchor)


@dataclass
class History:
    """Three snapshots of a changing tree: incremental, incremental, full (by the CLI)."""

    loaded: Manifest
    service: Service
    source: Path
    results: list[BackupResult]
    states: list[dict[str, Entry]]  # the tree as each snapshot saw it


@pytest.fixture
def history(
    make_manifest: ManifestFactory, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> History:
    source = tmp_path / "home" / "backup" / "backup"
    make_tree(source)
    loaded = make_manifest(
        {SERVICE: files_service(source, exclude=("*.tmp",))},
        agent={"state_dir": str(tmp_path / "state")},
    )
    service = loaded.service(SERVICE)
    states: list[dict[str, Entry]] = []

    first = files.backup(loaded, service, "incremental")
    states.append(without_excluded(tree_state(source)))

    with (source / "docs" / "readme.txt").open("a") as handle:
        handle.write("one more line\n")
    with (source / "data" / "random.bin").open("r+b") as handle:
        handle.seek(100_000)
        handle.write(b"\x00" * 4096)
    (source / "docs" / "added.txt").write_text("new after the first snapshot\n")
    (source / "docs" / "notes.md").unlink()
    (source / "link-to-readme").unlink()
    (source / "link-to-readme").symlink_to(UNICODE_NAME)
    second = files.backup(loaded, service, "incremental")
    states.append(without_excluded(tree_state(source)))

    (source / "nested" / "deep" / "deeper" / "leaf.txt").write_text("leaf, changed\n")
    capfd.readouterr()
    code = cli.main(["-m", loaded.source, "backup", SERVICE, "--kind", "full"])
    out = capfd.readouterr().out
    assert code == 0
    assert out.count("\n") == 1, out
    states.append(without_excluded(tree_state(source)))
    third = BackupResult(**json.loads(out))
    return History(loaded, service, source, [first, second, third], states)


def test_incremental_runs_name_their_parent_and_full_runs_reread_everything(
    history: History, tmp_path: Path
) -> None:
    first, second, third = history.results
    assert first.details == {
        "parent": None,
        "files_new": 8,
        "files_changed": 0,
        "files_unmodified": 0,
    }
    assert second.details == {
        "parent": first.snapshot_id,
        "files_new": 1,
        "files_changed": 2,
        "files_unmodified": 5,
    }
    assert (third.service, third.kind) == (SERVICE, "full")
    assert (tmp_path / "state" / "state.json").is_file(), "the CLI run was not recorded"
    # --force re-reads every file, as new, without a parent; nothing is stored twice.
    assert third.details == {
        "parent": None,
        "files_new": 8,
        "files_changed": 0,
        "files_unmodified": 0,
    }
    files_of_third = [n for n, entry in history.states[2].items() if entry[0] == "file"]
    assert third.bytes_read == sum((history.source / n).stat().st_size for n in files_of_third)
    assert 0 < third.bytes_added < third.bytes_read // 20


def test_every_snapshot_restores_exactly_what_it_saw(
    history: History, repository: restic.Repository, tmp_path: Path
) -> None:
    states, source = history.states, history.source
    assert states[0] != states[1] != states[2] != states[0], "each snapshot must differ"
    snaps = restic.snapshots(repository, {"service": SERVICE})
    first, second, third = history.results
    assert [(s.id, s.tag("kind"), s.hostname) for s in snaps] == [
        (first.snapshot_id, "incremental", "testhost"),
        (second.snapshot_id, "incremental", "testhost"),
        (third.snapshot_id, "full", "testhost"),
    ]
    assert all(s.paths == (str(source),) for s in snaps)
    for number, (result, state) in enumerate(zip(history.results, states, strict=True)):
        target = tmp_path / f"restore-{number}"
        request = RestoreRequest(snapshot=result.snapshot_id[:12], target=str(target))
        restored = files.restore(history.loaded, history.service, request)
        assert restored.snapshot_id == result.snapshot_id
        assert tree_state(restored_tree(target, source)) == state, f"snapshot {number}"


def test_include_restores_only_the_named_path(history: History, tmp_path: Path) -> None:
    only = history.source / "nested" / "deep" / "data.bin"
    partial = tmp_path / "restore-include"
    request = RestoreRequest(
        snapshot=history.results[1].snapshot_id, target=str(partial), include=(str(only),)
    )
    files.restore(history.loaded, history.service, request)
    partial_state = tree_state(restored_tree(partial, history.source))
    restored_files = {name for name, entry in partial_state.items() if entry[0] != "dir"}
    assert restored_files == {"nested/deep/data.bin"}
    assert partial_state["nested/deep/data.bin"] == history.states[1]["nested/deep/data.bin"]


def test_a_non_empty_target_is_refused_unless_forced(history: History, tmp_path: Path) -> None:
    oldest = tmp_path / "restore-0"
    first = RestoreRequest(snapshot=history.results[0].snapshot_id, target=str(oldest))
    files.restore(history.loaded, history.service, first)
    with pytest.raises(BackupError, match="not empty"):
        files.restore(history.loaded, history.service, RestoreRequest(target=str(oldest)))
    assert tree_state(restored_tree(oldest, history.source)) == history.states[0]
    forced = RestoreRequest(target=str(oldest), force=True)
    files.restore(history.loaded, history.service, forced)
    overwritten = tree_state(restored_tree(oldest, history.source))
    assert {name: overwritten.get(name) for name in history.states[2]} == history.states[2]


@pytest.mark.parametrize("full_today", [False, True])
def test_backup_without_kind_makes_the_kind_scheduled_today(
    make_manifest: ManifestFactory,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    full_today: bool,
) -> None:
    """An operator's `backup files` makes the kind the schedule has for today."""
    today = datetime.now(UTC).isoweekday() % 7  # cron: 0 is Sunday
    full_day = today if full_today else (today + 3) % 7
    spec = files_service(tmp_path)
    spec["schedule"] = {"incremental": "0 0 * * *", "full": f"0 0 * * {full_day}"}
    loaded = make_manifest({SERVICE: spec})
    capfd.readouterr()
    assert cli.main(["-m", loaded.source, "backup", SERVICE]) == 0
    made = BackupResult(**json.loads(capfd.readouterr().out))
    assert made.kind == ("full" if full_today else "incremental")


def test_missing_paths_and_bad_requests_are_refused(
    make_manifest: ManifestFactory, repository: restic.Repository, tmp_path: Path
) -> None:
    present = tmp_path / "present"
    present.mkdir()
    (present / "file.txt").write_text("here\n")
    gone = tmp_path / "gone"
    loaded = make_manifest({SERVICE: files_service(present, gone)})
    service = loaded.service(SERVICE)

    with pytest.raises(BackupError, match=f"path\\(s\\) not found: {gone}$"):
        files.backup(loaded, service, "incremental")
    with pytest.raises(BackupError, match="kind must be one of incremental, full, not 'daily'"):
        files.backup(loaded, service, "daily")
    with pytest.raises(BackupError, match="needs --target"):
        files.restore(loaded, service, RestoreRequest())

    assert not gone.exists()
    assert restic.snapshots(repository) == []
