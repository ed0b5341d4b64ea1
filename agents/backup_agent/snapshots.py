"""Which snapshots belong to a service, and which one a restore or a drill uses.

Every snapshot is tagged ``service=NAME`` and ``kind=KIND`` (``full``,
``incremental``, or ``meta`` for the record a MySQL dump gets beside it); selection
never crosses services and never picks a ``meta`` record as data.
"""

from __future__ import annotations

from collections.abc import Sequence

from backup_agent import restic
from backup_agent.errors import BackupError
from backup_agent.manifest import Manifest, Service

META_KIND = "meta"


def tags(service: Service, kind: str) -> dict[str, str]:
    """Tags every snapshot of ``service`` carries; selection and retention rely on them."""
    return {"service": service.name, "kind": kind}


def of_service(manifest: Manifest, service: Service) -> list[restic.Snapshot]:
    """The service's snapshots on the manifest's host, data and records, oldest first."""
    return restic.snapshots(manifest.repository, {"service": service.name})


def select(
    manifest: Manifest,
    service: Service,
    wanted: str,
    listed: Sequence[restic.Snapshot] | None = None,
) -> restic.Snapshot:
    """``latest`` or an (abbreviated) id, among this service's data snapshots only.

    ``listed`` saves a repository round trip when the caller already listed them.
    """
    if listed is None:
        listed = of_service(manifest, service)
    if wanted == "latest":
        newest = latest(listed)
        if newest is None:
            raise BackupError(
                f"no snapshot of service {service.name} on host {manifest.repository.host}"
            )
        return newest
    found = [snap for snap in data(listed) if snap.id.startswith(wanted)]
    if len(found) > 1:
        raise BackupError(f"snapshot id {wanted!r} is ambiguous for service {service.name}")
    if not found:
        raise BackupError(
            f"no snapshot {wanted!r} of service {service.name} on host {manifest.repository.host}"
        )
    return found[0]


def data(listed: Sequence[restic.Snapshot]) -> list[restic.Snapshot]:
    """The data snapshots among ``listed`` (not the records beside MySQL dumps)."""
    return [snap for snap in listed if snap.tag("kind") != META_KIND]


def latest(listed: Sequence[restic.Snapshot]) -> restic.Snapshot | None:
    """The newest data snapshot of ``listed`` (which is oldest first), if any."""
    found = data(listed)
    return found[-1] if found else None


def record_of(
    snapshot: restic.Snapshot, listed: Sequence[restic.Snapshot]
) -> restic.Snapshot | None:
    """The newest ``meta`` record pointing back to ``snapshot``, if any."""
    found = [s for s in listed if s.tag("kind") == META_KIND and s.tag("of") == snapshot.id]
    return found[-1] if found else None
