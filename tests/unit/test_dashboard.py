"""Grafana dashboard and provisioning; every metric name in it and in the alert rules.

The names the agents export are taken from ``backup_agent.metrics`` itself (a registry
with the reference manifest declared), so renaming a metric in the code fails here
until the dashboard and the rules follow.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from backup_agent import drill, kit, manifest
from backup_agent.metrics import Metrics
from tests.conftest import need

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "compose" / "grafana" / "dashboards" / "backup.json"
PROVISIONING = ROOT / "compose" / "grafana" / "provisioning"
RULES = ROOT / "compose" / "prometheus" / "rules" / "backup-alerts.yml"
RULE_TESTS = ROOT / "compose" / "prometheus" / "rules" / "backup-alerts.test.yml"
AGAMA = ROOT / "manifests" / "agama.yaml"
DASHBOARDS_PATH = "/etc/grafana/dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# Metrics used besides the agents' own: Prometheus' scrape status.
OTHER_METRICS = frozenset({"up"})
# prometheus_client drops these suffixes from family names; samples carry them.
SAMPLE_SUFFIX = {"counter": "_total", "info": "_info"}

# Values for Grafana's variables, to hand the queries to promtool.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1h",
    "$__range": "7d",
    "$service": ".*",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENTIFIER = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")
_BACKUP_NAME = re.compile(r"\bbackup_[a-z_]+")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*\w+\s*\)\s*$", re.DOTALL)
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"})

Json = dict[str, Any]


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, labels, keywords left out)."""
    text = _STRING.sub(" ", expr)
    text = _VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = {
        match.group(1)
        for match in _IDENTIFIER.finditer(text)
        if match.group(2) is None and match.group(1).lower() not in _KEYWORDS
    }
    return names | set(_BACKUP_NAME.findall(expr))


def exported_names(registry: CollectorRegistry) -> tuple[frozenset[str], frozenset[str]]:
    """(main series name of each family, every sample name) the registry exposes."""
    main: set[str] = set()
    samples: set[str] = set()
    for family in registry.collect():
        main.add(family.name + SAMPLE_SUFFIX.get(family.type, ""))
        samples.update(sample.name for sample in family.samples)
    return frozenset(main), frozenset(main | samples)


def all_panels(panels: list[Json]) -> Iterator[Json]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def load_yaml(path: Path) -> Json:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[frozenset[str], frozenset[str]]:
    """Names from a registry with agama.yaml's services declared and a drill report read,
    and from the maintenance role's recovery-kit collector."""
    report = str(tmp_path_factory.mktemp("drills") / "report.json")
    result = drill.DrillResult("mysql", True, 12.0, 1800.0, 7200.0, 1.0e9, "abc", ["ok"])
    drill.update_report(report, [result], {"passed": True})
    registry = CollectorRegistry()
    metrics = Metrics(registry, role="backup", report_file=report)
    loaded = manifest.load(AGAMA)
    metrics.declare(loaded, list(loaded.services))
    # The maintenance role's recovery-kit metrics (read from the export record).
    record = str(tmp_path_factory.mktemp("kit") / "recovery-kit.json")
    kit_registry = CollectorRegistry()
    Metrics(kit_registry, role="maintenance", recovery_kit=kit.Watch(record, {}))
    (main, samples), (kit_main, kit_samples) = (
        exported_names(registry),
        exported_names(kit_registry),
    )
    return main | kit_main, samples | kit_samples


@pytest.fixture(scope="module")
def known(exported: tuple[frozenset[str], frozenset[str]]) -> frozenset[str]:
    """Every metric name a query may use."""
    return exported[1] | OTHER_METRICS


@pytest.fixture(scope="module")
def dashboard() -> Json:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def data_panels(dashboard: Json) -> list[Json]:
    return [p for p in all_panels(dashboard["panels"]) if p.get("type") != "row"]


@pytest.fixture(scope="module")
def exprs(data_panels: list[Json]) -> list[str]:
    return [target["expr"] for panel in data_panels for target in panel.get("targets", [])]


def variable_queries(dashboard: Json) -> list[str]:
    """The PromQL part of the query variables (``label_values(SELECTOR, label)``)."""
    queries = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(text)
        queries.append((match.group(1) or "") if match else text)
    return queries


