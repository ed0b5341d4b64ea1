"""Prometheus alert rules: promtool checks them and runs their unit tests.

Also checks the rule file's shape: every alert has a severity and annotations, and the
unit tests cover every alert both firing and not firing. That the rules only use
exported metric names is checked in ``test_dashboard.py``, with the dashboard's queries.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import need

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "compose" / "prometheus" / "rules"
RULES = RULES_DIR / "backup-alerts.yml"
RULE_TESTS = RULES_DIR / "backup-alerts.test.yml"
SEVERITIES = frozenset({"warning", "critical"})

Rule = dict[str, Any]


def promtool(*args: str) -> str:
    """Run promtool in the rules directory; fail with its output unless it exits 0.

    ``test rules`` evaluates every rule each minute across every group's span (two span
    over 8 days): about two and a half minutes of CPU, longer on a loaded machine."""
    command = [need("promtool"), *args]
    result = subprocess.run(
        command, cwd=RULES_DIR, capture_output=True, text=True, timeout=600, check=False
    )
    output = f"{result.stdout}\n{result.stderr}".strip()
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output}"
    return output


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: not a mapping"
    return data


def alerts() -> list[Rule]:
    """Every alerting rule of the rule file."""
    groups = load_yaml(RULES)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules() -> None:
    """The rule file is valid (syntax, PromQL, templates) according to promtool."""
    output = promtool("check", "rules", RULES.name)
    assert f"SUCCESS: {len(alerts())} rules found" in output


@pytest.mark.timeout(660)  # promtool's own limit (600 s) is the one that should speak
def test_promtool_rule_unit_tests() -> None:
    """The rule unit tests in backup-alerts.test.yml pass."""
    output = promtool("test", "rules", RULE_TESTS.name)
    assert "SUCCESS" in output


def test_rule_file_has_one_group_named_backup() -> None:
    groups = load_yaml(RULES)["groups"]
    assert [group["name"] for group in groups] == ["backup"]


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names)), names


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: str(rule["alert"]))
def test_alert_has_severity_and_annotations(rule: Rule) -> None:
    """Routing needs a severity; people need a summary and a description."""
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    assert annotations.get("summary", "").strip()
    assert annotations.get("description", "").strip()


def test_for_durations_are_short() -> None:
    """The compose test uses a 1-minute RPO: BackupStale must fire within minutes."""
    stale = {rule["alert"]: rule for rule in alerts()}["BackupStale"]
    assert stale.get("for", "0s") in {"0s", "30s", "1m"}


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    """Each alert has a test case expecting it and one expecting silence."""
    tests = load_yaml(RULE_TESTS)
    assert tests["rule_files"] == [RULES.name]
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts without a firing test case"
    assert names - quiet == set(), "alerts without a not-firing test case"
    assert (firing | quiet) - names == set(), "test cases for unknown alerts"
