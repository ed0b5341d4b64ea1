"""Repository maintenance on the backup server: retention, prune, check, stale locks,
the second copy, and the survey of what the repository holds.

The agents only append (rest-server ``--append-only``); this role has full access.
Retention (``retention.plan_service``) is computed here per service, over the
snapshots the trust rule accepts (``snapshots.judge``), and restic is then told
exactly which snapshots to forget. What it removed is logged after restic removed it.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

from backup_agent import execute, restic
from backup_agent.manifest import Manifest
from backup_agent.retention import ServicePlan, check_plan, plan_service
from backup_agent.snapshots import Trust, judge
from backup_agent.survey import Survey, survey

log = logging.getLogger("backup_agent.maintenance")

T = TypeVar("T")
COPY_INIT_LOCK = "copy-init.lock"  # in the state directory


def apply_retention(manifest: Manifest, now: datetime, *, dry_run: bool) -> list[ServicePlan]:
    """Plan, check and (unless ``dry_run``) forget and prune each repository of the
    manifest (as its role reaches them); report what is not trusted."""
    plans = []
    for repo, names in manifest.repositories().values():
        plans += _retention(manifest, repo, names, now, dry_run=dry_run)
    return plans


def _retention(
    manifest: Manifest,
    repo: restic.Repository,
    names: tuple[str, ...],
    now: datetime,
    *,
    dry_run: bool,
) -> list[ServicePlan]:
    listed = with_unlock(repo, lambda: restic.snapshots(repo))
    trust = Trust.of(manifest, now)
    plans = [
        plan_service(judge(listed, manifest.services[name], trust), manifest.retention, now)
        for name in names
    ]
    check_plan(plans)
    for plan in plans:
        for snap, why in plan.untrusted:
            log.warning(
                "snapshot %s is not trusted (%s): kept, never used",
                snap.short_id,
                why,
                extra={"service": plan.service},
            )
        if plan.newest is not None and plan.newest.time < now - manifest.retention.max_age:
            log.warning(
                "the newest snapshot is older than max_age (%s): kept, but backups stopped?",
                plan.newest.time.isoformat(),
                extra={"service": plan.service},
            )
    for name, count in survey(listed, manifest, names, trust).orphans.items():
        log.warning(
            "%d snapshot(s) of service %r, which the manifest does not name: kept, not managed",
            count,
            name,
        )
    doomed = [s.id for plan in plans for s in plan.remove]
    if not dry_run and doomed:
        with_unlock(repo, lambda: restic.forget(repo, doomed))
        with_unlock(repo, lambda: restic.prune(repo))
    for plan in plans:
        log.info(
            "retention %s: keep %d, %s %d",
            "plan" if dry_run else "applied",
            len(plan.keep),
            "would remove" if dry_run else "removed",
            len(plan.remove),
            extra={"service": plan.service},
        )
    return plans


def survey_repositories(manifest: Manifest) -> tuple[Survey, int]:
    """What the repositories hold per service (trusted or not), and their stored size."""
    trust = Trust.of(manifest)
    found, size = Survey({}, {}), 0
    for repo, names in manifest.repositories().values():
        listed = with_unlock(repo, partial(restic.snapshots, repo))
        found = found.merge(survey(listed, manifest, names, trust))
        size += restic.stats(repo, mode="raw-data").total_size
    return found, size


def check_repositories(manifest: Manifest, run_number: int) -> str:
    """``restic check`` of every repository, reading subset ``k/N``, rotating with
    ``run_number``; returns the subset. The maintenance role checks its direct view of
    the repositories; the verifier its own (reading works through rest-server)."""
    total = manifest.maintenance.read_data_subsets
    subset = f"{run_number % total + 1}/{total}"
    for repo, _ in manifest.repositories().values():
        with_unlock(repo, partial(restic.check, repo, read_data_subset=subset))
    return subset


def copy_repositories(manifest: Manifest) -> dict[str, float]:
    """Copy each repository's new snapshots to its second copy (``maintenance.copy``),
    creating a copy repository that does not exist yet; then what the copies hold
    (``survey_copies``)."""
    for source, target, names in manifest.copies():
        created = _create_copy(manifest, source, target)
        if created:
            log.info("created the copy repository %s: %s", execute.mask(target.url), created)
        copied = restic.copy(source, target)
        log.info(
            "copied %d snapshot(s) of %s to %s",
            copied,
            ", ".join(names),
            execute.mask(target.url),
            extra={"task": "copy"},
        )
    return survey_copies(manifest)


def survey_copies(manifest: Manifest) -> dict[str, float]:
    """The time of the newest trusted snapshot of each service in its copy (0 for none),
    judged by the same trust rule as the repository: the copy's freshness metric."""
    trust = Trust.of(manifest)
    newest: dict[str, float] = {}
    for _, target, names in manifest.copies():
        found = survey(restic.snapshots(target), manifest, names, trust).services
        newest.update({name: found[name].newest for name in names})
    return newest


def init_copies(manifest: Manifest) -> list[tuple[restic.Repository, tuple[str, ...], str]]:
    """Create each copy repository that does not exist yet, with the chunker parameters
    of the repository it copies; (copy, services, new id or '' if it existed)."""
    return [
        (target, names, _create_copy(manifest, source, target))
        for source, target, names in manifest.copies()
    ]


def _create_copy(manifest: Manifest, source: restic.Repository, target: restic.Repository) -> str:
    """Create the copy repository ``target`` unless it exists; its new id, or ''.

    One process at a time decides (a lock file in the state directory): a scheduled
    copy and an operator's ``copy`` or ``init --copy`` that both found no repository
    would otherwise both create it, and on S3 the second config would replace the first.
    """
    state_dir = Path(manifest.agent.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / COPY_INIT_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return "" if restic.exists(target) else restic.init(target, chunker_from=source)


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
