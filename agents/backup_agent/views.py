"""Tables for people: ``backup-agent status`` and ``backup-agent snapshots``.

The status view puts, per service of the manifest, the last good backup and its age
against the RPO, the last drill and its measured restore time against the RTO, the
snapshots the trust rule accepts, and the alerts that fire for it; then the stored size
against the repository's limit, and every component (agents, maintenance, verifier,
backup server) with its scrape state and alerts. Targets come from the manifest, the
rest from what the agents report (``readout``). Verdict words are in capitals when
something is wrong (``STALE``, ``FAIL``, ``SLOW``, ``DOWN``), so they stand out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from backup_agent import restic
from backup_agent.manifest import Manifest, Service, format_duration
from backup_agent.readout import Alert, Readout, Sample
from backup_agent.snapshots import Judgement

NONE = "-"
# RepositoryNearlyFull fires at this share of repository.size_limit (backup-alerts.yml).
NEARLY_FULL = 0.85
# Longest host name or tag value shown: they come from the repository (hostile input).
MAX_NAME = 40


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns aligned with two spaces between them; the last one is not padded.
    Characters that are not printable (a terminal escape in a host name) become ``?``."""
    lines = [list(header), *([_printable(cell) for cell in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _short(text: str | None) -> str:
    if not text:
        return NONE
    return text if len(text) <= MAX_NAME else f"{text[: MAX_NAME - 3]}..."


def size(value: float) -> str:
    """Bytes in binary units: ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def age(seconds: float) -> str:
    """An elapsed time, to two units at most: ``45s``, ``12m``, ``3h12m``, ``2d4h``."""
    whole = max(int(seconds), 0)
    if whole < 120:
        return f"{whole}s"
    if whole < 2 * 3600:
        return f"{whole // 60}m"
    if whole < 2 * 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600}h"


def restore_time(seconds: float) -> str:
    """A measured restore time: tenths of a second below a minute."""
    return f"{seconds:.1f}s" if seconds < 60 else age(seconds)


def when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")


# --- status -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceRow:
    """One service's line of the status table, as text."""

    service: str
    agent: str
    last_good: str
    freshness: str
    drill: str
    restore: str
    snapshots: str
    alerts: str

    def cells(self, with_alerts: bool) -> list[str]:
        cells = [
            self.service,
            self.agent,
            self.last_good,
            self.freshness,
            self.drill,
            self.restore,
            self.snapshots,
        ]
        return [*cells, self.alerts] if with_alerts else cells


SERVICE_HEADER = (
    "SERVICE",
    "AGENT",
    "LAST GOOD BACKUP",
    "AGE / RPO",
    "LAST DRILL",
    "RESTORE / RTO",
    "SNAPSHOTS",
    "ALERTS",
)
COMPONENT_HEADER = ("COMPONENT", "INSTANCE", "STATE", "ALERTS")


def status(manifest: Manifest, readout: Readout, now: float) -> str:
    """The whole status view: header, services, repository, components, other alerts."""
    with_alerts = readout.alerts is not None
    alerts = list(readout.alerts or ())
    rows = [service_row(s, readout, alerts, now) for s in manifest.services.values()]
    header = SERVICE_HEADER if with_alerts else SERVICE_HEADER[:-1]
    shown = {id(a) for a in alerts if a.labels.get("service") in manifest.services}
    components, placed = component_rows(readout, alerts)
    shown |= placed
    firing = (
        f", {len(alerts)} firing alert(s)" if with_alerts else ", alerts unknown (no Prometheus)"
    )
    parts = [
        f"Backup status at {when(now)} UTC, from {readout.source}{firing}",
        "",
        table(header, (row.cells(with_alerts) for row in rows)),
        "",
        repository_line(manifest, readout),
    ]
    if components:
        parts += ["", table(COMPONENT_HEADER, components)]
    others = [a for a in alerts if id(a) not in shown]
    if others:
        parts += ["", "Other firing alerts: " + ", ".join(sorted(_describe(a) for a in others))]
    return "\n".join(parts)


def service_row(
    service: Service, readout: Readout, alerts: Sequence[Alert], now: float
) -> ServiceRow:
    name = service.name
    success = readout.find("backup_last_success_timestamp_seconds", service=name)
    firing = sorted({a.name for a in alerts if a.labels.get("service") == name})
    return ServiceRow(
        service=name,
        agent=", ".join(sorted({s.labels.get("instance", "?") for s in success})) or NONE,
        last_good=_last_good(success),
        freshness=_freshness(service, readout, success, now),
        drill=_drill(readout, name),
        restore=_restore(service, readout),
        snapshots=_snapshots(readout, name),
        alerts=", ".join(firing) or NONE,
    )


def _last_good(success: Sequence[Sample]) -> str:
    if not success:
        return "no data"
    newest = max(s.value for s in success)
    return when(newest) if newest > 0 else "never"


def _freshness(service: Service, readout: Readout, success: Sequence[Sample], now: float) -> str:
    rpo = service.rpo.total_seconds()
    newest = max((s.value for s in success), default=0.0)
    elapsed = now - newest if newest > 0 else None
    shown = f"{age(elapsed) if elapsed is not None else NONE} / {format_duration(service.rpo)}"
    if not success:
        return shown
    if elapsed is None or elapsed > rpo:
        return f"{shown}  STALE"
    last = readout.find("backup_last_run_success", service=service.name)
    if any(s.value == 0 for s in last):
        return f"{shown}  ok, LAST RUN FAILED"
    return f"{shown}  ok"


def _one(readout: Readout, name: str, service: str) -> float | None:
    """The value of a series one component exports per service (the largest if several)."""
    found = readout.find(name, service=service)
    return max(s.value for s in found) if found else None


def _drill(readout: Readout, service: str) -> str:
    result = _one(readout, "backup_drill_last_success", service)
    if result is None:
        return "never" if readout.find("backup_drill_last_success") else "no data"
    passed = _one(readout, "backup_drill_last_success_timestamp_seconds", service) or 0.0
    if result == 1:
        return f"PASS {when(passed)}"
    return f"FAIL (last pass {when(passed) if passed else 'never'})"


def _restore(service: Service, readout: Readout) -> str:
    target = format_duration(service.rto_target)
    seconds = _one(readout, "backup_drill_duration_seconds", service.name)
    if seconds is None:
        return f"{NONE} / {target}"
    verdict = "ok"
    if seconds > service.rto_limit.total_seconds():
        verdict = f"OVER LIMIT {format_duration(service.rto_limit)}"
    elif seconds > service.rto_target.total_seconds():
        verdict = "SLOW"
    return f"{restore_time(seconds)} / {target}  {verdict}"


def _snapshots(readout: Readout, service: str) -> str:
    trusted = _one(readout, "backup_snapshots", service)
    if trusted is None:
        return "no data"
    untrusted = _one(readout, "backup_untrusted_snapshots", service) or 0
    extra = f" (+{untrusted:.0f} UNTRUSTED)" if untrusted else ""
    return f"{trusted:.0f}{extra}"


def repository_line(manifest: Manifest, readout: Readout) -> str:
    """Stored size (the maintenance roles' sum) against the limit."""
    stored = readout.find("backup_repository_size_bytes")
    if not stored:
        return "Repository: no data (the maintenance role is not reporting)"
    total = sum(s.value for s in stored)
    limits = [s.value for s in readout.find("backup_repository_size_limit_bytes") if s.value > 0]
    limit = max(limits) if limits else float(manifest.size_limit or 0)
    if not limit:
        return f"Repository: {size(total)} stored, no size limit set (repository.size_limit)"
    share = total / limit
    warning = "  NEARLY FULL" if share >= NEARLY_FULL else ""
    return f"Repository: {size(total)} stored of {size(limit)} ({share:.0%}){warning}"


def component_rows(readout: Readout, alerts: Sequence[Alert]) -> tuple[list[list[str]], set[int]]:
    """One row per scrape target, with the alerts about it that name no service; and the
    ids of the alerts placed."""
    rows, placed = [], set()
    targets = sorted(
        readout.find("up"), key=lambda s: (s.labels.get("job", ""), s.labels.get("instance", ""))
    )
    for target in targets:
        job, instance = target.labels.get("job", ""), target.labels.get("instance", "")
        mine = [
            a
            for a in alerts
            if "service" not in a.labels
            and a.labels.get("instance") == instance
            and a.labels.get("job", job) == job
        ]
        placed |= {id(a) for a in mine}
        state = "up" if target.value == 1 else "DOWN"
        if target.value != 1 and instance in readout.errors:
            state = f"DOWN: {readout.errors[instance]}"
        names = ", ".join(sorted({a.name for a in mine})) or NONE
        rows.append([job or NONE, instance, state, names])
    return rows, placed


def _describe(alert: Alert) -> str:
    where = [f"{k}={alert.labels[k]}" for k in ("service", "job", "task") if k in alert.labels]
    return f"{alert.name} ({', '.join(where)})" if where else alert.name


# --- snapshots --------------------------------------------------------------------------

SNAPSHOT_HEADER = ("TIME (UTC)", "ID", "SERVICE", "KIND", "HOST", "SIZE", "TRUSTED")


def snapshot_rows(judgements: Iterable[Judgement]) -> list[list[str]]:
    """Every snapshot of the judged services, oldest first, with why it is not trusted."""
    verdicts: list[tuple[restic.Snapshot, str | None]] = []
    for judged in judgements:
        trusted = [*judged.trusted, *judged.records.values(), *judged.drilled.values()]
        verdicts += [(snap, None) for snap in trusted]
        verdicts += [(snap, f"no: {why}") for snap, why in judged.untrusted]
    verdicts.sort(key=lambda item: (item[0].time, item[0].id))
    return [
        [
            snap.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            snap.short_id,
            _short(snap.tag("service")),
            _short(snap.tag("kind")),
            _short(snap.hostname),
            _snapshot_size(snap),
            why or "yes",
        ]
        for snap, why in verdicts
    ]


def _snapshot_size(snap: restic.Snapshot) -> str:
    """What the snapshot read (restic's summary); unknown for snapshots without one."""
    value = snap.summary.get("total_bytes_processed")
    return size(value) if isinstance(value, int) and value >= 0 else NONE


def snapshots(judgements: Iterable[Judgement]) -> str:
    rows = snapshot_rows(judgements)
    return table(SNAPSHOT_HEADER, rows) if rows else "no snapshots"
