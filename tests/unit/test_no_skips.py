"""The suite cannot pass by not running: with BACKUP_AGENT_REQUIRE_INTEGRATION=1 the
hooks in tests/conftest.py turn every kind of skip and xfail into a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SKIPPING = """
import pytest

def test_skip_call():
    pytest.skip("not here")

@pytest.mark.skipif(True, reason="a marker")
def test_skipif_marker():
    pass

@pytest.mark.xfail(reason="expected to fail")
def test_xfail():
    assert False

@pytest.mark.xfail(reason="expected to fail")
def test_xpass():
    pass

def test_runs():
    pass
"""


def run_pytest(directory: Path, required: str) -> subprocess.CompletedProcess[str]:
    (directory / "conftest.py").write_text(
        "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BACKUP_AGENT_REQUIRE_INTEGRATION": required}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(directory)],
        capture_output=True,
        text=True,
        env=env,
        cwd=directory,
        timeout=120,
        check=False,
    )


def test_every_skip_and_xfail_fails_when_integration_is_required(tmp_path: Path) -> None:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    result = run_pytest(tmp_path, "1")
    assert result.returncode == 1, result.stdout
    summary = result.stdout.strip().splitlines()[-1]
    assert "1 passed" in summary
    assert "skipped" not in summary and "xfail" not in summary and "xpass" not in summary
    for name in ("test_skip_call", "test_skipif_marker", "test_xfail", "test_xpass"):
        assert name in result.stdout


def test_a_module_level_skip_fails_collection_when_integration_is_required(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_module.py").write_text(
        "import pytest\npytest.importorskip('no_such_module_anywhere')\n"
    )
    result = run_pytest(tmp_path, "1")
    assert result.returncode != 0
    assert "a skip is a failure with BACKUP_AGENT_REQUIRE_INTEGRATION=1" in result.stdout


def test_without_the_setting_skips_stay_skips(tmp_path: Path) -> None:
    """Outside CI a developer without the tools still gets skips, not failures."""
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    result = run_pytest(tmp_path, "0")
    assert result.returncode == 0, result.stdout
    assert "2 skipped" in result.stdout.strip().splitlines()[-1]
