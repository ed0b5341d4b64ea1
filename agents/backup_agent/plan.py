"""``backup-agent plan``: the schedule and retention policy as a person needs to see them.

Shows the next two weeks of runs (backups, maintenance and the drills), flags runs
of different owners that overlap (by expected or measured duration), and simulates
the retention policy against each schedule with the same code that applies it
(``retention.plan_service``) to give the worst-case number and age of restore
points per service.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime, timedelta

from backup_agent import restic
from backup_agent.manifest import Manifest, Schedule, Service, format_duration
from backup_agent.retention import plan_service
from backup_agent.snapshots import Judgement
from backup_agent.state import CHECK, DRILL, RETENTION, TaskId, backup_task

WINDOW = timedelta(days=14)
SIMULATED = timedelta(days=366)
MAINTENANCE_DURATION = timedelta(minutes=30)
MAX_RUNS = 100_000  # per schedule: a year of every-5-minute runs


@dataclass(frozen=True)
class Run:
    start: datetime
    task: TaskId
    duration: timedelta

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    @property
    def owner(self) -> str:
        """Who runs it: the service for backups, else the role (maintenance, verifier)."""
        return self.task.name if self.task.role == "backup" else self.task.role

    @property
    def what(self) -> str:
        """The snapshot kind for backups, else the task (retention, check, drill)."""
        return self.task.kind or self.task.name


@dataclass(frozen=True)
class RestorePoints:
    """Worst and best case over the simulated year, after the policy has settled."""

    service: str
    fewest: int
    most: int
    oldest_min: timedelta
    oldest_max: timedelta


def upcoming_runs(
    manifest: Manifest, start: datetime, durations: dict[str, timedelta], window: timedelta = WINDOW
) -> list[Run]:
    """Every run in ``window`` from ``start``, in time order."""
    tasks: list[tuple[TaskId, Schedule, timedelta]] = []
    for service in manifest.services.values():
        duration = max(service.expected_duration, durations.get(service.name, timedelta()))
        tasks += [
            (backup_task(service.name, kind), schedule, duration)
            for kind, schedule in service.schedules.items()
        ]
    # Maintenance holds repository locks (prune: exclusive), so it counts for overlaps.
    maintenance = manifest.maintenance
    tasks += [
        (RETENTION, maintenance.retention, MAINTENANCE_DURATION),
        (CHECK, maintenance.check, MAINTENANCE_DURATION),
    ]
    if manifest.drill is not None:
        # The drills restore every service, one after another; reading takes locks too.
        drilling = sum((s.expected_duration for s in manifest.services.values()), timedelta())
        tasks.append((DRILL, manifest.drill.schedule, drilling))
    runs = [
        Run(when, task, duration)
        for task, schedule, duration in tasks
        for when in schedule.fires_until(start, start + window, MAX_RUNS)
    ]
    return sorted(runs, key=lambda r: (r.start, r.owner))


def overlaps(runs: list[Run]) -> list[tuple[Run, Run]]:
    """Pairs of runs of different owners whose time spans intersect."""
    found = []
    for i, first in enumerate(runs):
        for second in runs[i + 1 :]:
            if second.start >= first.end:
                break
            if second.owner != first.owner:
                found.append((first, second))
    return found


def simulate_retention(manifest: Manifest, service: Service, start: datetime) -> RestorePoints:
    """Create snapshots on the service's schedules and apply retention on its schedule."""
    end = start + SIMULATED
    settle = start + manifest.retention.max_age + manifest.retention.keep_within
    events = heapq.merge(
        *(
            ((t, 1, kind) for t in schedule.fires_until(start, end, MAX_RUNS))
            for kind, schedule in service.schedules.items()
        ),
        ((t, 0, "") for t in manifest.maintenance.retention.fires_until(start, end, MAX_RUNS)),
    )
    kept: list[restic.Snapshot] = []
    counts: list[int] = []
    ages: list[timedelta] = []
    for number, (when, order, kind) in enumerate(events):
        if order == 1:
            kept.append(_fake_snapshot(number, when, service.name, kind))
            continue
        plan = plan_service(Judgement(service.name, trusted=kept), manifest.retention, when)
        kept = list(plan.keep)
        if when >= settle and kept:
            counts.append(len(kept))
            ages.append(when - min(s.time for s in kept))
    if not counts:
        return RestorePoints(service.name, len(kept), len(kept), timedelta(), timedelta())
    return RestorePoints(service.name, min(counts), max(counts), min(ages), max(ages))


def _fake_snapshot(number: int, when: datetime, service: str, kind: str) -> restic.Snapshot:
    ident = f"{number:08x}"
    return restic.Snapshot(ident, ident, when, "plan", (), (f"service={service}", f"kind={kind}"))


def render(manifest: Manifest, start: datetime, durations: dict[str, timedelta]) -> str:
    """The plan as text."""
    tz = next(iter(next(iter(manifest.services.values())).schedules.values())).timezone
    runs = upcoming_runs(manifest, start, durations)
    lines = [f"Runs in the next {WINDOW.days} days ({tz.key}):"]
    for run in runs:
        local = run.start.astimezone(tz)
        took = format_duration(run.duration)
        lines.append(f"  {local:%a %Y-%m-%d %H:%M}  {run.owner:<12} {run.what:<12} ~{took}")
    clashes = overlaps(runs)
    lines.append("")
    if clashes:
        lines.append(f"Overlaps ({len(clashes)}):")
        for first, second in clashes:
            when = second.start.astimezone(tz)
            lines.append(
                f"  {when:%Y-%m-%d %H:%M} {second.owner}/{second.what} starts while "
                f"{first.owner}/{first.what} (from {first.start.astimezone(tz):%H:%M}, "
                f"~{format_duration(first.duration)}) may still run"
            )
    else:
        lines.append("Overlaps: none (by expected or measured durations)")
    retention = manifest.retention
    lines += [
        "",
        f"Retention (keep_within {format_duration(retention.keep_within)}, max_age "
        f"{format_duration(retention.max_age)}, newest always kept), simulated over a year:",
    ]
    for service in manifest.services.values():
        points = simulate_retention(manifest, service, start)
        line = (
            f"  {service.name:<12} restore points {points.fewest}-{points.most}, oldest "
            f"{_days(points.oldest_min)}-{_days(points.oldest_max)} old"
        )
        if points.fewest <= 1:
            line += "  WARNING: at times only one restore point"
        lines.append(line)
    return "\n".join(lines)


def _days(value: timedelta) -> str:
    return f"{value.total_seconds() / 86400:.1f}d"
