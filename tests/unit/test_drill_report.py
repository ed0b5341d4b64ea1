"""The drill report file: merged atomically, and never replacing a file it did not write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backup_agent import drill
from backup_agent.errors import BackupError

RESULT = drill.DrillResult("mysql", True, 12.0, 1800.0, 7200.0, 1.0e9, "abc", ["ok"])


def test_an_existing_file_that_is_not_a_report_is_never_replaced(tmp_path: Path) -> None:
    """A mistaken report_file (or --report) must not overwrite someone's file."""
    precious = tmp_path / "precious.txt"
    precious.write_text("not a report\n")
    with pytest.raises(BackupError, match="is not a drill report: refusing to replace it"):
        drill.update_report(str(precious), [RESULT], {"passed": True})
    assert precious.read_text() == "not a report\n"


def test_results_are_merged_and_the_last_success_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    drill.update_report(str(path), [RESULT], {"passed": True})
    failed = drill.DrillResult("mysql", False, 3.0, 1800.0, 7200.0, 2.0e9, error="broken")
    report = drill.update_report(str(path), [failed], {"passed": True})
    entry = report["services"]["mysql"]
    assert (entry["passed"], entry["last_success"]) == (False, 1.0e9)
    assert json.loads(path.read_text()) == report
