"""Snapshot paths are hostile input: only clean absolute paths are restored from."""

from __future__ import annotations

import pytest

from backup_agent.jobs import grafana


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        ("/etc/grafana/grafana.ini", True),
        ("/var/tmp/backup-agent/grafana-x1", True),
        ("/", False),
        ("", False),
        ("etc/grafana", False),
        ("/etc/grafana/..", False),
        ("/etc/../root", False),
        ("/etc/./grafana", False),
        ("/etc/grafana/", False),
        ("/etc//grafana", False),
    ],
)
def test_clean_snapshot_paths(path: str, clean: bool) -> None:
    assert grafana.clean_path(path) is clean
