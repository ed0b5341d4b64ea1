"""Restore drills: restore each service's newest snapshot into a disposable target,
prove it, and measure the time from "start restore" to "verified" against the RTO.

A drill slower than the service's RTO target fails like any other proof. Results are
merged into a JSON report (per service: last run, last success, measured time,
bytes restored and method, checks, error, and per method the last measured restore)
from which the verifier's /metrics are read at scrape time
(``metrics.DrillReportCollector``), so a drill started by an operator (``make drill``)
shows up in Prometheus too.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backup_agent import execute, maintenance, restic, snapshots
from backup_agent.errors import BackupError, Interrupted
from backup_agent.jobs import JOBS
from backup_agent.manifest import Manifest, Service, format_duration

log = logging.getLogger("backup_agent.drill")
# The report's name before drills had one name everywhere; read when the new one is absent.
LEGACY_REPORT = "restore-report.json"


@dataclass
class DrillResult:
    service: str
    passed: bool
    seconds: float
    rto_target_seconds: float
    rto_limit_seconds: float
    finished: float
    snapshot: str | None = None
    checks: list[str] = field(default_factory=list)
    error: str | None = None
    bytes: int = 0  # restored (a dump's or a copy's stream), for the throughput
    method: str = ""  # RestoreResult.method


def drill(manifest: Manifest, service: Service) -> DrillResult:
    """One drill; a failure is a result, not an exception (except an interrupt)."""
    fields = {"service": service.name, "task": "drill"}
    log.info("drill started", extra=fields)
    started = time.monotonic()
    target, limit = service.rto_target.total_seconds(), service.rto_limit.total_seconds()
    try:
        # Beyond the RTO limit the drill has failed anyway: stop it there.
        with execute.Deadline(limit, f"drill of {service.name}"):
            restored = JOBS[service.type].drill(manifest, service)
    except Interrupted:
        raise
    except (BackupError, OSError) as exc:  # OSError: a full or unwritable scratch disk
        seconds = time.monotonic() - started
        log.error("drill failed: %s", exc, extra={**fields, "duration_seconds": round(seconds, 3)})
        return DrillResult(service.name, False, seconds, target, limit, time.time(), error=str(exc))
    seconds = time.monotonic() - started
    record_proof(manifest, service, restored.snapshot_id, restored.verified)
    result = DrillResult(
        service.name,
        True,
        seconds,
        target,
        limit,
        time.time(),
        restored.snapshot_id,
        restored.verified,
        bytes=restored.bytes,
        method=restored.method,
    )
    if seconds > target:
        above = "limit" if seconds > limit else "target"
        result.passed = False
        result.error = (
            f"restore took {seconds:.1f}s, above the RTO {above} "
            f"{format_duration(service.rto_limit if above == 'limit' else service.rto_target)}"
        )
        log.error(
            "drill failed: %s",
            result.error,
            extra={**fields, "duration_seconds": round(seconds, 3)},
        )
    else:
        log.info("drill passed", extra={**fields, "duration_seconds": round(seconds, 3)})
    return result


def record_proof(manifest: Manifest, service: Service, snapshot_id: str, checks: list[str]) -> None:
    """Write the signed drill record of a snapshot whose content a drill proved, so that
    retention keeps the newest proven snapshot. Without ``drill.key_file`` (or when the
    record cannot be written) the drill still counts; retention then cannot tell."""
    settings = manifest.drill
    key = snapshots.read_drill_key(settings.key_file) if settings else None
    if key is None:
        log.warning("no drill key: the proof of %s is not recorded", snapshot_id[:8])
        return
    content = {"service": service.name, "snapshot": snapshot_id, "checks": checks}
    tags = {
        **snapshots.tags(service, snapshots.DRILL_KIND),
        "of": snapshot_id,
        "mac": snapshots.drill_signature(key, service.name, snapshot_id),
    }
    try:
        restic.backup_bytes(
            manifest.repository_for(service.name),
            f"{service.name}.drill.json",
            json.dumps(content).encode(),
            tags,
        )
    except BackupError as exc:
        log.error("drill record of %s not written: %s", snapshot_id[:8], exc)


def run_drills(
    manifest: Manifest, names: Sequence[str], report_file: str, check_run: int
) -> dict[str, Any]:
    """Drill the named services, check a rotating subset of the repository, update the report."""
    results = [drill(manifest, manifest.service(name)) for name in names]
    check: dict[str, Any] = {"finished": time.time()}
    try:
        check["subset"] = maintenance.check_repositories(manifest, check_run)
        check["passed"] = True
    except Interrupted:
        raise
    except BackupError as exc:
        log.error("repository check failed: %s", exc)
        check.update(passed=False, error=str(exc))
    return update_report(report_file, results, check)


def update_report(
    path: str, results: Sequence[DrillResult], check: dict[str, Any]
) -> dict[str, Any]:
    """Merge results into the report file (atomically) and return it. An existing file
    that is not a drill report is never replaced: the path may be a mistake."""
    existing = Path(path)
    if existing.exists() and not read_report(path):
        raise BackupError(f"{path} exists and is not a drill report: refusing to replace it")
    report = read_report(path)
    services = report.setdefault("services", {})
    for result in results:
        entry = {**asdict(result)}
        previous = services.get(result.service, {})
        entry["last_success"] = (
            result.finished if result.passed else previous.get("last_success", 0.0)
        )
        entry["restore_rates"] = restore_rates(previous, result)
        services[result.service] = entry
    report["repository_check"] = check
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    temporary = f"{path}.tmp"
    Path(temporary).write_text(json.dumps(report, indent=2), encoding="utf-8")
    os.replace(temporary, path)
    return report


def restore_rates(previous: dict[str, Any], result: DrillResult) -> dict[str, Any]:
    """Per method, what the last drill that restored by it measured (bytes, seconds,
    end): kept across drills of other methods, for ``plan``'s expected restore times.
    A drill above its RTO still measured; one that failed before the end did not."""
    rates = dict(previous.get("restore_rates") or {})
    if result.snapshot and result.bytes and result.method:
        rates[result.method] = {
            "bytes": result.bytes,
            "seconds": round(result.seconds, 3),
            "finished": result.finished,
        }
    return rates


def read_report(path: str) -> dict[str, Any]:
    """The drill report, or an empty one when it does not exist or cannot be read."""
    report = Path(path)
    if not report.exists() and (report.parent / LEGACY_REPORT).exists():
        report = report.parent / LEGACY_REPORT
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
