"""Repository maintenance on the backup server: retention, prune, check, stale locks.

The agents only append (rest-server ``--append-only``); this role has full access.
Retention is computed here, per service, across every host name the service's
snapshots carry, and restic is then told exactly which snapshots to forget:

- the newest *trusted* data snapshot (not dated in the future, which a compromised
  client could fake) is the reference; everything within ``keep_within`` of it is kept
  (restic's ``--keep-within`` semantics), and nothing older than ``max_age`` from now;
- the newest data snapshot of each service is always kept, whatever its age;
- snapshots dated in the future are never removed, only reported;
- a MySQL dump's metadata snapshot (``kind=meta``) follows its dump.

A plan that would remove a service's newest snapshot, or all of them, is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

from backup_agent import restic, snapshots
from backup_agent.errors import BackupError
from backup_agent.manifest import Manifest, Retention

log = logging.getLogger("backup_agent.maintenance")

FUTURE_TOLERANCE = timedelta(hours=1)
T = TypeVar("T")


@dataclass(frozen=True)
class ServicePlan:
    """What retention keeps and removes for one service."""

    service: str
    keep: tuple[restic.Snapshot, ...]
    remove: tuple[restic.Snapshot, ...]
    suspicious: tuple[restic.Snapshot, ...]  # dated in the future: kept, reported


def maintenance_repository(manifest: Manifest) -> restic.Repository:
    """The repository as the maintenance role reaches it (often a local directory)."""
    repo = manifest.repository
    url = manifest.maintenance.repository_url
    return replace(repo, url=url, credentials_file=None) if url else repo


def plan_retention(
    listed: Sequence[restic.Snapshot],
    services: Sequence[str],
    retention: Retention,
    now: datetime,
) -> list[ServicePlan]:
    """Decide, per service, which snapshots to keep and which to remove."""
    plans = []
    for service in services:
        mine = [s for s in listed if s.tag("service") == service]
        data = snapshots.data(mine)
        trusted = [s for s in data if s.time <= now + FUTURE_TOLERANCE]
        suspicious = tuple(s for s in data if s not in trusted)
        if not trusted:
            plans.append(ServicePlan(service, tuple(mine), (), suspicious))
            continue
        newest = max(trusted, key=lambda s: s.time)
        window_start = newest.time - retention.keep_within
        cutoff = now - retention.max_age
        remove_ids = {
            s.id for s in trusted if s is not newest and (s.time < window_start or s.time < cutoff)
        }
        remove_ids |= {
            m.id
            for m in mine
            if m.tag("kind") == snapshots.META_KIND
            and (m.tag("of") in remove_ids or not _has_dump(m, data))
        }
        plans.append(
            ServicePlan(
                service,
                keep=tuple(s for s in mine if s.id not in remove_ids),
                remove=tuple(s for s in mine if s.id in remove_ids),
                suspicious=suspicious,
            )
        )
    return plans


def _has_dump(meta: restic.Snapshot, data: Sequence[restic.Snapshot]) -> bool:
    return any(s.id == meta.tag("of") for s in data)


def check_plan(plans: Sequence[ServicePlan]) -> None:
    """Refuse a plan that would remove a service's newest snapshot or every snapshot."""
    for plan in plans:
        data = snapshots.data((*plan.keep, *plan.remove))
        if not data:
            continue
        newest = max(
            (s for s in data if s not in plan.suspicious), key=lambda s: s.time, default=None
        )
        if newest is not None and newest in plan.remove:
            raise BackupError(
                f"refusing retention: it would remove the newest snapshot of {plan.service}"
            )
        if not snapshots.data(plan.keep):
            raise BackupError(
                f"refusing retention: it would remove every snapshot of {plan.service}"
            )


def apply_retention(manifest: Manifest, now: datetime, *, dry_run: bool) -> list[ServicePlan]:
    """Plan, check and (unless ``dry_run``) forget and prune."""
    repo = maintenance_repository(manifest)
    plans = with_unlock(
        repo,
        lambda: plan_retention(
            restic.all_snapshots(repo), list(manifest.services), manifest.retention, now
        ),
    )
    check_plan(plans)
    for plan in plans:
        for snap in plan.suspicious:
            log.warning(
                "snapshot %s of %s is dated in the future (%s); kept, not trusted as newest",
                snap.short_id,
                plan.service,
                snap.time.isoformat(),
                extra={"service": plan.service},
            )
        log.info(
            "retention %s: keep %d, remove %d",
            "plan" if dry_run else "applied",
            len(plan.keep),
            len(plan.remove),
            extra={"service": plan.service},
        )
    if dry_run:
        return plans
    doomed = [s.id for plan in plans for s in plan.remove]
    if doomed:
        with_unlock(repo, lambda: restic.forget(repo, doomed))
        with_unlock(repo, lambda: restic.prune(repo))
    return plans


def repository_contents(manifest: Manifest) -> tuple[dict[str, int], int]:
    """Data snapshots per service of the manifest, and the repository's stored size."""
    repo = maintenance_repository(manifest)
    found = snapshots.data(restic.all_snapshots(repo))
    counts = {name: sum(1 for s in found if s.tag("service") == name) for name in manifest.services}
    return counts, restic.stats(repo, mode="raw-data").total_size


def check_repository(
    manifest: Manifest, run_number: int, repo: restic.Repository | None = None
) -> str:
    """``restic check`` reading subset ``k/N``, rotating with ``run_number``; returns the subset.

    The maintenance role checks its direct view of the repository; the verifier passes
    the agents' view (reading works through an append-only rest-server).
    """
    repo = repo or maintenance_repository(manifest)
    total = manifest.maintenance.read_data_subsets
    subset = f"{run_number % total + 1}/{total}"
    with_unlock(repo, lambda: restic.check(repo, read_data_subset=subset))
    return subset


def with_unlock(repo: restic.Repository, action: Callable[[], T]) -> T:
    """Run ``action``; when the repository is locked, remove stale locks and retry once.

    ``restic unlock`` removes only locks restic itself proves stale, never a live one.
    """
    try:
        return action()
    except restic.RepositoryLocked:
        log.warning("repository is locked; removing locks restic proves stale, then retrying once")
        restic.unlock(repo)
        return action()
