"""One run of a task, recorded the same way whoever starts it (scheduler or operator).

``recorded`` wraps any task in start/success/failure bookkeeping in the state file and
one structured log line, even when the task raises (a failure is counted by its
``reason``); ``run_backup`` adds the backup metrics. An interrupted run (SIGTERM) is
not recorded, so the scheduler catches it up after a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from backup_agent import execute, restic
from backup_agent.errors import BackupError, Interrupted
from backup_agent.jobs import JOBS
from backup_agent.jobs.base import BackupResult
from backup_agent.manifest import Manifest, Service
from backup_agent.metrics import Metrics
from backup_agent.state import Run, State, TaskId, backup_task

log = logging.getLogger("backup_agent.run")


@dataclass
class Outcome:
    """What the body of ``recorded`` sees and reports: the task's record before this
    run (its ``successes`` rotate the check's data subset) and the bytes a backup read."""

    before: Run
    read_bytes: int | None = None


@contextmanager
def recorded(state: State, task: TaskId) -> Iterator[Outcome]:
    """Record a run's start, duration and outcome in ``state`` (saved at the end)."""
    fields: dict[str, object] = {"task": str(task)}
    outcome = Outcome(state.run(task))
    started_wall, started = time.time(), time.monotonic()
    log.info("started", extra=fields)

    def ended(run: Run) -> None:
        run.last_run, run.last_duration = started_wall, time.monotonic() - started

    def succeeded(run: Run) -> None:
        ended(run)
        run.last_success = time.time()
        run.successes += 1
        if outcome.read_bytes is not None:
            run.previous_bytes, run.last_bytes = run.last_bytes, outcome.read_bytes

    try:
        yield outcome
    except Interrupted:
        log.warning("interrupted", extra=fields)
        raise
    except Exception as exc:
        reason = exc.reason if isinstance(exc, BackupError) else "bug"

        def failed(run: Run) -> None:
            ended(run)
            run.failures[reason] = run.failures.get(reason, 0) + 1

        state.update(task, failed)
        raise
    run = state.update(task, succeeded)
    log.info("finished", extra={**fields, "duration_seconds": round(run.last_duration, 3)})


def run_backup(
    manifest: Manifest, service: Service, kind: str, state: State, metrics: Metrics
) -> BackupResult:
    """Run one backup with its bookkeeping and metrics; re-raise its error."""
    metrics.backup_started(service)
    try:
        with (
            recorded(state, backup_task(service.name, kind)) as outcome,
            execute.Deadline(service.deadline.total_seconds(), f"backup of {service.name}"),
        ):
            # Before the source is read: a dead or full repository fails in seconds, and
            # no database transaction is held open against it.
            restic.preflight(manifest.repository_for(service.name))
            result = JOBS[service.type].backup(manifest, service, kind)
            outcome.read_bytes = result.bytes_read
    except Interrupted:
        raise
    except Exception:
        metrics.backup_ended(service, kind, state, None)  # counted by reason in ``state``
        raise
    metrics.backup_ended(service, kind, state, result.bytes_added)
    log.info(
        "backup stored",
        extra={
            "service": service.name,
            "kind": kind,
            "snapshot": result.snapshot_id[:8],
            "bytes": result.bytes_read,
            "bytes_added": result.bytes_added,
        },
    )
    return result
