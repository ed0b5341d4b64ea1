"""Prometheus metrics: defined on a registry passed in (never the global one), and
published from here only. The other modules report what happened (a run recorded in
the state file, a repository's contents, a drill report) and this module turns it
into series.

Labels are low-cardinality: ``service`` (and ``kind``/``result`` on counters, ``task``
on maintenance), never snapshot ids. A service that never succeeded has
``backup_last_success_timestamp_seconds`` of 0, so its age is "since 1970" and the
freshness alert fires, while ``backup_runs_total`` stays at zero: a service that never
ran looks different from one that succeeded. Drill metrics (``backup_drill_*``) are
read from the drill report at scrape time, so drills started by an operator show too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from backup_agent import __version__, kit
from backup_agent.drill import read_report
from backup_agent.jobs.mysql.binlog.events import BinlogGap
from backup_agent.jobs.mysql.binlog.pitr import Shipped
from backup_agent.manifest import Manifest, Service
from backup_agent.repository_errors import REASONS
from backup_agent.state import (
    CHECK,
    COPY,
    RETENTION,
    SHIPPING,
    State,
    backup_task,
    binlog_task,
)
from backup_agent.survey import Survey

PREFIX = "backup"
MAINTENANCE_TASKS = (RETENTION, CHECK, COPY)


# Per-service gauges, by name (without the ``backup_`` prefix) with their help text.
SERVICE_GAUGES = {
    "rpo_seconds": "RPO target from the manifest.",
    "rto_target_seconds": "RTO target from the manifest.",
    "rto_limit_seconds": "RTO hard limit from the manifest.",
    "last_success_timestamp_seconds": "End of the last successful backup; 0 if none.",
    "last_attempt_timestamp_seconds": "Start of the last backup attempt.",
    "last_run_success": "1 if the last backup succeeded, 0 if it failed; absent if none ran.",
    "last_duration_seconds": "Wall time of the last backup attempt.",
    "last_read_bytes": "Bytes read by the last successful backup.",
    "previous_read_bytes": "Bytes read by the successful backup before the last one.",
    "last_added_bytes": "Bytes added to the repository by the last backup.",
    "snapshots": "Trusted snapshots of the service in the repository (maintenance role).",
    "untrusted_snapshots": "Snapshots of the service the trust rule refuses: kept, never used.",
    "newest_snapshot_timestamp_seconds": "Time of the newest trusted snapshot; 0 if none.",
    "drilled_snapshot_timestamp_seconds": (
        "Time of the newest trusted snapshot that passed a drill (signed record); 0 if none."
    ),
    "snapshots_last_day": "Trusted snapshots made in the last 24 hours.",
    "snapshots_expected_last_day": "Runs the service's schedules had in the last 24 hours.",
    "newest_snapshot_bytes": "Bytes the newest trusted snapshot read (restic's summary).",
    "typical_snapshot_bytes": "Median bytes read by the snapshots before the newest; 0 if none.",
    "orphaned_snapshots": "Snapshots tagged with a service the manifest does not name.",
    "copy_newest_snapshot_timestamp_seconds": (
        "Time of the newest trusted snapshot in the second copy (maintenance.copy); 0 if none."
    ),
}
# Per-service gauges of point-in-time recovery (MySQL services that ship binlogs).
BINLOG_GAUGES = {
    "binlog_last_success_timestamp_seconds": (
        "End of the last successful binlog shipping run: everything committed before it is"
        " in the repository; 0 if none."
    ),
    "binlog_rpo_seconds": "RPO of the shipped binlogs (binlog.rpo in the manifest).",
    "pitr_window_seconds": (
        "Length of the point-in-time window that ends at the newest shipment: every second"
        " in it is restorable; 0 if none."
    ),
    "binlog_covered_until_timestamp_seconds": (
        "End of the point-in-time window: the newest shipment of the newest dump's chain."
    ),
    "binlog_chain_broken": (
        "1 while the newest dump's binlog chain is broken (a binlog purged before it was"
        " shipped, or no dump with a position): the next dump starts a new chain."
    ),
}
# Limits from the manifest the maintenance role's alerts compare against.
LIMIT_GAUGES = {
    "retention_max_age_seconds": "Retention's max_age: no trusted snapshot is kept longer.",
    "drill_max_age_seconds": "drill.max_age: the newest drilled snapshot must be younger.",
    "copy_max_age_seconds": "maintenance.copy.max_age: the copy's newest snapshot must be younger.",
    "repository_size_limit_bytes": (
        "repository.size_limit (rest-server --max-size): what the server stores at most; 0 if none."
    ),
}
# Per-maintenance-task gauges (label ``task``: retention, check, copy).
TASK_GAUGES = {
    "maintenance_last_success_timestamp_seconds": (
        "End of the last successful maintenance task (retention, check, copy)."
    ),
    "maintenance_last_success": "1 if the last run of the task succeeded, 0 if not.",
}


class Metrics:
    """Every metric the agents export, and the functions that set them."""

    def __init__(
        self,
        registry: CollectorRegistry,
        role: str = "backup",
        report_file: str | None = None,
        recovery_kit: kit.Watch | None = None,
    ) -> None:
        self.registry = registry
        if report_file:
            registry.register(DrillReportCollector(report_file))
        if recovery_kit:
            registry.register(RecoveryKitCollector(recovery_kit))
        self.gauges = {
            name: Gauge(f"{PREFIX}_{name}", doc, ("service",), registry=registry)
            for name, doc in SERVICE_GAUGES.items()
        }
        self.task_gauges = {
            name: Gauge(f"{PREFIX}_{name}", doc, ("task",), registry=registry)
            for name, doc in TASK_GAUGES.items()
        }
        self.runs = Counter(
            f"{PREFIX}_runs_total",
            "Backup runs by kind and result.",
            ("service", "kind", "result"),
            registry=registry,
        )
        # (service, reason) -> failed backups, as the state file counts them.
        self.failure_counts: dict[tuple[str, str], int] = {}
        registry.register(FailureCollector(self.failure_counts))
        self.waits = Counter(
            f"{PREFIX}_task_waits_total",
            "Times a due backup waited for another task of the agent.",
            ("service",),
            registry=registry,
        )
        self.wait_seconds = Counter(
            f"{PREFIX}_task_wait_seconds_total",
            "Seconds due backups spent waiting for another task of the agent.",
            ("service",),
            registry=registry,
        )
        self.binlog = {
            name: Gauge(f"{PREFIX}_{name}", doc, ("service",), registry=registry)
            for name, doc in BINLOG_GAUGES.items()
        }
        self.chain_breaks = Counter(
            f"{PREFIX}_binlog_chain_breaks_total",
            "Shipping runs that found binlogs purged on the server before they were shipped.",
            ("service",),
            registry=registry,
        )
        self.shipped_bytes = Counter(
            f"{PREFIX}_binlog_shipped_bytes_total",
            "Bytes of binary logs shipped into the repository.",
            ("service",),
            registry=registry,
        )
        self.limits = {
            name: Gauge(f"{PREFIX}_{name}", doc, registry=registry)
            for name, doc in LIMIT_GAUGES.items()
        }
        self.repository_size = Gauge(
            f"{PREFIX}_repository_size_bytes",
            "Stored size of the repository after the last retention run (restic stats raw-data).",
            registry=registry,
        )
        Info(f"{PREFIX}_agent_build", "Agent version and role.", registry=registry).info(
            {"version": __version__, "role": role}
        )

    def service(self, name: str, gauge: str) -> Gauge:
        """The series of ``gauge`` (a key of ``SERVICE_GAUGES``) for one service."""
        return self.gauges[gauge].labels(name)

    def declare(self, manifest: Manifest, services: Sequence[str], backups: bool = True) -> None:
        """Publish the manifest's targets for ``services``; with ``backups``, also their
        backup series (a zero last-success time until a backup succeeds)."""
        for name in services:
            service = manifest.services[name]
            self.service(name, "rpo_seconds").set(service.rpo.total_seconds())
            self.service(name, "rto_target_seconds").set(service.rto_target.total_seconds())
            self.service(name, "rto_limit_seconds").set(service.rto_limit.total_seconds())
            if not backups:
                continue
            self.service(name, "last_success_timestamp_seconds")
            self.service(name, "last_attempt_timestamp_seconds")
            self.waits.labels(name)
            self.wait_seconds.labels(name)
            # Zero from the start, so that the first failure is an increase (alerts).
            for reason in (*REASONS, *((BinlogGap.reason,) if service.binlog else ())):
                self.failure_counts.setdefault((name, reason), 0)
            for kind in service.schedules:
                for result in ("success", "failure"):
                    self.runs.labels(name, kind, result)
            if service.binlog is not None:
                self.binlog["binlog_rpo_seconds"].labels(name).set(
                    service.binlog.rpo.total_seconds()
                )
                self.binlog["binlog_last_success_timestamp_seconds"].labels(name)
                self.chain_breaks.labels(name)
                self.shipped_bytes.labels(name)
                for result in ("success", "failure"):
                    self.runs.labels(name, SHIPPING, result)

    def backup_started(self, service: Service) -> None:
        self.service(service.name, "last_attempt_timestamp_seconds").set(time.time())

    def backup_ended(
        self, service: Service, kind: str, state: State, added_bytes: int | None
    ) -> None:
        """Count a finished backup (``added_bytes`` None: it failed) and republish."""
        result = "failure" if added_bytes is None else "success"
        self.runs.labels(service.name, kind, result).inc()
        if added_bytes is not None:
            self.service(service.name, "last_added_bytes").set(added_bytes)
        self.publish_backups(service, state)

    def publish_backups(self, service: Service, state: State) -> None:
        """A service's backup series from its recorded runs (after a run, at start-up)."""
        tasks = [backup_task(service.name, kind) for kind in service.schedules]
        runs = [state.run(task) for task in tasks if state.known(task)]
        if not runs:
            return
        self.publish_failures(service, state)
        latest_run = max(runs, key=lambda r: r.last_run)
        latest_success = max(runs, key=lambda r: r.last_success)
        name = service.name
        self.service(name, "last_success_timestamp_seconds").set(latest_success.last_success)
        self.service(name, "last_attempt_timestamp_seconds").set(latest_run.last_run)
        succeeded = latest_run.last_success >= latest_run.last_run
        self.service(name, "last_run_success").set(1 if succeeded else 0)
        self.service(name, "last_duration_seconds").set(latest_run.last_duration)
        if latest_success.last_success:
            self.service(name, "last_read_bytes").set(latest_success.last_bytes)
            self.service(name, "previous_read_bytes").set(latest_success.previous_bytes)

    def publish_failures(self, service: Service, state: State) -> None:
        """Failures by reason, summed over the service's tasks (binlog shipping too)."""
        tasks = [backup_task(service.name, kind) for kind in service.schedules]
        if service.binlog is not None:
            tasks.append(binlog_task(service.name))
        failures: dict[str, int] = {}
        for run in (state.run(task) for task in tasks if state.known(task)):
            for reason, count in run.failures.items():
                failures[reason] = failures.get(reason, 0) + count
        for reason, count in failures.items():
            self.failure_counts[(service.name, reason)] = count

    def publish_binlog(self, service: Service, state: State) -> None:
        """The last successful shipping run, from the state file."""
        task = binlog_task(service.name)
        if service.binlog is not None and state.known(task):
            self.binlog["binlog_last_success_timestamp_seconds"].labels(service.name).set(
                state.run(task).last_success
            )
            self.publish_failures(service, state)

    def binlog_shipped(self, service: Service, shipped: Shipped) -> None:
        """What one shipping run stored, and the newest dump's chain afterwards."""
        name, status = service.name, shipped.status
        self.shipped_bytes.labels(name).inc(shipped.bytes)
        if shipped.gap:
            self.chain_breaks.labels(name).inc()
        self.binlog["binlog_chain_broken"].labels(name).set(1 if status.broken else 0)
        self.binlog["pitr_window_seconds"].labels(name).set(status.window.total_seconds())
        if status.covered_until is not None:
            self.binlog["binlog_covered_until_timestamp_seconds"].labels(name).set(
                status.covered_until.timestamp()
            )

    def binlog_ended(self, service: Service, state: State, *, succeeded: bool) -> None:
        """Count a finished shipping run and republish (failures by reason from ``state``)."""
        self.runs.labels(service.name, SHIPPING, "success" if succeeded else "failure").inc()
        self.publish_binlog(service, state)

    def waited(self, service: str, seconds: float) -> None:
        self.waits.labels(service).inc()
        self.wait_seconds.labels(service).inc(seconds)

    def publish_maintenance(self, state: State) -> None:
        """Maintenance series from the state file (at start-up and on every tick)."""
        for task in MAINTENANCE_TASKS:
            if state.known(task):
                run = state.run(task)
                succeeded = run.last_success >= run.last_run
                self.task_gauges["maintenance_last_success"].labels(task.name).set(
                    1 if succeeded else 0
                )
                self.task_gauges["maintenance_last_success_timestamp_seconds"].labels(
                    task.name
                ).set(run.last_success)

    def publish_survey(self, found: Survey, size: int) -> None:
        """What the repository holds per service (maintenance role), and its size."""
        for name, service in found.services.items():
            values = {
                "snapshots": service.snapshots,
                "untrusted_snapshots": service.untrusted,
                "newest_snapshot_timestamp_seconds": service.newest,
                "drilled_snapshot_timestamp_seconds": service.newest_drilled,
                "snapshots_last_day": service.recent,
                "snapshots_expected_last_day": service.expected_recent,
                "newest_snapshot_bytes": service.newest_bytes,
                "typical_snapshot_bytes": service.typical_bytes,
            }
            for gauge, value in values.items():
                self.service(name, gauge).set(value)
        self.gauges["orphaned_snapshots"].clear()
        for name, count in found.orphans.items():
            self.service(name, "orphaned_snapshots").set(count)
        self.repository_size.set(size)

    def declare_limits(self, manifest: Manifest) -> None:
        """The manifest's limits the maintenance role's alerts compare against."""
        self.limits["retention_max_age_seconds"].set(manifest.retention.max_age.total_seconds())
        if manifest.drill is not None:
            self.limits["drill_max_age_seconds"].set(manifest.drill.max_age.total_seconds())
        if manifest.maintenance.copy is not None:
            limit = manifest.maintenance.copy.max_age.total_seconds()
            self.limits["copy_max_age_seconds"].set(limit)
        self.limits["repository_size_limit_bytes"].set(manifest.size_limit or 0)

    def publish_copy(self, newest: Mapping[str, float]) -> None:
        """The newest trusted snapshot of each service in the second copy (after a copy)."""
        for name, when in newest.items():
            self.service(name, "copy_newest_snapshot_timestamp_seconds").set(when)


