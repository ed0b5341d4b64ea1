"""compose/alertmanager/alertmanager.yml in a real Alertmanager (Debian's, the stand-in).

Alertmanager refuses to start with an invalid file, so starting it checks the file;
alerts posted to its API then show the inhibit rule at work.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import docker_with, wait_for

pytestmark = pytest.mark.integration

IMAGE = "local/alertmanager:debian"
CONFIG = Path(__file__).resolve().parents[2] / "compose" / "alertmanager" / "alertmanager.yml"


@pytest.fixture
def alertmanager() -> Iterator[str]:
    """HOST:PORT of an Alertmanager running the stack's configuration."""
    client = docker_with(IMAGE)
    container = client.containers.run(
        IMAGE,
        volumes={str(CONFIG): {"bind": "/etc/alertmanager/alertmanager.yml", "mode": "ro"}},
        ports={"9093/tcp": ("127.0.0.1", None)},
        detach=True,
    )
    try:
        container.reload()
        address = f"127.0.0.1:{container.ports['9093/tcp'][0]['HostPort']}"

        def ready() -> bool:
            container.reload()
            assert container.status != "exited", container.logs().decode()[-2000:]
            try:
                with urllib.request.urlopen(f"http://{address}/-/ready", timeout=2):
                    return True
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_for("Alertmanager ready", ready, 30)
        yield address
    finally:
        container.remove(force=True, v=True)
        client.close()


def api(address: str, path: str, body: Any = None) -> Any:
    """Alertmanager's API v2: GET, or POST of ``body`` as JSON."""
    request = urllib.request.Request(
        f"http://{address}/api/v2{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http:// above
        return json.loads(response.read() or b"null")


def test_an_rto_limit_alert_silences_the_rto_target_alert_of_its_service(
    alertmanager: str,
) -> None:
    fired = [
        ("DrillSlowerThanRTOLimit", "mysql"),
        ("DrillSlowerThanRTO", "mysql"),
        ("DrillFailing", "mysql"),
        ("DrillSlowerThanRTO", "files"),  # another service: not silenced
    ]
    api(
        alertmanager,
        "/alerts",
        [{"labels": {"alertname": name, "service": service}} for name, service in fired],
    )
    expected = {
        ("DrillSlowerThanRTOLimit", "mysql"): False,
        ("DrillSlowerThanRTO", "mysql"): True,
        ("DrillFailing", "mysql"): False,
        ("DrillSlowerThanRTO", "files"): False,
    }
    seen: list[dict[tuple[str, str], bool]] = []

    def inhibited() -> bool:
        # Alertmanager marks inhibited alerts a moment after it accepts them.
        seen.append(
            {
                (a["labels"]["alertname"], a["labels"]["service"]): bool(a["status"]["inhibitedBy"])
                for a in api(alertmanager, "/alerts")
            }
        )
        return seen[-1] == expected

    try:
        wait_for("the inhibit rule's marks", inhibited, 30)
    except AssertionError:
        assert seen[-1] == expected
