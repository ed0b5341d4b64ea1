"""Files job: back up directories as they are.

``incremental`` runs name the service's newest snapshot as restic's parent, so
unchanged files are skipped by their metadata; ``full`` runs re-read every file
(``--force``). Both produce complete snapshots that restore on their own; restic
deduplicates the stored data either way.
"""

from __future__ import annotations

import os

from backup_agent import restic
from backup_agent.errors import BackupError
from backup_agent.jobs.base import BackupResult, snapshot_tags
from backup_agent.manifest import FilesOptions, Manifest, Service

KINDS = ("incremental", "full")


def backup(manifest: Manifest, service: Service, kind: str) -> BackupResult:
    """Back up the service's paths as one snapshot tagged with ``kind``."""
    options = service.options
    assert isinstance(options, FilesOptions)
    if kind not in KINDS:
        raise BackupError(f"{service.name}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    missing = [path for path in options.paths if not os.path.exists(path)]
    if missing:
        raise BackupError(f"{service.name}: path(s) not found: {', '.join(missing)}")
    repo = manifest.repository
    parent = None
    if kind == "incremental":
        previous = restic.snapshots(repo, {"service": service.name})
        parent = previous[-1].id if previous else None
    summary = restic.backup(
        repo,
        options.paths,
        snapshot_tags(service, kind),
        parent=parent,
        force=kind == "full",
        excludes=options.exclude,
    )
    return BackupResult(
        service=service.name,
        kind=kind,
        snapshot_id=summary.snapshot_id,
        bytes_read=summary.total_bytes_processed,
        bytes_added=summary.data_added,
        details={
            "parent": parent,
            "files_new": summary.files_new,
            "files_changed": summary.files_changed,
            "files_unmodified": summary.files_unmodified,
        },
    )
