"""The retention policy, as pure functions: which of a service's snapshots to remove.

Only trusted snapshots (``snapshots.judge``) are ever removed; untrusted ones are kept
and reported, whatever their date. Per service:

- the newest trusted data snapshot is the reference; everything within
  ``keep_within`` of it is kept (restic's ``--keep-within`` semantics), and nothing
  older than ``max_age`` from now;
- the newest trusted data snapshot is always kept, whatever its age, and so is the
  newest one that passed a drill (a signed drill record): a client that can only
  append cannot push every proven backup out by writing plausible new ones;
- records (a dump's ``meta``, a ``drill`` record) follow their snapshot.

``check_plan`` refuses a plan that would remove a service's newest snapshot, its
newest drilled snapshot, or every snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from backup_agent import restic
from backup_agent.errors import BackupError
from backup_agent.manifest import Retention
from backup_agent.snapshots import RECORD_KINDS, Judgement


@dataclass(frozen=True)
class ServicePlan:
    """What retention keeps and removes for one service."""

    service: str
    keep: tuple[restic.Snapshot, ...]
    remove: tuple[restic.Snapshot, ...]
    untrusted: tuple[tuple[restic.Snapshot, str], ...]  # kept and reported, with the reason
    newest: restic.Snapshot | None
    newest_drilled: restic.Snapshot | None


def plan_service(judged: Judgement, retention: Retention, now: datetime) -> ServicePlan:
    """Decide which of one service's trusted snapshots to keep and which to remove."""
    newest, drilled = judged.latest, judged.latest_drilled
    doomed: list[restic.Snapshot] = []
    if newest is not None:
        window_start = newest.time - retention.keep_within
        cutoff = now - retention.max_age
        protected = {s.id for s in (newest, drilled) if s is not None}
        doomed = [
            snap
            for snap in judged.trusted
            if snap.id not in protected and (snap.time < window_start or snap.time < cutoff)
        ]
    remove = [record for snap in doomed for record in judged.chain(snap)]
    removed = {s.id for s in remove}
    keep = [
        record for snap in judged.trusted if snap.id not in removed for record in judged.chain(snap)
    ]
    return ServicePlan(
        judged.service,
        keep=tuple(keep) + tuple(snap for snap, _ in judged.untrusted),
        remove=tuple(remove),
        untrusted=tuple(judged.untrusted),
        newest=newest,
        newest_drilled=drilled,
    )


def check_plan(plans: Sequence[ServicePlan]) -> None:
    """Refuse a plan that would remove a service's newest snapshot, its newest drilled
    snapshot, or every trusted snapshot it has."""
    for plan in plans:
        removed = {s.id for s in plan.remove}
        for what, snap in (("newest", plan.newest), ("newest drilled", plan.newest_drilled)):
            if snap is not None and snap.id in removed:
                raise BackupError(
                    f"refusing retention: it would remove the {what} snapshot of {plan.service}"
                )
        if plan.newest is not None and not any(
            s.tag("kind") not in RECORD_KINDS for s in plan.keep
        ):
            raise BackupError(
                f"refusing retention: it would remove every snapshot of {plan.service}"
            )
