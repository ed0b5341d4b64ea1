"""``backup-agent plan``: the schedule and retention policy as a person needs to see them.

Shows the next two weeks of runs (backups, maintenance and the drills), flags runs
of different owners that overlap (by expected or measured duration), and simulates
the retention policy against each schedule with the same code that applies it
(``retention.plan_service``) to give the worst-case number and age of restore
points per service, and for MySQL services that ship binlogs the point-in-time
window (from the oldest kept dump to the newest shipment). Binlog shipping runs too
often to list: ``plan`` says how often it runs instead, and leaves it out of the
overlaps (a shipment takes seconds and holds no exclusive lock). For MySQL services it
gives the expected restore time of each method the service backs up by: the newest
backup's size over the throughput the last drill of that method measured.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from backup_agent import restic, snapshots
from backup_agent.jobs.mysql.binlog.chain import Coordinates, dump_tags, stamp
from backup_agent.jobs.mysql.record import method_of
from backup_agent.manifest import Manifest, MysqlOptions, Schedule, Service, format_duration
from backup_agent.retention import plan_service
from backup_agent.snapshots import BINLOG_KIND, META_KIND, Judgement
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


def _fake_snapshot(
    number: int, when: datetime, service: str, kind: str, **tags: str
) -> restic.Snapshot:
    ident = f"{number:08x}"
    labels = (f"service={service}", f"kind={kind}", *(f"{k}={v}" for k, v in tags.items()))
    return restic.Snapshot(ident, ident, when, "plan", ("/spool",), labels)


@dataclass(frozen=True)
class PitrWindow:
    """The point-in-time window over the simulated year, after the policy has settled."""

    service: str
    shortest: timedelta
    longest: timedelta


def _position(moment: datetime) -> Coordinates:
    """Where a simulated server's binlog is at ``moment``: a file a day, a byte a second."""
    seconds = int(moment.timestamp())
    return Coordinates(f"sim-bin.{seconds // 86400:06d}", seconds % 86400)


# Shipments in the simulation: one an hour (the window's length does not depend on how
# finely the binlogs are cut), into one binlog file a day.
SIMULATED_SHIPPING = timedelta(hours=1)


def simulate_window(manifest: Manifest, service: Service, start: datetime) -> PitrWindow:
    """Dumps on the service's schedule, each recording a binlog position, hourly binlog
    shipments, and retention on its schedule: the window is measured at each retention
    run from the oldest kept dump to the newest kept shipment."""
    end = start + SIMULATED
    settle = start + manifest.retention.max_age + manifest.retention.keep_within
    shipping = Schedule("0 * * * *", ZoneInfo("UTC"))
    events = heapq.merge(
        *(
            ((t, 2, kind) for t in schedule.fires_until(start, end, MAX_RUNS))
            for kind, schedule in service.schedules.items()
        ),
        ((t, 1, BINLOG_KIND) for t in shipping.fires_until(start, end, MAX_RUNS)),
        ((t, 0, "") for t in manifest.maintenance.retention.fires_until(start, end, MAX_RUNS)),
    )
    trusted: list[restic.Snapshot] = []
    records: dict[str, restic.Snapshot] = {}
    binlogs: list[restic.Snapshot] = []
    lengths: list[timedelta] = []
    for number, (when, order, kind) in enumerate(events):
        if order == 2:  # a dump, at a position of the day's file (one byte a second)
            dump = _fake_snapshot(number, when, service.name, kind)
            at = dump_tags(_position(when), when)
            records[dump.id] = _fake_snapshot(number, when, service.name, META_KIND, **at)
            trusted.append(dump)
        elif order == 1:  # the hour before: a segment of its day's file, closed at midnight
            hour = _position(when - SIMULATED_SHIPPING)
            day = int((when - SIMULATED_SHIPPING).timestamp()) // 86400 * 86400
            ends = hour.position + 3600
            closed = ":closed" if ends >= 86400 else ""
            segment = f"{hour.file}@{day}:{hour.position}-{ends}{closed}"
            tags = {"binlog": segment, "until": stamp(when)}
            binlogs.append(_fake_snapshot(number, when, service.name, BINLOG_KIND, **tags))
        else:
            judged = Judgement(service.name, trusted=trusted, records=records, binlogs=binlogs)
            kept = {s.id for s in plan_service(judged, manifest.retention, when).keep}
            trusted = [s for s in trusted if s.id in kept]
            binlogs = [s for s in binlogs if s.id in kept]
            if when >= settle and trusted and binlogs:
                lengths.append(binlogs[-1].time - trusted[0].time)
    if not lengths:
        return PitrWindow(service.name, timedelta(), timedelta())
    return PitrWindow(service.name, min(lengths), max(lengths))


@dataclass(frozen=True)
class RestoreRate:
    """What the last drill of one method measured: ``bytes`` restored in ``seconds``,
    ending at ``finished`` (Unix time)."""

    bytes: int
    seconds: float
    finished: float


