"""The tables people read: ``status`` and ``snapshots`` (views.py), rendered from
readouts and judgements built here; reading them from a real Prometheus is tested in
tests/integration/test_status.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from backup_agent import manifest, restic, views
from backup_agent.readout import Alert, Readout, Sample
from backup_agent.snapshots import Trust, drill_signature, judge

AGAMA = manifest.load(Path(__file__).resolve().parents[2] / "manifests" / "agama.yaml")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0


def agent(name: str, metric: str, value: float, **labels: str) -> Sample:
    where = {"job": "backup-agent", "instance": f"{name}-agent:9464", "service": name}
    return Sample(metric, {**where, **labels}, value)


def verifier(name: str, metric: str, value: float) -> Sample:
    return Sample(
        metric, {"job": "backup-verifier", "instance": "verifier:9464", "service": name}, value
    )


def maintenance(metric: str, value: float, **labels: str) -> Sample:
    where = {"job": "backup-maintenance", "instance": "backup-server:9464"}
    return Sample(metric, {**where, **labels}, value)


def up(job: str, instance: str, value: float) -> Sample:
    return Sample("up", {"job": job, "instance": instance}, value)


# mysql: backed up 3 h ago, drill passed in 12.5 s. files: last good backup 30 h ago
# (RPO 1d), its last run failed, its drill failed after 45 min (over the 30m target).
# grafana: never succeeded, never drilled. The backup server is down.
SAMPLES = [
    agent("mysql", "backup_last_success_timestamp_seconds", NOW - 3 * HOUR),
    agent("mysql", "backup_last_run_success", 1),
    agent("files", "backup_last_success_timestamp_seconds", NOW - 30 * HOUR),
    agent("files", "backup_last_run_success", 0),
    agent("grafana", "backup_last_success_timestamp_seconds", 0),
    verifier("mysql", "backup_drill_last_success", 1),
    verifier("mysql", "backup_drill_last_success_timestamp_seconds", NOW - 5 * HOUR),
    verifier("mysql", "backup_drill_duration_seconds", 12.5),
    verifier("files", "backup_drill_last_success", 0),
    verifier("files", "backup_drill_last_success_timestamp_seconds", 0),
    verifier("files", "backup_drill_duration_seconds", 45 * 60),
    maintenance("backup_snapshots", 22, service="mysql"),
    maintenance("backup_untrusted_snapshots", 0, service="mysql"),
    maintenance("backup_snapshots", 21, service="files"),
    maintenance("backup_untrusted_snapshots", 2, service="files"),
    maintenance("backup_snapshots", 0, service="grafana"),
    maintenance("backup_repository_size_bytes", 90 * 2**30),
    maintenance("backup_repository_size_limit_bytes", 100 * 2**30),
    up("backup-agent", "mysql-agent:9464", 1),
    up("backup-maintenance", "backup-server:9464", 1),
    up("backup-server", "backup-server:8000", 0),
]
ALERTS = [
    Alert({"alertname": "BackupStale", "service": "files", "instance": "files-agent:9464"}),
    Alert({"alertname": "DrillFailing", "service": "files", "instance": "verifier:9464"}),
    Alert(
        {"alertname": "BackupServerDown", "job": "backup-server", "instance": "backup-server:8000"}
    ),
    Alert(
        {"alertname": "SnapshotsOfUnknownService", "service": "old", "job": "backup-maintenance"}
    ),
    Alert({"alertname": "BackupAgentAbsent", "job": "backup-agent"}),
]
READOUT = Readout(
    "Prometheus http://prometheus:9090",
    SAMPLES,
    ALERTS,
    {"backup-server:8000": "connection refused"},
)


def lines_by_first_word(text: str) -> dict[str, str]:
    return {line.split()[0]: line for line in text.splitlines() if line.strip()}


def columns(text: str, header: str) -> list[str]:
    """The cells of the line starting with ``header``, split at the header's columns."""
    lines = text.splitlines()
    head = next(line for line in lines if line.startswith("SERVICE"))
    starts = [i for i, c in enumerate(head) if c != " " and (i == 0 or head[i - 2 : i] == "  ")]
    row = next(line for line in lines if line.startswith(header + " "))
    bounds = [*starts, len(row) + 1]
    return [row[a:b].strip() for a, b in pairwise(bounds)]


