"""``backup-agent run``: wire a role's tasks to the scheduler, the state file and /metrics.

Roles: ``backup`` (a sidecar: the manifest's services, or the ones named),
``maintenance`` (beside the repository: retention then prune, checks, and the second
copy when ``maintenance.copy`` asks for one) and
``verifier`` (restore drills on the drill schedule, on another machine).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial

from prometheus_client import CollectorRegistry, start_http_server

from backup_agent import execute, kit, maintenance, restic, runs
from backup_agent import repository_errors as causes
from backup_agent import repository_guard as guard
from backup_agent.drill import run_drills
from backup_agent.errors import BackupError
from backup_agent.jobs.base import require_drill
from backup_agent.jobs.mysql.binlog.heartbeat import Beating
from backup_agent.jobs.mysql.scratch import prepare_verifier
from backup_agent.manifest import Manifest, MysqlOptions
from backup_agent.metrics import Metrics
from backup_agent.scheduler import Scheduler, Task
from backup_agent.state import (
    CHECK,
    COPY,
    DRILL,
    RETENTION,
    State,
    backup_task,
    binlog_task,
)

log = logging.getLogger("backup_agent.agent")
ROLES = ("backup", "maintenance", "verifier")
# How long a starting sidecar waits for its repositories: on several machines the
# backup server may come up after the application hosts (or be restarting).
STARTUP_WAIT = 300.0
STARTUP_POLL = 5.0


def backup_tasks(
    manifest: Manifest, names: Sequence[str], state: State, metrics: Metrics
) -> list[Task]:
    """One task per schedule of each named service, and binlog shipping for those
    that ship binlogs."""
    tasks = [
        Task(
            backup_task(name, kind),
            schedule,
            partial(runs.run_backup, manifest, service, kind, state, metrics),
        )
        for name in names
        for service in [manifest.service(name)]
        for kind, schedule in service.schedules.items()
    ]
    for name in names:
        service = manifest.service(name)
        if service.binlog is not None:
            run = partial(runs.run_binlog, manifest, service, state, metrics)
            tasks.append(Task(binlog_task(name), service.binlog.schedule, run))
    return tasks


def heartbeats(manifest: Manifest, names: Sequence[str]) -> list[Beating]:
    """A started heartbeat thread for each named service that has one."""
    started = []
    for name in names:
        service = manifest.service(name)
        if service.binlog is not None and service.binlog.heartbeat is not None:
            assert isinstance(service.options, MysqlOptions)
            beating = Beating(name, service.options, service.binlog.heartbeat)
            beating.start()
            started.append(beating)
    return started


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


def await_repositories(
    manifest: Manifest,
    names: Sequence[str],
    limit: float = STARTUP_WAIT,
    poll: float = STARTUP_POLL,
    on_poll: Callable[[], None] = lambda: None,
) -> list[restic.Repository]:
    """Wait, at most ``limit`` seconds, while a repository of the services ``names`` does
    not exist yet (the backup server's repository-init still running); returns those
    that answer (``restic.preflight``). Anything else is not waited for: an unreachable
    backup server fails the first backup at once, counted and alerted, as it should.
    ``on_poll`` runs between attempts (the metrics follow one-shot runs meanwhile)."""
    pending = {
        repo.url: repo
        for repo, services in manifest.repositories().values()
        if set(services) & set(names)
    }
    answered: list[restic.Repository] = []
    deadline = time.monotonic() + limit
    said: set[str] = set()
    while pending:
        for url, repo in list(pending.items()):
            try:
                restic.preflight(repo)
            except BackupError as exc:
                if exc.reason == causes.MISSING and time.monotonic() < deadline:
                    if url not in said:
                        log.warning("waiting up to %.0f s for the repository: %s", limit, exc)
                        said.add(url)
                    continue
                log.warning("starting without the repository: %s", exc)
            else:
                answered.append(repo)
                if url in said:
                    log.info("repository %s answers", execute.mask(url))
            del pending[url]
        if pending:
            on_poll()
            time.sleep(poll)
    return answered


def recovery_kit_watch(manifest: Manifest, role: str) -> kit.Watch | None:
    """The maintenance role's view of the recovery kit: the repository passwords and
    the drill key it holds, against the record of the last export."""
    record = manifest.maintenance.recovery_kit_file
    if role != "maintenance" or not record:
        return None
    held: list[str | None] = [manifest.repository_for(s).password_file for s in manifest.services]
    held.append(manifest.drill.key_file if manifest.drill else None)
    return kit.Watch(record, kit.held_by(held))


def remove_stale_locks(repositories: Sequence[restic.Repository]) -> None:
    """Remove the locks a killed restic of this host left (SIGKILL, OOM): restic proves
    them stale by their dead process id. Backups are not blocked by them, but retention
    and checks would be until they are 30 minutes old."""
    for repo in repositories:
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
    metrics = Metrics(registry, role, report, recovery_kit_watch(manifest, role))
    state = State(manifest.agent.state_dir)
    selected = list(names) or list(manifest.services)

    def publish() -> None:
        state.reload()
        if role == "backup":
            for name in selected:
                metrics.publish_backups(manifest.service(name), state)
                metrics.publish_binlog(manifest.service(name), state)
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
        remove_stale_locks(await_repositories(manifest, selected, on_poll=publish))
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
    beating = heartbeats(manifest, selected) if role == "backup" else []
    try:
        Scheduler(tasks, last_run, on_wait, on_tick=publish).run_forever()
    finally:
        for thread in beating:
            thread.stop.set()
