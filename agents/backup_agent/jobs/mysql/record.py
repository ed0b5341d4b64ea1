"""The record a dump gets beside it: a small snapshot tagged ``kind=meta`` and
``of=<name of the dump>`` holding the dump's byte count, SHA-256, server version,
databases and the row count of every table. It is a second snapshot because the
hash is only known once the dump is complete, and an append-only server does not let
``restic tag`` rewrite a snapshot. The dump carries a random ``link=`` tag that the
record names, so the record's restic can start beside the dump (``start``) and save
it at once when the dump is complete (``seal``): a record exists only once sealed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from backup_agent import restic, snapshots
from backup_agent.errors import BackupError
from backup_agent.manifest import Manifest, Service


def start(
    manifest: Manifest, service: Service, link: str, tags: Mapping[str, str] | None = None
) -> restic.SealedBackup:
    """Start the record of the dump tagged ``link=LINK``; ``tags`` add what must be known
    without reading it (the binlog position, for point-in-time restores)."""
    return restic.SealedBackup(
        manifest.repository_for(service.name),
        f"{service.name}.meta.json",
        {"service": service.name, "kind": snapshots.META_KIND, "of": link, **(tags or {})},
    )


def seal(upload: restic.SealedBackup, record: Mapping[str, Any]) -> None:
    """Save the record: its dump is complete and stored."""
    upload.seal(json.dumps(record, indent=2).encode())


def method_of(snapshot: restic.Snapshot) -> str:
    """``logical`` (a dump; older dumps carry no method tag) or ``physical``."""
    return snapshot.tag("method") or "logical"


def select_dump(
    manifest: Manifest, service: Service, wanted: str, method: str | None = "logical"
) -> tuple[restic.Snapshot, dict[str, Any]]:
    """A trusted snapshot made by ``method`` (None: any, for an id) and its record,
    listed once (a trusted snapshot has one): the newest such for ``latest``."""
    listed = snapshots.of_service(manifest, service)
    judged = snapshots.judge(listed, service, snapshots.Trust.of(manifest))
    if wanted == "latest":
        found = [s for s in judged.trusted if method_of(s) == method]
        if not found:
            snapshots.select(manifest, service, wanted, listed)  # says why none is trusted
            raise BackupError(f"no trusted {method} snapshot of service {service.name}")
        snapshot = found[-1]
    else:
        snapshot = snapshots.select(manifest, service, wanted, listed)
        if method is not None and method_of(snapshot) != method:
            raise BackupError(
                f"snapshot {snapshot.short_id} of {service.name} is a {method_of(snapshot)} "
                f"backup, not a {method} one"
            )
    return snapshot, read(manifest, service, judged.records[snapshot.id])


def read(manifest: Manifest, service: Service, record: restic.Snapshot) -> dict[str, Any]:
    """The content of a dump's record (hostile input: a JSON object or an error)."""
    data = restic.dump_bytes(
        manifest.repository_for(service.name), record.id, f"/{service.name}.meta.json"
    )
    try:
        content = json.loads(data)
    except ValueError as exc:
        raise BackupError(f"record {record.short_id} of {service.name} is not JSON") from exc
    if not isinstance(content, dict) or not isinstance(content.get("sha256"), str):
        raise BackupError(f"record {record.short_id} of {service.name} is not a dump record")
    return content


def databases(record: Mapping[str, Any]) -> list[str]:
    """The databases a record says the dump holds."""
    found = record.get("databases", ())
    return [str(d) for d in found] if isinstance(found, list) else []
