"""``backup-agent status`` and ``snapshots`` for real.

A real Prometheus (Debian's) runs the shipped scrape configuration (its job names; the
targets pointed at this test) and the shipped alert rules. It scrapes three exporters
that serve the agents' own metrics code (``Metrics`` of the backup, maintenance and
verifier roles, fed through the same calls the agents make), and a backup server that
is not there. The status command, run as a process, must show each service's
freshness, drill, snapshots and alerts, the components and the repository against its
limit; it reads the same from the exporters' /metrics without Prometheus, and says in
one line, exit 1, when Prometheus is unreachable. ``snapshots`` lists a real restic
repository with the trust rule's verdicts, and ``--json`` keeps restic's fields.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

from backup_agent import drill, manifest, restic
from backup_agent.metrics import Metrics
from backup_agent.state import CHECK, RETENTION, Run, State, backup_task
from backup_agent.survey import ServiceSurvey, Survey
from tests.conftest import ManifestFactory, files_spec, need, wait_for
from tests.forge import forge

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
AGAMA = ROOT / "manifests" / "agama.yaml"
PROMETHEUS_CONFIG = ROOT / "compose" / "prometheus" / "prometheus.yml"
RULES = ROOT / "compose" / "prometheus" / "rules" / "backup-alerts.yml"
HOST = "127.0.0.30"  # this test's loopback address and ports
PORTS = range(28000, 28100)
GIB = 2**30
HOUR = 3600.0


_given: set[int] = set()


def free_port() -> int:
    """A port of ``PORTS`` nothing listens on at ``HOST`` and not handed out before (for a
    server, or to stay closed)."""
    for port in PORTS:
        if port in _given:
            continue
        _given.add(port)
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {PORTS} on {HOST}")


class Exporter:
    """A role's metrics, served over HTTP from its own registry like the agent does."""

    def __init__(self, role: str, report_file: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, role, report_file)
        self.port = free_port()
        self.server, self.thread = start_http_server(self.port, HOST, self.registry)

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Prometheus:
    """Debian's Prometheus on the shipped configuration, scraping every second."""

    def __init__(self, base: Path, targets: dict[str, str]) -> None:
        self.port = free_port()
        config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
        jobs = {job["job_name"] for job in config["scrape_configs"]}
        assert jobs == {"prometheus", *targets}, "the shipped scrape jobs changed"
        targets = {**targets, "prometheus": f"{HOST}:{self.port}"}
        for job in config["scrape_configs"]:
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
            job["scrape_interval"] = "1s"
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(RULES)]
        config.pop("alerting")
        (base / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://{HOST}:{self.port}"
        self.process = subprocess.Popen(
            [
                need("prometheus"),
                f"--config.file={base / 'prometheus.yml'}",
                f"--storage.tsdb.path={base / 'tsdb'}",
                f"--web.listen-address={HOST}:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(base / "prometheus.log").open("wb"),
        )

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:  # noqa: S310
            return json.load(response)["data"]

    def firing(self) -> set[tuple[str, str]]:
        """(alert, service or job) of every firing alert; empty until Prometheus answers."""
        try:
            alerts = self.get("/api/v1/alerts")["alerts"]
        except OSError:
            return set()
        return {
            (a["labels"]["alertname"], a["labels"].get("service") or a["labels"].get("job", ""))
            for a in alerts
            if a["state"] == "firing"
        }

    def scraped(self, job: str) -> bool:
        try:
            result = self.get("/api/v1/query?query=up")["result"]
        except OSError:
            return False
        return any(r["metric"]["job"] == job for r in result)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backup_agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def rows(output: str) -> dict[str, str]:
    """Lines of the status view by their first word (service rows), or by the instance
    (component rows, whose first word is the job)."""
    found = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) > 2 and (words[0].startswith("backup-") or words[0] == "-"):
            found[words[1]] = line
        elif words:
            found[words[0]] = line
    return found


@dataclasses.dataclass
class Deployment:
    prometheus: Prometheus
    exporters: dict[str, Exporter]
    manifest: manifest.Manifest
    state: State


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """The three roles' exporters, a closed backup-server port, and Prometheus."""
    loaded = dataclasses.replace(manifest.load(AGAMA), size_limit=100 * GIB)
    now = time.time()
    report = str(tmp_path / "drill-report.json")
    drill.update_report(
        report,
        [
            drill.DrillResult("mysql", True, 12.5, 1800, 7200, now - 5 * HOUR),
            drill.DrillResult("files", False, 2700.0, 1800, 7200, now - 5 * HOUR),
        ],
        {"passed": True, "subset": "1/4"},
    )
    exporters = {
        "backup-agent": Exporter("backup"),
        "backup-maintenance": Exporter("maintenance"),
        "backup-verifier": Exporter("verifier", report),
    }
    state = State(str(tmp_path / "state"))

    def ran(task: Any, started: float, ended: float | None) -> None:
        def record(run: Run) -> None:
            run.last_run, run.last_duration = started, 60.0
            if ended is not None:
                run.last_success, run.last_bytes = ended, 5 << 20

        state.update(task, record)

    ran(backup_task("mysql", "full"), now - 3 * HOUR - 60, now - 3 * HOUR)  # ended 3 h ago
    ran(backup_task("files", "incremental"), now - 30 * HOUR - 60, now - 30 * HOUR)
    ran(backup_task("files", "full"), now - 600, None)  # failed: server unreachable, below
    ran(RETENTION, now - HOUR, now - HOUR + 5)
    ran(CHECK, now - HOUR, now - HOUR + 5)
    agent = exporters["backup-agent"].metrics
    agent.declare(loaded, list(loaded.services))
    for service in loaded.services.values():
        agent.publish_backups(service, state)
    exporters["backup-verifier"].metrics.declare(loaded, list(loaded.services), backups=False)
    upkeep = exporters["backup-maintenance"].metrics
    upkeep.declare_limits(loaded)
    upkeep.publish_maintenance(state)
    survey = {
        name: ServiceSurvey(count, untrusted, now, now, 1, 1, 5 << 20, 5 << 20)
        for name, count, untrusted in (("mysql", 22, 0), ("files", 21, 2), ("grafana", 1, 0))
    }
    upkeep.publish_survey(Survey(survey, {}), 90 * GIB)
    targets = {job: exporter.target for job, exporter in exporters.items()}
    prometheus = Prometheus(tmp_path, {**targets, "backup-server": f"{HOST}:{free_port()}"})
    try:
        yield Deployment(prometheus, exporters, loaded, state)
    finally:
        prometheus.stop()
        for exporter in exporters.values():
            exporter.stop()


def test_status_from_prometheus_and_from_the_agents(deployment: Deployment) -> None:
    prometheus, exporters = deployment.prometheus, deployment.exporters
    manifest_file = str(AGAMA)
    wait_for("the first scrape of the sidecar", lambda: prometheus.scraped("backup-agent"), 30)
    time.sleep(3)  # a few scrapes with the failure counters at zero

    # The files backup then fails because the server is unreachable, as runs.py reports it.
    def unreachable(run: Run) -> None:
        run.last_run = time.time()
        run.failures["server_unreachable"] = run.failures.get("server_unreachable", 0) + 1

    deployment.state.update(backup_task("files", "full"), unreachable)
    exporters["backup-agent"].metrics.backup_ended(
        deployment.manifest.services["files"], "full", deployment.state, None
    )

    expected = {
        ("BackupStale", "files"),
        ("BackupLastRunFailed", "files"),
        ("BackupServerUnreachable", "files"),
        ("DrillFailing", "files"),
        ("DrillSlowerThanRTO", "files"),
        ("RepositoryNearlyFull", "backup-maintenance"),
        ("BackupServerDown", "backup-server"),
        ("BackupStale", "grafana"),
    }
    try:
        wait_for("the alerts", lambda: prometheus.firing() >= expected, 150, every=2)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}: not firing {sorted(expected - prometheus.firing())}"
        ) from None

    shown = cli("-m", manifest_file, "status", "--prometheus", prometheus.url)
    assert shown.returncode == 0, shown.stderr
    lines = rows(shown.stdout)
    assert lines["Backup"].startswith("Backup status at ")
    assert f"from Prometheus {prometheus.url}" in lines["Backup"]
    agent_at = exporters["backup-agent"].target
    mysql = lines["mysql"].split("  ")
    mysql = [cell.strip() for cell in mysql if cell.strip()]
    assert mysql[:2] == ["mysql", agent_at]
    assert mysql[3].startswith("3h") and mysql[3].endswith("/ 1d")
    assert mysql[4] == "ok"
    assert mysql[5].startswith("PASS ")
    assert mysql[6:10] == ["12.5s / 30m", "ok", "22", "-"]
    files = lines["files"]
    assert "30h0" in files and "STALE" in files
    assert "FAIL (last pass never)" in files and "45m / 30m  SLOW" in files
    assert "21 (+2 UNTRUSTED)" in files
    alerts = files.split("UNTRUSTED)")[1].split(", ")
    assert {a.strip() for a in alerts} >= {
        "BackupLastRunFailed",
        "BackupServerUnreachable",
        "BackupStale",
        "DrillFailing",
        "DrillSlowerThanRTO",
    }
    assert "never" in lines["grafana"] and "STALE" in lines["grafana"]
    assert lines["Repository:"] == "Repository: 90.0 GiB stored of 100.0 GiB (90%)  NEARLY FULL"
    server = next(line for line in shown.stdout.splitlines() if line.startswith("backup-server"))
    cells = [cell.strip() for cell in server.split("  ") if cell.strip()]
    assert cells[-2:] == ["DOWN: connection refused", "BackupServerDown"], server
    upkeep = lines[exporters["backup-maintenance"].target].split()
    assert upkeep[0] == "backup-maintenance" and upkeep[2:] == ["up", "RepositoryNearlyFull"]
    assert lines[exporters["backup-verifier"].target].split()[2] == "up"

    # Without Prometheus: the agents' own /metrics give the same table, without alerts.
    urls = [f"http://{e.target}/metrics" for e in exporters.values()]
    closed = f"{HOST}:{free_port()}"
    direct = cli(
        "-m",
        manifest_file,
        "status",
        *(f"--metrics={u}" for u in urls),
        f"--metrics=http://{closed}/metrics",
    )
    assert direct.returncode == 0, direct.stderr
    lines = rows(direct.stdout)
    assert lines["Backup"].endswith(", alerts unknown (no Prometheus)")
    assert "STALE" in lines["files"] and "21 (+2 UNTRUSTED)" in lines["files"]
    assert "BackupStale" not in direct.stdout
    assert lines[agent_at].split()[:3] == ["backup-agent", agent_at, "up"]
    assert lines[exporters["backup-maintenance"].target].split()[0] == "backup-maintenance"
    assert lines[closed].split()[:3] == ["-", closed, "DOWN:"]
    assert "NEARLY FULL" in direct.stdout

    # Prometheus gone: one line that says so, exit 1.
    prometheus.stop()
    failed = cli("-m", manifest_file, "status", "--prometheus", prometheus.url)
    assert failed.returncode == 1
    assert failed.stdout == ""
    (line,) = failed.stderr.splitlines()
    assert line.endswith(
        f"ERROR   Prometheus at {prometheus.url} is unreachable: Connection refused"
    )


