"""One shared repository into one repository per service: ``backup-agent migrate``.

Before repositories per service, every service's snapshots went to one repository
with one password. ``migrate`` copies each service's snapshots (``restic copy`` of
those tagged ``service=NAME``) into the service's own repository, as this role reaches
it (the maintenance role: directly on the backup server), and creates that repository
with the old one's chunker parameters when it is missing. A copy gets a new id, so
the records that name a snapshot by ``of=ID`` (a dump's meta record, a drill record)
are made to name the copy, and a drill record whose signature was valid is signed
again with the drill key (one that was not keeps its invalid signature): what was
trusted stays trusted, what was not stays not.
Running it again copies only what is new. The old repository is left as it is.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from backup_agent import restic
from backup_agent.errors import BackupError
from backup_agent.manifest import Manifest
from backup_agent.snapshots import DRILL_KIND, RECORD_KINDS, drill_signature, read_drill_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Moved:
    """What ``migrate`` did (or would do) for one service."""

    service: str
    copied: int  # snapshots copied now
    present: int  # copied by an earlier run
    repointed: int  # records made to name their copy


def migrate(manifest: Manifest, source: restic.Repository, *, dry_run: bool = False) -> list[Moved]:
    """Copy every service's snapshots from ``source`` into its own repository."""
    key = read_drill_key(manifest.drill.key_file) if manifest.drill else None
    moved = []
    for name in manifest.services:
        target = manifest.repository_for(name)
        if target.url == source.url:
            raise BackupError(f"{name}: {source.url} is already its repository: nothing to do")
        listed = restic.snapshots(source, {"service": name})
        exists = restic.exists(target)
        present = {s.original or s.id for s in restic.snapshots(target)} if exists else set()
        todo = [s for s in listed if (s.original or s.id) not in present]
        if dry_run:
            moved.append(Moved(name, len(todo), len(listed) - len(todo), 0))
            continue
        if not exists:
            restic.init(target, chunker_from=source)
        if todo:  # restic copy without ids would copy every service's snapshots
            restic.copy(source, target, [s.id for s in todo])
        repointed = _repoint(target, listed, name, key)
        moved.append(Moved(name, len(todo), len(listed) - len(todo), repointed))
        log.info(
            "migrated: %d copied, %d already there, %d records re-pointed",
            len(todo),
            len(listed) - len(todo),
            repointed,
            extra={"service": name},
        )
    return moved


def _repoint(
    target: restic.Repository,
    originals: Sequence[restic.Snapshot],
    service: str,
    key: bytes | None,
) -> int:
    """Make the copied records of ``service`` name the copies of their snapshots."""
    copies = restic.snapshots(target, {"service": service})
    by_origin = {c.original: c.id for c in copies if c.original}
    copy_of = {
        s.id: by_origin[s.original or s.id] for s in originals if (s.original or s.id) in by_origin
    }
    here = {c.id for c in copies}
    count = 0
    for record in copies:
        kind, of = record.tag("kind"), record.tag("of")
        if kind not in RECORD_KINDS or of is None or of in here or of not in copy_of:
            continue
        tags = [t for t in record.tags if not t.startswith("of=")]
        tags.append(f"of={copy_of[of]}")
        if kind == DRILL_KIND:
            mac = record.tag("mac") or ""
            if key is not None and hmac.compare_digest(drill_signature(key, service, of), mac):
                tags = [t for t in tags if not t.startswith("mac=")]
                tags.append(f"mac={drill_signature(key, service, copy_of[of])}")
            else:  # it stays what it was: a record nobody can trust
                log.warning("drill record %s has no valid signature", record.short_id)
        restic.retag(target, record.id, tags)
        count += 1
    return count
