"""``backup-agent run``: wire a role's jobs to the scheduler, the state file and /metrics.

Roles: ``backup`` (a sidecar: the manifest's services, or the ones named) and
``maintenance`` (beside the repository: retention then prune, and checks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial

from prometheus_client import CollectorRegistry, start_http_server

from backup_agent import maintenance, restic, runs
from backup_agent.errors import BackupError, Interrupted
from backup_agent.manifest import Manifest
from backup_agent.metrics import Metrics
from backup_agent.scheduler import Scheduler, Task
from backup_agent.state import State

log = logging.getLogger("backup_agent.agent")
ROLES = ("backup", "maintenance")


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


def retention(manifest: Manifest, metrics: Metrics) -> None:
    plans = maintenance.apply_retention(manifest, datetime.now(UTC), dry_run=False)
    for plan in plans:
        metrics.snapshots.labels(plan.service).set(
            len([s for s in plan.keep if s.tag("kind") != "meta"])
        )


def run_maintenance(
    name: str, task: str, state: State, metrics: Metrics, action: Callable[[], object]
) -> object:
    """Run a maintenance action with bookkeeping and its two metrics (label ``task``)."""
    try:
        with runs.recorded(state, name, task):
            result = action()
    except Interrupted:
        raise
    except BackupError:
        metrics.maintenance_last_result.labels(task).set(0)
        raise
    metrics.maintenance_last_result.labels(task).set(1)
    metrics.maintenance_last_success.labels(task).set(time.time())
    return result


def serve(manifest: Manifest, role: str, names: Sequence[str]) -> None:
    """Run the role's jobs on schedule until SIGTERM."""
    restic.require_version()
    registry = CollectorRegistry()
    metrics = Metrics(registry, role)
    state = State(manifest.agent.state_dir)
    if role == "backup":
        selected = list(names) or list(manifest.services)
        metrics.declare(manifest, selected)
        for name in selected:
            runs.publish(metrics, state, manifest.service(name))
        tasks = backup_tasks(manifest, selected, state, metrics)
    else:
        tasks = maintenance_tasks(manifest, state, metrics)
    if manifest.agent.metrics_port:
        start_http_server(
            manifest.agent.metrics_port, manifest.agent.metrics_address, registry=registry
        )
        log.info(
            "serving metrics on %s:%d", manifest.agent.metrics_address, manifest.agent.metrics_port
        )

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
    Scheduler(tasks, last_run, on_wait).run_forever()