def test_status_without_a_source_says_what_to_set() -> None:
    result = cli("-m", str(AGAMA), "status")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "status: nothing to read: set monitoring.prometheus_url in the manifest, "
        "or pass --prometheus URL or --metrics URL"
    )


def test_snapshots_table_and_json(
    make_manifest: ManifestFactory, repository: restic.Repository
) -> None:
    loaded = make_manifest({"docs": files_spec(["/srv"])})
    source = loaded.source
    now = datetime.now(UTC)
    good = forge(
        repository, now - timedelta(hours=2), {"service": "docs", "kind": "full"}, b"a" * 5000
    )
    stranger = forge(
        repository, now - timedelta(hours=1), {"service": "docs", "kind": "full"}, host="mallory"
    )
    future = forge(repository, now + timedelta(days=2), {"service": "docs", "kind": "incremental"})
    table = cli("-m", source, "snapshots")
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["TIME", "(UTC)", "ID", "SERVICE", "KIND", "HOST", "SIZE", "TRUSTED"]
    by_id = {line.split()[2]: line for line in lines}
    assert list(by_id) == [good[:8], stranger[:8], future[:8]]  # oldest first
    assert by_id[good[:8]].split()[3:] == ["docs", "full", repository.host, "4.9", "KiB", "yes"]
    assert "no: written under host 'mallory', not testhost" in by_id[stranger[:8]]
    assert "no: dated in the future" in by_id[future[:8]]

    listed = cli("-m", source, "snapshots", "--json")
    assert listed.returncode == 0, listed.stderr
    found = json.loads(listed.stdout)
    assert [s["id"] for s in found] == [good, stranger, future]
    assert set(found[0]) == {"id", "short_id", "time", "hostname", "paths", "tags", "summary"}
    assert "service=docs" in found[0]["tags"]
