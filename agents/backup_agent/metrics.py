"""Prometheus metrics, defined on a registry passed in (never the global one).

Labels are low-cardinality: ``service`` (and ``kind``/``result`` on counters), never
snapshot ids. A service that never succeeded has ``backup_last_success_timestamp_seconds``
of 0, so its age is "since 1970" and the freshness alert fires, while
``backup_runs_total`` stays at zero: a job that never ran looks different from one
that succeeded. Restore-drill metrics (``backup_restore_*``) are read from the drill
report at scrape time (``verify.DrillReportCollector``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

from backup_agent import __version__
from backup_agent.manifest import Manifest
from backup_agent.verify import DrillReportCollector

PREFIX = "backup"


class Metrics:
    """Every metric the agents export, and helpers that set them consistently."""

    def __init__(
        self, registry: CollectorRegistry, role: str = "backup", report_file: str | None = None
    ) -> None:
        self.registry = registry
        if report_file:
            # Restore-drill metrics come from the drill report, read at scrape time.
            registry.register(DrillReportCollector(report_file))

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ("service",)) -> Gauge:
            return Gauge(f"{PREFIX}_{name}", doc, labels, registry=registry)

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=registry)

        self.build_info = Info(
            f"{PREFIX}_agent_build", "Agent version and role.", registry=registry
        )
        self.build_info.info({"version": __version__, "role": role})
        self.rpo = gauge("rpo_seconds", "RPO target from the manifest.")
        self.rto_target = gauge("rto_target_seconds", "RTO target from the manifest.")
        self.rto_limit = gauge("rto_limit_seconds", "RTO hard limit from the manifest.")
        self.last_success = gauge(
            "last_success_timestamp_seconds", "End of the last successful backup; 0 if none."
        )
        self.last_attempt = gauge(
            "last_attempt_timestamp_seconds", "Start of the last backup attempt."
        )
        self.last_result = gauge(
            "last_run_success",
            "1 if the last backup succeeded, 0 if it failed; absent if none ran.",
        )
        self.duration = gauge("last_duration_seconds", "Wall time of the last backup attempt.")
        self.read_bytes = gauge("last_read_bytes", "Bytes read by the last successful backup.")
        self.previous_read_bytes = gauge(
            "previous_read_bytes", "Bytes read by the successful backup before the last one."
        )
        self.added_bytes = gauge(
            "last_added_bytes", "Bytes added to the repository by the last backup."
        )
        self.snapshots = gauge("snapshots", "Snapshots of the service in the repository.")
        self.runs = counter(
            "runs_total", "Backup runs by kind and result.", ("service", "kind", "result")
        )
        self.waits = counter(
            "job_waits_total", "Times a due job waited for another job of the agent.", ("service",)
        )
        self.wait_seconds = counter(
            "job_wait_seconds_total",
            "Seconds due jobs spent waiting for another job.",
            ("service",),
        )
        self.repository_size = Gauge(
            f"{PREFIX}_repository_size_bytes",
            "Stored size of the repository after the last retention run (restic stats raw-data).",
            registry=registry,
        )
        self.maintenance_last_success = gauge(
            "maintenance_last_success_timestamp_seconds",
            "End of the last successful maintenance task (forget+prune, check).",
            ("task",),
        )
        self.maintenance_last_result = gauge(
            "maintenance_last_success",
            "1 if the last run of the task succeeded, 0 if not.",
            ("task",),
        )

    def declare(self, manifest: Manifest, services: list[str], backups: bool = True) -> None:
        """Publish the manifest's targets for ``services``; with ``backups``, also their
        backup series (a zero last-success time until a backup succeeds)."""
        for name in services:
            service = manifest.services[name]
            self.rpo.labels(name).set(service.rpo.total_seconds())
            self.rto_target.labels(name).set(service.rto_target.total_seconds())
            self.rto_limit.labels(name).set(service.rto_limit.total_seconds())
            if not backups:
                continue
            self.last_success.labels(name)
            self.last_attempt.labels(name)
            self.waits.labels(name)
            self.wait_seconds.labels(name)
            for schedule in service.schedules:
                for result in ("success", "failure"):
                    self.runs.labels(name, schedule.kind, result)
