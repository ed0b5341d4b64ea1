"""Grafana restore replaces in the target only the names the service backs up: a
snapshot is hostile input, and its paths must not choose what is removed there."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from backup_agent.jobs import grafana
from backup_agent.jobs.base import RestoreRequest
from tests import grafana_db
from tests.conftest import ManifestFactory
from tests.integration.conftest import grafana_service

pytestmark = pytest.mark.integration


def test_a_snapshot_path_the_service_does_not_back_up_is_left_alone(
    make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    """Backed up with grafana.ini, restored by a manifest whose config file is
    custom.ini: the target's own grafana.ini stays as it was, and the report says
    which snapshot path was not restored."""
    dirs = grafana_db.make_grafana_dirs(tmp_path / "var/lib/grafana", tmp_path / "etc/grafana")
    with closing(grafana_db.connect(dirs.database)) as db:
        grafana_db.populate(db, dashboards=3, alert_rules=1)
    before = make_manifest({"grafana": grafana_service(dirs)})
    grafana.backup(before, before.service("grafana"), "full")

    renamed = grafana_service(dirs, config_file=str(tmp_path / "etc/grafana/custom.ini"))
    after = make_manifest({"grafana": renamed})
    target = tmp_path / "target"
    target.mkdir()
    (target / "grafana.ini").write_text("the target's own\n")
    result = grafana.restore(after, after.service("grafana"), RestoreRequest(target=str(target)))

    assert (target / "grafana.ini").read_text() == "the target's own\n"
    assert sorted(p.name for p in target.iterdir()) == [
        "grafana.db",
        "grafana.ini",
        "plugins",
        "provisioning",
    ]
    assert result.verified[-1] == (f"not restored (not this service's paths): {dirs.config_file}")
