"""The record a dump gets beside it: a small snapshot tagged ``kind=meta`` and
``of=<dump snapshot id>`` holding the dump's byte count, SHA-256, server version,
databases and the row count of every table. It is a second snapshot because the
hash is only known once the dump's snapshot exists, and an append-only server does
not let ``restic tag`` rewrite a snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from backup_agent import restic, snapshots
from backup_agent.manifest import Manifest, Service


def write(manifest: Manifest, service: Service, of: str, record: Mapping[str, Any]) -> None:
    """Store ``record`` for the dump snapshot ``of``."""
    restic.backup_bytes(
        manifest.repository,
        f"{service.name}.meta.json",
        json.dumps(record, indent=2).encode(),
        {"service": service.name, "kind": snapshots.META_KIND, "of": of},
    )


def select_dump(
    manifest: Manifest, service: Service, wanted: str
) -> tuple[restic.Snapshot, dict[str, Any] | None]:
    """A dump snapshot and its record (None if there is none), listed once."""
    listed = snapshots.of_service(manifest, service)
    snapshot = snapshots.select(manifest, service, wanted, listed)
    return snapshot, read(manifest, service, snapshot, listed)


def read(
    manifest: Manifest,
    service: Service,
    snapshot: restic.Snapshot,
    listed: Sequence[restic.Snapshot],
) -> dict[str, Any] | None:
    """The record of a dump snapshot, or None when there is none."""
    found = snapshots.record_of(snapshot, listed)
    if found is None:
        return None
    data = restic.dump_bytes(manifest.repository, found.id, f"/{service.name}.meta.json")
    record: dict[str, Any] = json.loads(data)
    return record


def databases(record: Mapping[str, Any] | None) -> list[str]:
    """The databases a record says the dump holds."""
    return [str(d) for d in record.get("databases", ())] if record else []
