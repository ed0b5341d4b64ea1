"""Files job against real files (text, binary, nested, empty, symlink, unicode names)
and a real restic repository."""

from __future__ import annotations

import hashlib
import json
import os
import random
import stat
from pathlib import Path
from typing import Any

import pytest

from backup_agent import cli, restic
from backup_agent.errors import BackupError
from backup_agent.jobs import files
from backup_agent.jobs.base import BackupResult, RestoreRequest
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


def test_incremental_and_full_snapshots_restore_exactly(
    make_manifest: ManifestFactory,
    repository: restic.Repository,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "home" / "backup" / "backup"
    make_tree(source)
    state_dir = tmp_path / "state"
    loaded = make_manifest(
        {SERVICE: files_service(source, exclude=("*.tmp",))},
        agent={"state_dir": str(state_dir)},
    )
    service = loaded.service(SERVICE)
    states: list[dict[str, Entry]] = []

    first = files.backup(loaded, service, "incremental")
    states.append(without_excluded(tree_state(source)))
    assert first.details == {
        "parent": None,
        "files_new": 8,
        "files_changed": 0,
        "files_unmodified": 0,
    }

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
    assert second.details == {
        "parent": first.snapshot_id,
        "files_new": 1,
        "files_changed": 2,
        "files_unmodified": 5,
    }

    (source / "nested" / "deep" / "deeper" / "leaf.txt").write_text("leaf, changed\n")
    capfd.readouterr()
    code = cli.main(["-m", loaded.source, "backup", SERVICE, "--kind", "full"])
    out = capfd.readouterr().out
    states.append(without_excluded(tree_state(source)))
    assert code == 0
    assert out.count("\n") == 1, out
    assert (state_dir / "state.json").is_file(), "the CLI run was not recorded"
    third = BackupResult(**json.loads(out))
    assert (third.service, third.kind) == (SERVICE, "full")
    # --force re-reads every file, as new, without a parent; nothing is stored twice.
    assert third.details == {
        "parent": None,
        "files_new": 8,
        "files_changed": 0,
        "files_unmodified": 0,
    }
    assert third.bytes_read == sum(
        (source / name).stat().st_size for name, entry in states[2].items() if entry[0] == "file"
    )
    assert 0 < third.bytes_added < third.bytes_read // 20

    assert states[0] != states[1] != states[2] != states[0], "each snapshot must differ"
    snaps = restic.snapshots(repository, {"service": SERVICE})
    results = [first, second, third]
    assert [(s.id, s.tag("kind"), s.hostname) for s in snaps] == [
        (first.snapshot_id, "incremental", "testhost"),
        (second.snapshot_id, "incremental", "testhost"),
        (third.snapshot_id, "full", "testhost"),
    ]
    assert all(s.paths == (str(source),) for s in snaps)

    for number, (result, state) in enumerate(zip(results, states, strict=True)):
        target = tmp_path / f"restore-{number}"
        request = RestoreRequest(snapshot=result.snapshot_id[:12], target=str(target))
        restored = files.restore(loaded, service, request)
        assert restored.snapshot_id == result.snapshot_id
        assert tree_state(restored_tree(target, source)) == state, f"snapshot {number}"

    only = source / "nested" / "deep" / "data.bin"
    partial = tmp_path / "restore-include"
    files.restore(
        loaded,
        service,
        RestoreRequest(snapshot=second.snapshot_id, target=str(partial), include=(str(only),)),
    )
    partial_state = tree_state(restored_tree(partial, source))
    restored_files = {name for name, entry in partial_state.items() if entry[0] != "dir"}
    assert restored_files == {"nested/deep/data.bin"}
    assert partial_state["nested/deep/data.bin"] == states[1]["nested/deep/data.bin"]

    oldest = tmp_path / "restore-0"
    with pytest.raises(BackupError, match="not empty"):
        files.restore(loaded, service, RestoreRequest(target=str(oldest)))
    assert tree_state(restored_tree(oldest, source)) == states[0]
    files.restore(loaded, service, RestoreRequest(target=str(oldest), force=True))
    overwritten = tree_state(restored_tree(oldest, source))
    assert {name: overwritten.get(name) for name in states[2]} == states[2]


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
