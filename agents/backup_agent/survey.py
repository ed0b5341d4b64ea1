"""What the repository holds, per service, as the maintenance role reports it.

Computed from one listing of every snapshot with the trust rule of
``snapshots.judge``, for the metrics and alerts that watch for a compromised client:
untrusted snapshots, snapshots of services that left the manifest, a newest snapshot
older than retention's ``max_age``, no recently drilled snapshot, and snapshots much
smaller or much more frequent than the service's schedule says.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from backup_agent import restic
from backup_agent.manifest import Manifest, Service
from backup_agent.snapshots import Judgement, Trust, judge

RECENT = timedelta(days=1)
TYPICAL_OF = 10  # snapshots before the newest that give its typical size
MAX_ORPHANS = 20  # services outside the manifest reported one by one (labels are bounded)
MAX_LABEL = 64


@dataclass(frozen=True)
class ServiceSurvey:
    snapshots: int  # trusted data snapshots
    untrusted: int
    newest: float  # Unix time of the newest trusted data snapshot; 0 if none
    newest_drilled: float  # of the newest one that passed a drill; 0 if none
    recent: int  # trusted data snapshots made in the last RECENT
    expected_recent: int  # runs its schedules have in the last RECENT
    newest_bytes: int  # what the newest one read (restic's summary)
    typical_bytes: int  # the median of the TYPICAL_OF before it; 0 if none


@dataclass(frozen=True)
class Survey:
    services: dict[str, ServiceSurvey]
    orphans: dict[str, int]  # snapshots per service tag the repository should not hold

    def merge(self, other: Survey) -> Survey:
        """Surveys of several repositories together."""
        orphans = Counter(self.orphans) + Counter(other.orphans)
        return Survey({**self.services, **other.services}, dict(orphans.most_common(MAX_ORPHANS)))


def survey(
    listed: Sequence[restic.Snapshot], manifest: Manifest, names: Sequence[str], trust: Trust
) -> Survey:
    """Survey the services ``names`` whose repository ``listed`` is, and the service
    tags in it that are not theirs (a service that left the manifest, or a sidecar
    writing under another service's name)."""
    services = {
        name: _service(
            judge(listed, manifest.services[name], trust), manifest.services[name], trust
        )
        for name in names
    }
    unknown = Counter(
        (s.tag("service") or "")[:MAX_LABEL]
        for s in listed
        if s.tag("service") is not None and s.tag("service") not in names
    )
    return Survey(services, dict(unknown.most_common(MAX_ORPHANS)))


def _service(judged: Judgement, service: Service, trust: Trust) -> ServiceSurvey:
    since = trust.now - RECENT
    expected = sum(
        len(schedule.fires_until(since, trust.now, 10_000))
        for schedule in service.schedules.values()
    )
    sizes = [_read_bytes(s) for s in judged.trusted]
    newest, drilled = judged.latest, judged.latest_drilled
    return ServiceSurvey(
        snapshots=len(judged.trusted),
        untrusted=len(judged.untrusted),
        newest=newest.time.timestamp() if newest else 0.0,
        newest_drilled=drilled.time.timestamp() if drilled else 0.0,
        recent=sum(1 for s in judged.trusted if s.time > since),
        expected_recent=expected,
        newest_bytes=sizes[-1] if sizes else 0,
        typical_bytes=int(statistics.median(sizes[-TYPICAL_OF - 1 : -1])) if len(sizes) > 1 else 0,
    )


def _read_bytes(snapshot: restic.Snapshot) -> int:
    value = snapshot.summary.get("total_bytes_processed", 0)
    return value if isinstance(value, int) and value >= 0 else 0