def test_table_aligns_columns_and_hides_control_characters() -> None:
    text = views.table(("A", "LONGER"), [("xxxx", "1"), ("y\x1b[2Jz", "22")])
    assert text.splitlines() == ["A       LONGER", "xxxx    1", "y?[2Jz  22"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (7199, "119m"),
        (7200, "2h00m"),
        (2 * 86400 + 3 * 3600, "2d3h"),
    ],
)
def test_age(seconds: float, shown: str) -> None:
    assert views.age(seconds) == shown


@pytest.mark.parametrize(
    ("value", "shown"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (90 * 2**30, "90.0 GiB")]
)
def test_size(value: float, shown: str) -> None:
    assert views.size(value) == shown


def test_status_rows_say_what_is_wrong_per_service() -> None:
    text = views.status(AGAMA, READOUT, NOW)
    assert text.splitlines()[0] == (
        "Backup status at 2026-12-01 12:00 UTC, from Prometheus http://prometheus:9090, "
        "5 firing alert(s)"
    )
    mysql = columns(text, "mysql")
    assert mysql == [
        "mysql",
        "mysql-agent:9464",
        "2026-12-01 09:00",
        "3h00m / 1d  ok",
        "PASS 2026-12-01 07:00",
        "12.5s / 30m  ok",
        "22",
        "-",
    ]
    files = columns(text, "files")
    assert files[3] == "30h00m / 1d  STALE"
    assert files[4] == "FAIL (last pass never)"
    assert files[5] == "45m / 30m  SLOW"
    assert files[6] == "21 (+2 UNTRUSTED)"
    assert files[7] == "BackupStale, DrillFailing"
    grafana = columns(text, "grafana")
    assert grafana[2:6] == ["never", "- / 32d  STALE", "never", "- / 30m"]


def test_status_shows_the_repository_against_its_limit_and_every_component() -> None:
    text = views.status(AGAMA, READOUT, NOW)
    assert "Repository: 90.0 GiB stored of 100.0 GiB (90%)  NEARLY FULL" in text.splitlines()
    rows = {
        line.split()[1]: line.split(None, 2)[2]
        for line in text.splitlines()
        if line.startswith("backup-")
    }
    assert rows["mysql-agent:9464"].split() == ["up", "-"]
    assert rows["backup-server:8000"].split() == [
        "DOWN:",
        "connection",
        "refused",
        "BackupServerDown",
    ]
    # Alerts about no listed service or component are listed once, at the end.
    assert text.splitlines()[-1] == (
        "Other firing alerts: BackupAgentAbsent (job=backup-agent), "
        "SnapshotsOfUnknownService (service=old, job=backup-maintenance)"
    )


def test_last_run_failed_within_the_rpo_is_said() -> None:
    samples = [
        agent("mysql", "backup_last_success_timestamp_seconds", NOW - HOUR),
        agent("mysql", "backup_last_run_success", 0),
    ]
    text = views.status(AGAMA, Readout("test", samples, []), NOW)
    assert columns(text, "mysql")[3] == "60m / 1d  ok, LAST RUN FAILED"


def test_restore_over_the_limit() -> None:
    samples = [
        verifier("mysql", "backup_drill_last_success", 0),
        verifier("mysql", "backup_drill_duration_seconds", 3 * HOUR),
    ]
    text = views.status(AGAMA, Readout("test", samples, []), NOW)
    assert columns(text, "mysql")[5] == "3h00m / 30m  OVER LIMIT 2h"


def test_nothing_reported_is_no_data_not_never() -> None:
    """An agent that is down exports nothing: its row must not claim "never"."""
    text = views.status(AGAMA, Readout("test", [], []), NOW)
    mysql = columns(text, "mysql")
    assert mysql[1:] == ["-", "no data", "- / 1d", "no data", "- / 30m", "no data", "-"]
    assert "Repository: no data (the maintenance role is not reporting)" in text
    assert "COMPONENT" not in text


