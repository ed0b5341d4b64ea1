"""``backup-agent run``: wire a role's tasks to the scheduler, the state file and /metrics.

Roles: ``backup`` (a sidecar: the manifest's services, or the ones named),
``maintenance`` (beside the repository: retention then prune, checks, and the second
copy when ``maintenance.copy`` asks for one) and
``verifier`` (restore drills on the drill schedule, on another machine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial

from prometheus_client import CollectorRegistry, start_http_server

from backup_agent import execute, maintenance, restic, runs
from backup_agent import repository_guard as guard
from backup_agent.drill import run_drills
from backup_agent.errors import BackupError
from backup_agent.jobs.base import require_drill
from backup_agent.jobs.mysql.scratch import prepare_verifier
from backup_agent.manifest import Manifest
from backup_agent.metrics import Metrics
from backup_agent.scheduler import Scheduler, Task
from backup_agent.state import CHECK, COPY, DRILL, RETENTION, State, backup_task

log = logging.getLogger("backup_agent.agent")
ROLES = ("backup", "maintenance", "verifier")


def backup_tasks(
    manifest: Manifest, names: Sequence[str], state: State, metrics: Metrics
) -> list[Task]:
    """One task per schedule of each named service."""
    return [
        Task(
            backup_task(name, kind),
            schedule,
            partial(runs.run_backup, manifest, service, kind, state, metrics),
        )
        for name in names
        for service in [manifest.service(name)]
        for kind, schedule in service.schedules.items()
    ]


def maintenance_tasks(manifest: Manifest, state: State, metrics: Metrics) -> list[Task]:
    """Retention (forget then prune), the rotating check and the copy, on their
    schedules; each publishes the maintenance metrics when it ends, whatever the outcome."""

    limit = manifest.maintenance.deadline.total_seconds()

    def retention() -> None:
        with runs.recorded(state, RETENTION), execute.Deadline(limit, "retention"):
            maintenance.apply_retention(manifest, datetime.now(UTC), dry_run=False)
            metrics.publish_survey(*maintenance.survey_repositories(manifest))

    def check() -> None:
        with runs.recorded(state, CHECK) as outcome, execute.Deadline(limit, "check"):
            maintenance.check_repositories(manifest, outcome.before.successes)

    def copy() -> None:
        with runs.recorded(state, COPY), execute.Deadline(limit, "copy"):
            metrics.publish_copy(maintenance.copy_repositories(manifest))

    def published(action: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                action()
            finally:
                metrics.publish_maintenance(state)

        return run

    settings = manifest.maintenance
    tasks = [
        Task(RETENTION, settings.retention, published(retention)),
        Task(CHECK, settings.check, published(check)),
    ]
    if settings.copy is not None:
        tasks.append(Task(COPY, settings.copy.schedule, published(copy)))
    return tasks


def verifier_tasks(manifest: Manifest, state: State) -> list[Task]:
    """The restore drills of every service, on the drill schedule."""
    settings = require_drill(manifest)

    def drills() -> None:
        with runs.recorded(state, DRILL) as outcome:
            run_drills(
                manifest, list(manifest.services), settings.report_file, outcome.before.successes
            )

    # No drill at first start: there may be no backup yet to restore.
    return [Task(DRILL, settings.schedule, drills, first_run=False)]


def remove_stale_locks(manifest: Manifest, names: Sequence[str]) -> None:
    """Remove the locks a killed restic of this host left (SIGKILL, OOM): restic proves
    them stale by their dead process id. Backups are not blocked by them, but retention
    and checks would be until they are 30 minutes old."""
    for repo, served in manifest.repositories().values():
        if not set(served) & set(names):
            continue
        try:
            said = restic.unlock(repo, guard.PREFLIGHT)
        except BackupError as exc:
            log.warning("could not look for stale locks: %s", exc)
            continue
        if said:
            log.info("stale locks of this host: %s", said)


def serve(manifest: Manifest, role: str, names: Sequence[str]) -> None:
    """Run the role's tasks on schedule until SIGTERM."""
    if role == "verifier" and manifest.drill and manifest.drill.mysql.image:
        prepare_verifier(manifest.drill)  # Docker access as it should be; no leftovers
    restic.require_version()
    registry = CollectorRegistry()
    report = manifest.drill.report_file if manifest.drill and role == "verifier" else None
    metrics = Metrics(registry, role, report)
    state = State(manifest.agent.state_dir)
    selected = list(names) or list(manifest.services)

    def publish() -> None:
        state.reload()
        if role == "backup":
            for name in selected:
                metrics.publish_backups(manifest.service(name), state)
        elif role == "maintenance":
            metrics.publish_maintenance(state)

    if role == "backup":
        metrics.declare(manifest, selected)
        tasks = backup_tasks(manifest, selected, state, metrics)
    elif role == "maintenance":
        metrics.declare_limits(manifest)
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
    if role == "backup":
        remove_stale_locks(manifest, selected)
    if role == "maintenance":
        # Known now, not only after the next retention run (a restart must not blank them).
        try:
            metrics.publish_survey(*maintenance.survey_repositories(manifest))
        except BackupError as exc:
            log.warning("snapshot counts and repository size wait for retention: %s", exc)
        try:
            metrics.publish_copy(maintenance.survey_copies(manifest))
        except BackupError as exc:
            log.warning("the copies' freshness waits for the next copy: %s", exc)

    def last_run(task: Task) -> float | None:
        return state.run(task.id).last_run if state.known(task.id) else None

    def on_wait(task: Task, seconds: float) -> None:
        if task.id.role == "backup":
            metrics.waited(task.id.name, seconds)

    log.info("agent started: role %s, tasks %s", role, ", ".join(str(t.id) for t in tasks))
    Scheduler(tasks, last_run, on_wait, on_tick=publish).run_forever()
