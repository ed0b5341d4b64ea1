"""One run of a job, recorded the same way whoever starts it (scheduler or operator).

``recorded`` wraps any job in start/success/failure bookkeeping in the state file and
one structured log line, even when the job raises; ``run_backup`` adds the backup
metrics. An interrupted run (SIGTERM) is not recorded, so the scheduler catches it
up after a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from backup_agent.errors import Interrupted
from backup_agent.jobs import JOBS
from backup_agent.jobs.base import BackupResult
from backup_agent.manifest import Manifest, Service
from backup_agent.metrics import Metrics
from backup_agent.state import JobState, State

log = logging.getLogger("backup_agent.run")


@contextmanager
def recorded(state: State, service: str, kind: str) -> Iterator[JobState]:
    """Record a run's start, duration and outcome in ``state`` (saved at the end)."""
    fields: dict[str, object] = {"service": service, "job": kind}
    job = state.job(service, kind)
    started_wall, started = time.time(), time.monotonic()
    log.info("started", extra=fields)
    try:
        yield job
    except Interrupted:
        log.warning("interrupted", extra=fields)
        raise
    except Exception:
        job.last_run, job.last_duration = started_wall, time.monotonic() - started
        state.save_job(service, kind)
        raise
    job.last_run, job.last_duration = started_wall, time.monotonic() - started
    job.last_success = time.time()
    job.successes += 1
    state.save_job(service, kind)
    log.info("finished", extra={**fields, "duration_seconds": round(job.last_duration, 3)})


def run_backup(
    manifest: Manifest, service: Service, kind: str, state: State, metrics: Metrics
) -> BackupResult:
    """Run one backup with its bookkeeping and metrics; re-raise its error."""
    metrics.last_attempt.labels(service.name).set(time.time())
    try:
        with recorded(state, service.name, kind) as job:
            result = JOBS[service.kind].backup(manifest, service, kind)
            job.previous_bytes, job.last_bytes = job.last_bytes, result.bytes_read
    except Interrupted:
        raise
    except Exception:
        metrics.runs.labels(service.name, kind, "failure").inc()
        publish(metrics, state, service)
        raise
    metrics.runs.labels(service.name, kind, "success").inc()
    metrics.added_bytes.labels(service.name).set(result.bytes_added)
    publish(metrics, state, service)
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


def publish(metrics: Metrics, state: State, service: Service) -> None:
    """Set a service's metrics from its recorded runs (after a run, and at start-up)."""
    kinds = [s.kind for s in service.schedules if state.known(service.name, s.kind)]
    if not kinds:
        return
    jobs = [state.job(service.name, kind) for kind in kinds]
    latest_run = max(jobs, key=lambda j: j.last_run)
    latest_success = max(jobs, key=lambda j: j.last_success)
    name = service.name
    metrics.last_success.labels(name).set(latest_success.last_success)
    metrics.last_attempt.labels(name).set(latest_run.last_run)
    metrics.last_result.labels(name).set(1 if latest_run.last_success >= latest_run.last_run else 0)
    metrics.duration.labels(name).set(latest_run.last_duration)
    if latest_success.last_success:
        metrics.read_bytes.labels(name).set(latest_success.last_bytes)
        metrics.previous_read_bytes.labels(name).set(latest_success.previous_bytes)