def test_without_prometheus_there_is_no_alerts_column() -> None:
    readout = Readout("/metrics of 1 endpoint(s)", SAMPLES)
    text = views.status(AGAMA, readout, NOW)
    assert text.splitlines()[0].endswith(", alerts unknown (no Prometheus)")
    header = next(line for line in text.splitlines() if line.startswith("SERVICE"))
    assert header.split()[-1] == "SNAPSHOTS"


def test_no_limit_is_said() -> None:
    samples = [maintenance("backup_repository_size_bytes", 2048)]
    text = views.status(AGAMA, Readout("test", samples, []), NOW)
    assert "Repository: 2.0 KiB stored, no size limit set (repository.size_limit)" in text


# --- snapshots --------------------------------------------------------------------------

TIME = datetime(2026, 12, 1, 22, 0, 5, tzinfo=UTC)
LOADED = manifest.parse(
    {
        "version": 1,
        "repository": {"url": "/srv/repo", "password_file": "/pw", "host": "agama"},
        "services": {
            "docs": {
                "type": "files",
                "schedule": {"incremental": "0 22 * * 1-6", "full": "0 22 * * 0"},
                "rpo": "1d",
                "rto": {"target": "30m", "limit": "2h"},
                "files": {"paths": ["/srv"]},
            }
        },
        "retention": {"keep_within": "3w", "max_age": "31d"},
    }
)
KEY = b"k" * 32


def snap(
    ident: str, minutes: int, host: str = "agama", kind: str = "full", **tags: str
) -> restic.Snapshot:
    labels = (
        f"service={tags.pop('service', 'docs')}",
        f"kind={kind}",
        *(f"{k}={v}" for k, v in tags.items()),
    )
    summary = {"total_bytes_processed": 3 * 2**20}
    return restic.Snapshot(
        ident * 8, ident, TIME + timedelta(minutes=minutes), host, (), labels, summary
    )


def test_snapshot_rows_give_the_trust_verdict_oldest_first() -> None:
    good = snap("aaaaaaaa", 0)
    drilled = snap(
        "bbbbbbbb", 5, kind="drill", of=good.id, mac=drill_signature(KEY, "docs", good.id)
    )
    stranger = snap("cccccccc", -10, host="mallory\x1b[31m" + "x" * 60)
    weekly = snap("dddddddd", 1, kind="weekly")
    judged = judge(
        [drilled, good, stranger, weekly],
        LOADED.service("docs"),
        Trust.of(LOADED, datetime.fromtimestamp(TIME.timestamp() + 86400, UTC)),
    )
    rows = views.snapshot_rows([judged])
    assert [row[1] for row in rows] == ["cccccccc", "aaaaaaaa", "dddddddd", "bbbbbbbb"]
    assert rows[1] == ["2026-12-01 22:00:05", "aaaaaaaa", "docs", "full", "agama", "3.0 MiB", "yes"]
    # Without the drill key here, the drill record cannot be checked, and says so.
    assert rows[3][-1] == "no: a drill record, not checked: no drill key here"
    assert rows[2][-1] == "no: kind weekly is not one docs makes"
    assert rows[0][4] == "mallory\x1b[31m" + "x" * 25 + "..."
    assert rows[0][-1].startswith("no: written under host 'mallory\\x1b[31m")
    text = views.snapshots([judged])
    assert "\x1b" not in text
    assert text.splitlines()[0].split() == [
        "TIME",
        "(UTC)",
        "ID",
        "SERVICE",
        "KIND",
        "HOST",
        "SIZE",
        "TRUSTED",
    ]


def test_a_signed_drill_record_is_trusted_with_the_key() -> None:
    good = snap("aaaaaaaa", 0)
    drilled = snap(
        "bbbbbbbb", 5, kind="drill", of=good.id, mac=drill_signature(KEY, "docs", good.id)
    )
    trust = Trust(
        frozenset({"agama"}),
        timedelta(minutes=5),
        datetime.fromtimestamp(TIME.timestamp() + 3600, UTC),
        KEY,
    )
    rows = views.snapshot_rows([judge([good, drilled], LOADED.service("docs"), trust)])
    assert [row[-1] for row in rows] == ["yes", "yes"]


def test_no_snapshots_is_said() -> None:
    assert views.snapshots([]) == "no snapshots"
