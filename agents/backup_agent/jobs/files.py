"""Files job: back up directories as they are.

``incremental`` runs name the service's newest snapshot as restic's parent, so
unchanged files are skipped by their metadata; ``full`` runs re-read every file
(``--force``). Both produce complete snapshots that restore on their own; restic
deduplicates the stored data either way.
"""

from __future__ import annotations

import hashlib
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from backup_agent import restic, snapshots
from backup_agent.errors import BackupError
from backup_agent.jobs.base import (
    BackupResult,
    RestoreRequest,
    RestoreResult,
    require_drill,
    require_empty_dir,
    scratch_directory,
)
from backup_agent.manifest import FilesOptions, Manifest, Service

KINDS = ("incremental", "full")
SAMPLE_WORKERS = 4


def options_of(service: Service) -> FilesOptions:
    assert isinstance(service.options, FilesOptions)
    return service.options


def backup(manifest: Manifest, service: Service, kind: str) -> BackupResult:
    """Back up the service's paths as one snapshot tagged with ``kind``."""
    options = options_of(service)
    if kind not in KINDS:
        raise BackupError(f"{service.name}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    missing = [path for path in options.paths if not os.path.exists(path)]
    if missing:
        raise BackupError(f"{service.name}: path(s) not found: {', '.join(missing)}").because(
            "empty"
        )
    if not options.allow_empty:
        require_content(service, options.paths)
    repo = manifest.repository_for(service.name)
    parent = None
    if kind == "incremental":
        listed = snapshots.of_service(manifest, service)
        previous = snapshots.judge(listed, service, snapshots.Trust.of(manifest)).latest
        parent = previous.id if previous else None
    summary = restic.backup(
        repo,
        options.paths,
        snapshots.tags(service, kind),
        parent=parent,
        force=kind == "full",
        excludes=options.exclude,
    )
    details: dict[str, object] = {
        "parent": parent,
        "files_new": summary.files_new,
        "files_changed": summary.files_changed,
        "files_unmodified": summary.files_unmodified,
    }
    return BackupResult.of_summary(service, kind, summary, details)


def require_content(service: Service, paths: tuple[str, ...]) -> None:
    """Refuse paths that are unreadable or hold nothing: a volume that failed to mount
    (and that Docker replaced by an empty directory) must not become a good backup."""
    for path in paths:
        if not os.access(path, os.R_OK | (os.X_OK if os.path.isdir(path) else 0)):
            raise BackupError(f"{service.name}: {path} is not readable").because("empty")
        if os.path.isdir(path):
            with os.scandir(path) as entries:
                if next(entries, None) is None:
                    raise BackupError(
                        f"{service.name}: {path} is empty (files.allow_empty permits it)"
                    ).because("empty")


def restore(manifest: Manifest, service: Service, request: RestoreRequest) -> RestoreResult:
    """Restore a snapshot below ``request.target``; restic verifies what it wrote."""
    if not request.target:
        raise BackupError(f"{service.name}: restoring files needs --target DIR")
    snapshot = snapshots.select(manifest, service, request.snapshot)
    require_empty_dir(request.target, request.force)
    if request.dry_run:
        return RestoreResult(
            service.name, snapshot.id, request.target, 0, ["dry run: nothing written"]
        )
    summary = restic.restore(
        manifest.repository_for(service.name),
        snapshot.id,
        request.target,
        include=request.include,
        verify=True,
    )
    return RestoreResult(
        service=service.name,
        snapshot_id=snapshot.id,
        target=request.target,
        bytes=summary.total_bytes,
        verified=[
            f"restic --verify re-read {summary.total_bytes} bytes"
            f" ({summary.total_files} files and folders) against the snapshot"
        ],
    )


def drill(manifest: Manifest, service: Service) -> RestoreResult:
    """Drill: restore the newest snapshot (restic --verify), then compare a sample of
    restored files with ``restic dump`` of the same files, an independent read path."""
    with scratch_directory(manifest, service) as scratch:
        result = restore(manifest, service, RestoreRequest(target=str(scratch)))
        files = sorted(p for p in scratch.rglob("*") if p.is_file() and not p.is_symlink())
        if not files and not options_of(service).allow_empty:
            raise BackupError(f"the newest snapshot of {service.name} restored no file")
        sample = random.sample(files, min(require_drill(manifest).file_sample, len(files)))

        def same(path: Path) -> bool:
            original = "/" + str(path.relative_to(scratch))
            stored = restic.dump_bytes(
                manifest.repository_for(service.name), result.snapshot_id, original
            )
            return hashlib.sha256(stored).digest() == hashlib.sha256(path.read_bytes()).digest()

        with ThreadPoolExecutor(max_workers=SAMPLE_WORKERS) as pool:  # restic starts slowly
            differing = [p for p, ok in zip(sample, pool.map(same, sample), strict=True) if not ok]
        if differing:
            names = ", ".join("/" + str(p.relative_to(scratch)) for p in differing[:5])
            raise BackupError(f"restored file(s) differ from restic dump of the same: {names}")
        checks = [
            *result.verified,
            f"{len(sample)} sampled file(s) equal restic dump of the same file",
        ]
        return replace(result, verified=checks)
