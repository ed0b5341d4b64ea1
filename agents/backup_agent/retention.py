"""The retention policy, as pure functions: which of a service's snapshots to remove.

Only trusted snapshots (``snapshots.judge``) are ever removed; untrusted ones are kept
and reported, whatever their date. Per service:

- the newest trusted data snapshot is the reference; everything within
  ``keep_within`` of it is kept (restic's ``--keep-within`` semantics), and nothing
  older than ``max_age`` from now;
- the newest trusted data snapshot is always kept, whatever its age, and so is the
  newest one that passed a drill (a signed drill record): a client that can only
  append cannot push every proven backup out by writing plausible new ones;
- records (a dump's ``meta``, a ``drill`` record) follow their snapshot;
- binlog shipments (MySQL, point-in-time recovery) are kept exactly as long as the
  dumps they extend: every shipment the chain of a kept dump reads is kept (the
  chain runs from the dump's position to as far as shipping reached, so a kept dump
  is never left with a chain cut short), and so is every shipment newer than the
  newest dump (the start of the next dump's chain, after a break). The rest, binlogs
  no kept dump can replay, go with the dumps they extended.

``check_plan`` refuses a plan that would remove a service's newest snapshot, its
newest drilled snapshot, or every snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from backup_agent import restic
from backup_agent.errors import BackupError
from backup_agent.jobs.mysql.binlog.chain import (
    build_chain,
    dump_points,
    needed_snapshots,
    shipments_of,
)
from backup_agent.manifest import Retention
from backup_agent.snapshots import BINLOG_KIND, RECORD_KINDS, Judgement

NOT_DATA = RECORD_KINDS | {BINLOG_KIND}  # kinds that restore nothing on their own


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
    kept = [snap for snap in judged.trusted if snap.id not in removed]
    keep = [record for snap in kept for record in judged.chain(snap)]
    binlogs, stale = binlogs_to_keep(judged, kept)
    return ServicePlan(
        judged.service,
        keep=tuple(keep) + tuple(binlogs) + tuple(snap for snap, _ in judged.untrusted),
        remove=tuple(remove) + tuple(stale),
        untrusted=tuple(judged.untrusted),
        newest=newest,
        newest_drilled=drilled,
    )


def binlogs_to_keep(
    judged: Judgement, kept: Sequence[restic.Snapshot]
) -> tuple[list[restic.Snapshot], list[restic.Snapshot]]:
    """The binlog shipments the kept dumps need, and those no kept dump can replay."""
    if not judged.binlogs:
        return [], []
    shipments = shipments_of(judged.binlogs)
    needed: set[str] = set()
    chain = None
    for dump in dump_points(kept, judged.records):
        if chain is not None and chain.broken is None and chain.holds(dump.coordinates):
            continue  # its chain is the rest of this one: nothing more to keep
        chain = build_chain(dump.coordinates, shipments, dump.consistent_by)
        needed |= needed_snapshots(chain)
    newest = judged.latest
    keep: list[restic.Snapshot] = []
    stale: list[restic.Snapshot] = []
    for snapshot in judged.binlogs:
        pending = newest is None or snapshot.time >= newest.time
        (keep if snapshot.id in needed or pending else stale).append(snapshot)
    return keep, stale


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
        if plan.newest is not None and not any(s.tag("kind") not in NOT_DATA for s in plan.keep):
            raise BackupError(
                f"refusing retention: it would remove every snapshot of {plan.service}"
            )
