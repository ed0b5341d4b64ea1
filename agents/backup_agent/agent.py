"""``backup-agent run``: wire a role's jobs to the scheduler, the state file and /metrics.

Roles: ``backup`` (a sidecar: the manifest's services, or the ones named),
``maintenance`` (beside the repository: retention then prune, and checks) and
``verifier`` (restore drills on the verification schedule, on another machine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial

from prometheus_client import CollectorRegistry, start_http_server

from backup_agent import maintenance, restic, runs
from backup_agent.errors import BackupError
from backup_agent.jobs.base import META_KIND
from backup_agent.manifest import Manifest
from backup_agent.metrics import Metrics
from backup_agent.scheduler import Scheduler, Task
from backup_agent.state import State
from backup_agent.verify import run_drills

log = logging.getLogger("backup_agent.agent")
ROLES = ("backup", "maintenance", "verifier")


def backup_tasks(
    manifest: Manifest, names: Sequence[str], state: State, metrics: Metrics
) -> list[Task]:
    """One task per schedule of each named service."""
    return [
        Task(
            name,
            schedule,
            partial(runs.run_backup, manifest, service, schedule.kind, state, metrics),
        )
        for name in names
        for service in [manifest.service(name)]
        for schedule in service.schedules
    ]


def maintenance_tasks(manifest: Manifest, state: State, metrics: Metrics) -> list[Task]:
    """Retention (forget then prune) and the rotating check, on their schedules.

    Each has its own task name, so that both run when their slots coincide.
    """
    settings = manifest.maintenance

    def check() -> str:
        return maintenance.check_repository(manifest, state.job("check", "check").successes)

    def forget() -> None:
        retention(manifest, metrics)

    return [
        Task(
            "retention",
            settings.forget,
            partial(run_maintenance, "retention", "forget", state, metrics, forget),
        ),
        Task(
            "check",
            settings.check,
            partial(run_maintenance, "check", "check", state, metrics, check),
        ),
    ]


def publish_maintenance(metrics: Metrics, state: State) -> None:
    """Maintenance metrics from the state file (at start-up and on every tick)."""
    for name, task in (("retention", "forget"), ("check", "check")):
        if state.known(name, task):
            job = state.job(name, task)
            metrics.maintenance_last_result.labels(task).set(
                1 if job.last_success >= job.last_run else 0
            )
            metrics.maintenance_last_success.labels(task).set(job.last_success)


def verifier_tasks(manifest: Manifest, state: State) -> list[Task]:
    """The restore drills of every service, on the verification schedule."""
    verification = manifest.verification
    if verification is None:
        raise BackupError(f"{manifest.source}: the verifier role needs a verification section")

    def drills() -> None:
        with runs.recorded(state, "verifier", "drill") as job:
            run_drills(manifest, list(manifest.services), verification.report_file, job.successes)

    # No drill at first start: there may be no backup yet to restore.
    return [Task("verifier", verification.schedule, drills, first_run=False)]


def retention(manifest: Manifest, metrics: Metrics) -> None:
    """Apply retention and prune, then publish what the repository holds."""
    maintenance.apply_retention(manifest, datetime.now(UTC), dry_run=False)
    publish_repository(manifest, metrics)


def publish_repository(manifest: Manifest, metrics: Metrics) -> None:
    """Snapshots per service (dumps, not their metadata) and the repository's size."""
    repo = maintenance.maintenance_repository(manifest)
    snapshots = restic.all_snapshots(repo)
    for name in manifest.services:
        metrics.snapshots.labels(name).set(
            sum(1 for s in snapshots if s.tag("service") == name and s.tag("kind") != META_KIND)
        )
    metrics.repository_size.set(restic.stats(repo, mode="raw-data").total_size)


def run_maintenance(
    name: str, task: str, state: State, metrics: Metrics, action: Callable[[], object]
) -> object:
    """Run a maintenance action with bookkeeping, then publish its metrics."""
    try:
        with runs.recorded(state, name, task):
            return action()
    finally:
        publish_maintenance(metrics, state)


def serve(manifest: Manifest, role: str, names: Sequence[str]) -> None:
    """Run the role's jobs on schedule until SIGTERM."""
    restic.require_version()
    registry = CollectorRegistry()
    report = (
        manifest.verification.report_file if manifest.verification and role == "verifier" else None
    )
    metrics = Metrics(registry, role, report)
    state = State(manifest.agent.state_dir)
    selected = list(names) or list(manifest.services)

    def publish() -> None:
        state.reload()
        if role == "backup":
            for name in selected:
                runs.publish(metrics, state, manifest.service(name))
        elif role == "maintenance":
            publish_maintenance(metrics, state)

    if role == "backup":
        metrics.declare(manifest, selected)
        tasks = backup_tasks(manifest, selected, state, metrics)
    elif role == "maintenance":
        tasks = maintenance_tasks(manifest, state, metrics)
    else:
        metrics.declare(manifest, selected, backups=False)
        tasks = verifier_tasks(manifest, state)
    publish()
    if manifest.agent.metrics_port:
        start_http_server(
            manifest.agent.metrics_port, manifest.agent.metrics_address, registry=registry
        )
        log.info(
            "serving metrics on %s:%d", manifest.agent.metrics_address, manifest.agent.metrics_port
        )
    if role == "maintenance":
        # Known now, not only after the next retention run (a restart must not blank them).
        try:
            publish_repository(manifest, metrics)
        except BackupError as exc:
            log.warning("snapshot counts and repository size wait for retention: %s", exc)

    def last_run(task: Task) -> float | None:
        known = state.known(task.service, task.kind)
        return state.job(task.service, task.kind).last_run if known else None

    def on_wait(task: Task, seconds: float) -> None:
        if role == "backup":
            metrics.waits.labels(task.service).inc()
            metrics.wait_seconds.labels(task.service).inc(seconds)

    log.info(
        "agent started: role %s, jobs %s", role, ", ".join(f"{t.service}/{t.kind}" for t in tasks)
    )
    Scheduler(tasks, last_run, on_wait, on_tick=publish).run_forever()
