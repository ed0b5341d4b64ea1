"""The MySQL drill with a throwaway server container started through the docker SDK.

Needs a Docker engine and a MySQL-compatible image: DRILL_IMAGE, by default the
air-gapped MariaDB stand-in that ``make base-images`` builds. In CI both exist, and
a missing one fails the test instead of skipping it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backup_agent import drill
from backup_agent.jobs import mysql
from backup_agent.jobs.mysql.scratch import LABEL, owner
from backup_agent.manifest import Manifest
from tests.conftest import ManifestFactory, docker_with
from tests.integration.conftest import mysql_service
from tests.mariadb_server import MariaDB

pytestmark = pytest.mark.integration

IMAGE = os.environ.get("DRILL_IMAGE", "local/mariadb:11.8")


@pytest.fixture
def docker_client() -> Iterator[Any]:
    """A docker SDK client with the drill image present; fail in CI, skip elsewhere."""
    client = docker_with(IMAGE)
    yield client
    client.close()


def drill_containers(client: Any, loaded: Manifest) -> list[Any]:
    """The drill containers of the manifest's verifier (not those of parallel runs)."""
    assert loaded.drill is not None
    label = f"{LABEL}={owner(loaded.drill.mysql, loaded.drill.scratch_dir)}"
    return list(client.containers.list(all=True, filters={"label": label}))


def test_the_drill_restores_into_a_throwaway_container_and_removes_it(
    docker_client: Any,
    mariadb: MariaDB,
    database: str,
    backup_defaults: str,
    make_manifest: ManifestFactory,
    tmp_path: Path,
) -> None:
    sanity = [{"name": "customers", "sql": f"SELECT COUNT(*) = 2000 FROM {database}.customer"}]
    verification = {
        "schedule": "0 6 * * 1",
        "scratch_dir": str(tmp_path / "drill"),
        "mysql": {"image": IMAGE, "server_args": ["--innodb-buffer-pool-size=256M"]},
    }
    service = mysql_service(mariadb, backup_defaults, database, sanity_queries=sanity)
    loaded = make_manifest({"db": service}, drill=verification)
    mysql.backup(loaded, loaded.service("db"), "full")

    result = drill.drill(loaded, loaded.service("db"))

    assert result.passed, result.error
    checks = " / ".join(result.checks)
    assert "SHA-256" in checks and "2 tables present" in checks and "'customers' holds" in checks
    assert drill_containers(docker_client, loaded) == []  # torn down

    # A failing proof tears the container down too.
    broken = {
        **service,
        "mysql": {**service["mysql"], "sanity_queries": [{"name": "no", "sql": "SELECT 0"}]},
    }
    loaded = make_manifest({"db": broken}, drill=verification)
    failed = drill.drill(loaded, loaded.service("db"))
    assert not failed.passed and failed.error == "sanity query 'no' returned 0"
    assert drill_containers(docker_client, loaded) == []
