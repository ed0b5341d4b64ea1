"""A real Prometheus for the tests: it scrapes agents every second and evaluates the
shipped alert rules (compose/prometheus/rules/backup-alerts.yml)."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import need
from tests.net import HOST, free_port

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "compose" / "prometheus" / "rules" / "backup-alerts.yml"


class Prometheus:
    """Prometheus scraping ``target`` (``host:port``) as job ``job``, with the shipped rules."""

    def __init__(self, base: Path, target: str, job: str = "backup-agent") -> None:
        binary = need("prometheus")
        base.mkdir(parents=True, exist_ok=True)
        self.address = f"{HOST}:{free_port(HOST)}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}],
        }
        (base / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={base / 'prometheus.yml'}",
                f"--storage.tsdb.path={base / 'tsdb'}",
                f"--web.listen-address={self.address}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(base / "prometheus.log").open("wb"),
        )

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://{self.address}{path}", timeout=5) as response:
            return json.load(response)["data"]

    def firing(self, alert: str, **labels: str) -> bool:
        """Whether ``alert`` fires with ``labels`` (False while Prometheus starts)."""
        try:
            alerts = self.get("/api/v1/alerts")["alerts"]
        except OSError:
            return False
        return any(
            a["labels"].get("alertname") == alert
            and all(a["labels"].get(k) == v for k, v in labels.items())
            and a["state"] == "firing"
            for a in alerts
        )

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
