"""What every data-source job shares: its Protocol, results and scratch space."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from backup_agent import restic
from backup_agent.errors import BackupError
from backup_agent.manifest import Drill, Manifest, Service


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
        cls,
        service: Service,
        kind: str,
        summary: restic.BackupSummary,
        details: dict[str, object],
        bytes_read: int | None = None,
    ) -> BackupResult:
        """The result of a backup as restic's summary counts it; ``bytes_read`` when the
        job counted the bytes itself (a stream)."""
        return cls(
            service=service.name,
            kind=kind,
            snapshot_id=summary.snapshot_id,
            bytes_read=summary.total_bytes_processed if bytes_read is None else bytes_read,
            bytes_added=summary.data_added,
            details=details,
        )


@dataclass(frozen=True)
class RestoreRequest:
    """What an operator asked to restore, and where. ``target`` is a directory or DSN.
    MySQL with shipped binlogs also restores to a point: a time, a GTID or a binlog
    position (``FILE:OFFSET``) instead of a snapshot."""

    snapshot: str = "latest"
    target: str | None = None
    include: tuple[str, ...] = ()
    force: bool = False
    dry_run: bool = False
    to_time: datetime | None = None
    to_gtid: str | None = None
    to_position: str | None = None

    @property
    def to_point(self) -> bool:
        return any(v is not None for v in (self.to_time, self.to_gtid, self.to_position))


@dataclass(frozen=True)
class RestoreResult:
    service: str
    snapshot_id: str
    target: str
    bytes: int
    verified: list[str] = field(default_factory=list)  # what was proven, for people
    method: str = ""  # how a MySQL drill restored (logical, physical): its throughput's key


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

    def drill(self, manifest: Manifest, service: Service) -> RestoreResult:
        """Restore the newest snapshot into a disposable target, prove it, clean up."""
        ...


def require_empty_dir(target: str, force: bool) -> None:
    """Refuse to restore over existing files unless forced."""
    path = Path(target)
    if path.exists() and any(path.iterdir()) and not force:
        raise BackupError(f"restore target {target} is not empty (use --force to write into it)")


def require_drill(manifest: Manifest) -> Drill:
    """The manifest's drill section; drills cannot run without one."""
    if manifest.drill is None:
        raise BackupError(f"{manifest.source}: no drill section: nothing says how to drill")
    return manifest.drill


@contextmanager
def scratch_directory(manifest: Manifest, service: Service) -> Iterator[Path]:
    """A new, empty drill directory for ``service`` below ``drill.scratch_dir``, removed
    afterwards (also on failure). Only what this call created is ever removed."""
    parent = Path(require_drill(manifest).scratch_dir)
    parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{service.name}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
