"""What every data-source job shares: its Protocol, results, tags and snapshot choice."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from backup_agent import restic
from backup_agent.errors import BackupError
from backup_agent.manifest import Manifest, Service, Verification

META_KIND = "meta"


@dataclass(frozen=True)
class BackupResult:
    """What one backup run produced; ``details`` is the metadata recorded with it."""

    service: str
    kind: str
    snapshot_id: str
    bytes_read: int
    bytes_added: int
    details: dict[str, object] = field(default_factory=dict)

    @classmethod
    def of_summary(
        cls, service: Service, kind: str, summary: restic.BackupSummary, details: dict[str, object]
    ) -> BackupResult:
        """The result of a backup of files, as restic's summary counts it."""
        return cls(
            service=service.name,
            kind=kind,
            snapshot_id=summary.snapshot_id,
            bytes_read=summary.total_bytes_processed,
            bytes_added=summary.data_added,
            details=details,
        )


@dataclass(frozen=True)
class RestoreRequest:
    """What an operator asked to restore, and where. ``target`` is a directory or DSN."""

    snapshot: str = "latest"
    target: str | None = None
    include: tuple[str, ...] = ()
    force: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class RestoreResult:
    service: str
    snapshot_id: str
    target: str
    bytes: int
    verified: list[str] = field(default_factory=list)  # what was proven, for people


class Job(Protocol):
    """The functions every data-source module provides."""

    def backup(self, manifest: Manifest, service: Service, kind: str) -> BackupResult:
        """Run one backup of ``service``; leave no snapshot when it fails."""
        ...

    def restore(
        self, manifest: Manifest, service: Service, request: RestoreRequest
    ) -> RestoreResult:
        """Restore one snapshot of ``service`` and prove it matches what was recorded."""
        ...

    def verify(self, manifest: Manifest, service: Service) -> RestoreResult:
        """Drill: restore the newest snapshot into a disposable target, prove it, clean up."""
        ...


def snapshot_tags(service: Service, kind: str) -> dict[str, str]:
    """Tags every snapshot of ``service`` carries; selection and retention rely on them."""
    return {"service": service.name, "kind": kind}


def select_snapshot(
    manifest: Manifest,
    service: Service,
    wanted: str,
    listed: list[restic.Snapshot] | None = None,
) -> restic.Snapshot:
    """``latest`` or an (abbreviated) id, among this service's data snapshots only.

    ``listed`` saves a repository round trip when the caller already listed them.
    """
    if listed is None:
        listed = restic.snapshots(manifest.repository, {"service": service.name})
    found = [snap for snap in listed if snap.tag("kind") != META_KIND]
    if wanted != "latest":
        found = [snap for snap in found if snap.id.startswith(wanted)]
    if len(found) > 1 and wanted != "latest":
        raise BackupError(f"snapshot id {wanted!r} is ambiguous for service {service.name}")
    if not found:
        what = "no snapshot" if wanted == "latest" else f"no snapshot {wanted!r}"
        raise BackupError(f"{what} of service {service.name} on host {manifest.repository.host}")
    return found[-1]


def require_empty_dir(target: str, force: bool) -> None:
    """Refuse to restore over existing files unless forced."""
    path = Path(target)
    if path.exists() and any(path.iterdir()) and not force:
        raise BackupError(f"restore target {target} is not empty (use --force to write into it)")


def require_verification(manifest: Manifest) -> Verification:
    """The manifest's verification section; drills cannot run without one."""
    if manifest.verification is None:
        raise BackupError(f"{manifest.source}: no verification section: nothing says how to drill")
    return manifest.verification


@contextmanager
def scratch_directory(manifest: Manifest, service: Service) -> Iterator[Path]:
    """An empty drill directory for ``service``, removed afterwards (also on failure)."""
    path = Path(require_verification(manifest).scratch_dir) / service.name
    shutil.rmtree(path, ignore_errors=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