def restore_rates(report: Mapping[str, Any]) -> dict[str, dict[str, RestoreRate]]:
    """Per service and method, the last measured restore in a drill report
    (``drill.restore_rates``); an entry that does not parse is left out."""
    rates: dict[str, dict[str, RestoreRate]] = {}
    for name, entry in (report.get("services") or {}).items():
        try:
            for method, value in (entry.get("restore_rates") or {}).items():
                rate = RestoreRate(
                    int(value["bytes"]), float(value["seconds"]), float(value["finished"])
                )
                if rate.bytes > 0 and rate.seconds > 0:
                    rates.setdefault(name, {})[method] = rate
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
    return rates


def restore_methods(service: Service) -> tuple[str, ...]:
    """How a MySQL service's backups restore: ``logical`` (dumps), ``physical`` (copies)."""
    options = service.options
    if not isinstance(options, MysqlOptions):
        return ()
    return tuple(m for m in ("logical", "physical") if options.method in (m, "both"))


def newest_sizes(manifest: Manifest, service: Service) -> dict[str, int]:
    """Bytes of the newest trusted snapshot of each method (restic's summary), from
    the repository."""
    listed = snapshots.of_service(manifest, service)
    judged = snapshots.judge(listed, service, snapshots.Trust.of(manifest))
    return {method_of(s): int(s.summary.get("total_bytes_processed", 0)) for s in judged.trusted}


def expected_restores(
    service: Service, rates: Mapping[str, RestoreRate], sizes: Mapping[str, int]
) -> list[str]:
    """A line per restore method of a MySQL service: its newest backup's size over the
    throughput of the last drill of that method, against the RTO target."""
    lines = []
    for method in restore_methods(service):
        head = f"  {service.name:<12} {method:<9}"
        rate, size = rates.get(method), sizes.get(method, 0)
        if rate is None:
            lines.append(f"{head}not measured yet (no drill has restored by this method)")
            continue
        when = datetime.fromtimestamp(rate.finished, UTC)
        drilled = f"drill of {when:%Y-%m-%d}: {_mb(rate.bytes)} in {_took(rate.seconds)}"
        if not size:
            lines.append(f"{head}size of the newest backup unknown ({drilled})")
            continue
        seconds = size * rate.seconds / rate.bytes
        per_second = rate.bytes / rate.seconds / 1e6
        line = f"{head}~{_took(seconds)} for {_mb(size)} at {per_second:.1f} MB/s ({drilled})"
        if seconds > service.rto_target.total_seconds():
            line += f"  WARNING: above the RTO target {format_duration(service.rto_target)}"
        lines.append(line)
    return lines


def _mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size} bytes"


def _took(seconds: float) -> str:
    """Seconds below two minutes, else whole minutes."""
    if seconds < 120:
        return f"{max(1, round(seconds))}s"
    return format_duration(timedelta(minutes=round(seconds / 60)))


def render(
    manifest: Manifest,
    start: datetime,
    durations: dict[str, timedelta],
    rates: Mapping[str, Mapping[str, RestoreRate]] | None = None,
    sizes: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """The plan as text; ``rates`` and ``sizes`` (per service) for the expected
    restore times."""
    tz = next(iter(next(iter(manifest.services.values())).schedules.values())).timezone
    runs = upcoming_runs(manifest, start, durations)
    lines = [f"Runs in the next {WINDOW.days} days ({tz.key}):"]
    for run in runs:
        local = run.start.astimezone(tz)
        took = format_duration(run.duration)
        lines.append(f"  {local:%a %Y-%m-%d %H:%M}  {run.owner:<12} {run.what:<12} ~{took}")
    for service in manifest.services.values():
        if service.binlog is not None:
            every = service.binlog.every
            lines.append(
                f"  (and every {format_duration(every)}: {service.name} binlog shipping, "
                f"{int(timedelta(days=1) / every)} runs a day, not listed)"
            )
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
    shipping = [s for s in manifest.services.values() if s.binlog is not None]
    if shipping:
        lines += [
            "",
            "Point-in-time recovery (binlogs shipped between dumps), simulated over a year:",
        ]
    for service in shipping:
        assert service.binlog is not None
        window = simulate_window(manifest, service, start)
        lines.append(
            f"  {service.name:<12} any second of the last {_days(window.shortest)}-"
            f"{_days(window.longest)}, to within {format_duration(service.binlog.every)}"
            f" (binlog rpo {format_duration(service.binlog.rpo)})"
        )
    mysql = [s for s in manifest.services.values() if restore_methods(s)]
    if mysql:
        lines += [
            "",
            "Expected restore time (newest backup / throughput of the last drill by its method):",
        ]
    for service in mysql:
        measured = (rates or {}).get(service.name, {})
        lines += expected_restores(service, measured, (sizes or {}).get(service.name, {}))
    return "\n".join(lines)


def _days(value: timedelta) -> str:
    return f"{value.total_seconds() / 86400:.1f}d"