class FailureCollector(Collector):
    """``backup_failures_total{service,reason}``: failed backups by cause, from the state
    file, so that failures of one-shot runs (``make backup-now``) count too."""

    def __init__(self, counts: dict[tuple[str, str], int]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            f"{PREFIX}_failures",
            "Failed backups by cause (server_unreachable, access_refused, repository_missing, "
            "wrong_password, repository_not_writable, locked, dump_failed, timeout, empty, "
            "clock_skew, wrong_endpoint, ...).",
            labels=["service", "reason"],
        )
        for (service, reason), count in sorted(self.counts.copy().items()):  # scrape thread
            family.add_metric([service, reason], count)
        yield family


class DrillReportCollector(Collector):
    """Drill metrics, read from the drill report file at every scrape."""

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterator[GaugeMetricFamily]:
        services = read_report(self.path).get("services", {})
        success_time = GaugeMetricFamily(
            f"{PREFIX}_drill_last_success_timestamp_seconds",
            "End of the last passing restore drill; 0 if none passed.",
            labels=["service"],
        )
        result = GaugeMetricFamily(
            f"{PREFIX}_drill_last_success",
            "1 if the last restore drill passed, 0 if it failed.",
            labels=["service"],
        )
        duration = GaugeMetricFamily(
            f"{PREFIX}_drill_duration_seconds",
            "Measured restore time of the last drill, from start of restore to verified.",
            labels=["service"],
        )
        for name, entry in sorted(services.items()):
            success_time.add_metric([name], float(entry.get("last_success", 0.0)))
            result.add_metric([name], 1.0 if entry.get("passed") else 0.0)
            duration.add_metric([name], float(entry.get("seconds", 0.0)))
        yield from (success_time, result, duration)


class RecoveryKitCollector(Collector):
    """Whether the secrets this role holds are in the last recovery kit (maintenance
    role), read from the export record at every scrape."""

    def __init__(self, watch: kit.Watch) -> None:
        self.watch = watch

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self.watch.status()
        yield GaugeMetricFamily(
            f"{PREFIX}_recovery_kit_timestamp_seconds",
            "When the last recovery kit was exported; 0 if none ever was.",
            value=status.exported,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_recovery_kit_current",
            "1 if every secret this role holds is in the last recovery kit, unchanged; "
            "0 if one changed since, or no kit was exported.",
            value=1.0 if status.current else 0.0,
        )