# --- the extraction helpers themselves --------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        (
            "time() - backup_last_success_timestamp_seconds > backup_rpo_seconds",
            {"backup_last_success_timestamp_seconds", "backup_rpo_seconds"},
        ),
        (
            'sum by (service, result) (increase(backup_runs_total{service=~"$service"}'
            "[$__interval]))",
            {"backup_runs_total"},
        ),
        (
            "a > on(service) group_left() max by(service) (b) and c offset 5m > 0.5 * 1e9",
            {"a", "b", "c"},
        ),
        ('up{job=~"backup-agent|backup_maintenance"} == bool 0', {"up", "backup_maintenance"}),
        ("time()", set()),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exported_names_include_suffixes(
    exported: tuple[frozenset[str], frozenset[str]],
) -> None:
    """Counters are exposed with _total, the Info metric with _info; stripped names are not."""
    main, samples = exported
    assert {"backup_runs_total", "backup_agent_build_info", "backup_rpo_seconds"} <= main
    assert "backup_runs" not in samples
    assert "backup_agent_build" not in samples
    assert all(name.startswith("backup_") for name in samples)


# --- the dashboard ----------------------------------------------------------------------


def test_dashboard_identity(dashboard: Json) -> None:
    assert dashboard["uid"] == "backup-overview"
    assert dashboard["title"] == "Backups"
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard.get("id") is None


def test_datasource_is_a_variable(dashboard: Json, data_panels: list[Json]) -> None:
    """Every panel and target queries the ``datasource`` variable (Prometheus)."""
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in data_panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_every_panel_has_a_query(data_panels: list[Json]) -> None:
    assert len(data_panels) >= 10
    for panel in data_panels:
        targets = panel.get("targets", [])
        assert targets, f"panel {panel['title']!r} has no target"
        for target in targets:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r}: empty query"


def test_rows_nest_panels(dashboard: Json) -> None:
    """At least one collapsed row keeps its panels inside; they are checked too."""
    nested = [p for row in dashboard["panels"] for p in row.get("panels", [])]
    assert nested


def test_panel_ids_are_unique(dashboard: Json) -> None:
    ids = [panel["id"] for panel in all_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))


def test_every_query_names_an_exported_metric(
    exprs: list[str], dashboard: Json, known: frozenset[str]
) -> None:
    """Each query selects at least one metric, and only metrics that exist."""
    for expr in exprs + variable_queries(dashboard):
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= known, f"unknown metric(s) {sorted(names - known)} in {expr!r}"


def test_dashboard_shows_every_exported_metric(
    exprs: list[str], exported: tuple[frozenset[str], frozenset[str]]
) -> None:
    """A metric added to the agents gets a panel."""
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert exported[0] - used == set()


def test_queries_parse_as_promql(exprs: list[str], dashboard: Json, tmp_path: Path) -> None:
    """promtool parses every query (Grafana's variables replaced by sample values)."""
    promtool = need("promtool")
    rules = []
    for number, expr in enumerate(exprs + variable_queries(dashboard)):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unhandled Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard_query_{number}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


# --- provisioning -----------------------------------------------------------------------


def test_datasource_provisioning() -> None:
    (source,) = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True


def test_dashboard_provisioning() -> None:
    (provider,) = load_yaml(PROVISIONING / "dashboards" / "backup.yml")["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == DASHBOARDS_PATH


# --- the alert rules --------------------------------------------------------------------


def test_alert_rules_use_exported_metrics(known: frozenset[str]) -> None:
    """Expressions and annotation queries of the rules name only exported metrics."""
    for group in load_yaml(RULES)["groups"]:
        for rule in group["rules"]:
            names = metric_names(rule["expr"])
            assert names, f"no metric in {rule['expr']!r}"
            for text in rule.get("annotations", {}).values():
                names |= set(_BACKUP_NAME.findall(text))
            name = rule.get("alert", rule.get("record"))
            assert names <= known, f"{name}: unknown metric(s) {sorted(names - known)}"


def test_alert_rule_tests_use_exported_metrics(known: frozenset[str]) -> None:
    """The rule tests' input series are named like the real ones."""
    for group in load_yaml(RULE_TESTS)["tests"]:
        for series in group["input_series"]:
            name = series["series"].split("{", 1)[0].strip()
            assert name in known, f"{group['name']}: unknown metric {name}"


def test_panels_do_not_overlap(dashboard: Json) -> None:
    """Every grid cell holds one panel at most (rows added by separate changes collide)."""
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]
