"""What every data-source job shares: its Protocol, its result, its snapshot tags."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from backup_agent.manifest import Manifest, Service


@dataclass(frozen=True)
class BackupResult:
    """What one backup run produced; ``details`` is the metadata recorded with it."""

    service: str
    kind: str
    snapshot_id: str
    bytes_read: int
    bytes_added: int
    details: dict[str, object] = field(default_factory=dict)


class Job(Protocol):
    """The functions every data-source module provides."""

    def backup(self, manifest: Manifest, service: Service, kind: str) -> BackupResult:
        """Run one backup of ``service``; leave no snapshot when it fails."""
        ...


def snapshot_tags(service: Service, kind: str) -> dict[str, str]:
    """Tags every snapshot of ``service`` carries; selection and retention rely on them."""
    return {"service": service.name, "kind": kind}
