"""scripts/registry-probe.sh: how `make up` tells "no registry" from other pull failures.

Only an unreachable registry may turn `make up` to the air-gapped stand-ins; a bad
image name must stop it. ``registry.invalid`` never resolves (RFC 2606), on any host.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import docker_with

pytestmark = pytest.mark.integration

PROBE = Path(__file__).resolve().parents[2] / "scripts" / "registry-probe.sh"
PRESENT = "local/mariadb:11.8"  # built by make base-images


def probe(*images: str) -> subprocess.CompletedProcess[str]:
    docker_with(PRESENT).close()
    return subprocess.run(["bash", str(PROBE), *images], capture_output=True, text=True)


def test_images_already_here_are_not_pulled() -> None:
    result = probe(PRESENT)
    assert (result.returncode, result.stderr) == (0, "")


def test_an_unreachable_registry_means_air_gap() -> None:
    result = probe(PRESENT, "registry.invalid/backup/none:1")
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("docker pull registry.invalid/backup/none:1: ")


def test_other_pull_failures_stop_instead_of_falling_back() -> None:
    result = probe("Not/A-Valid:Reference!")
    assert result.returncode == 1, result.stderr
    assert "docker pull Not/A-Valid:Reference!" in result.stderr
