"""What a machine's bundle is made of: the role files it runs, the secrets each role file
mounts, its published ports, its peers, Prometheus' targets; and the compose stack as
the same role files on one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from backup_agent import bundle, inventory, manifest, restic, secret_store

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ROOT / "compose" / "hosts"
REFERENCE = ROOT / "manifests" / "inventory.yaml"


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def mounted_secrets(role: str) -> set[str]:
    """The secret files a role file's services mount (by file name), profiles included."""
    data = load_yaml(HOSTS / f"{role}.yml")
    used = {
        entry if isinstance(entry, str) else entry["source"]
        for service in data["services"].values()
        for entry in service.get("secrets", [])
    }
    return {Path(data["secrets"][name]["file"]).name for name in used}


def stack() -> inventory.Inventory:
    return inventory.Inventory.single(manifest.load(ROOT / "manifests" / "compose.yaml"))


def test_the_stack_includes_every_role_file_and_nothing_else() -> None:
    included = load_yaml(ROOT / "compose" / "docker-compose.yml")["include"]
    assert included == [f"hosts/{role}.yml" for role in bundle.ROLE_FILES]
    assert sorted(p.stem for p in HOSTS.glob("*.yml") if p.stem != "common") == sorted(
        bundle.ROLE_FILES
    )


def test_each_machine_gets_exactly_the_secrets_its_role_files_mount() -> None:
    """secret_store.needed_by and the compose files agree, machine by machine; the CA
    key goes nowhere, and the migration's old password is only ever added by hand."""
    loaded = inventory.load(REFERENCE)
    for machine in loaded.machines.values():
        mounted = set().union(*(mounted_secrets(role) for role in bundle.role_files(machine)))
        mounted.discard("restic_password")  # the old shared repository's, for `migrate`
        assert set(secret_store.needed_by(loaded, machine)) == mounted, machine.name
        assert "ca.key" not in mounted


def test_a_sidecar_holds_only_its_own_service_secrets() -> None:
    loaded = inventory.load(REFERENCE)
    db = secret_store.needed_by(loaded, loaded.machine("db"))
    assert {"restic_password_mysql", "rest_mysql", "restic_password_files", "rest_files"} <= set(db)
    assert not {"restic_password_grafana", "rest_grafana", "rest_verifier", "drill_key"} & set(db)
    verify = set(secret_store.needed_by(loaded, loaded.machine("verify")))
    assert {"rest_mysql", "rest_grafana", "rest_files", "backup-server.key"}.isdisjoint(verify)


def test_the_stack_prometheus_file_is_what_bundle_writes_for_one_machine() -> None:
    """compose/prometheus/prometheus.yml is not a second copy: it is the generator's
    output with every role on one machine (targets by compose service)."""
    single = stack()
    written = bundle.prometheus_config(single, single.machine("localhost"))
    assert load_yaml(ROOT / "compose" / "prometheus" / "prometheus.yml") == written


def test_the_monitoring_machine_scrapes_every_agent_on_its_machine() -> None:
    loaded = inventory.load(REFERENCE)
    config = bundle.prometheus_config(loaded, loaded.machine("verify"))
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets == {
        "prometheus": ["localhost:9090"],
        "backup-agent": ["db:9464", "db:9465", "grafana:9464"],
        "backup-maintenance": ["backup:9464"],
        "backup-verifier": ["verifier:9464"],  # the same machine: by its compose service
        "backup-server": ["backup:8000"],
    }
    server = config["scrape_configs"][-1]
    assert server["scheme"] == "https" and server["tls_config"] == {
        "ca_file": "/run/secrets/ca.pem"
    }


def test_a_machine_reaches_the_others_by_name() -> None:
    loaded = inventory.load(REFERENCE)
    peers = bundle.peer_hosts(loaded, loaded.machine("db"))
    assert peers == {
        "grafana": "${PEER_GRAFANA:-10.0.0.12}",
        "backup": "${PEER_BACKUP:-10.0.0.20}",
        "backup.example.org": "${PEER_BACKUP:-10.0.0.20}",
        "backup-server": "${PEER_BACKUP:-10.0.0.20}",
        "backup-server-verifier": "${PEER_BACKUP:-10.0.0.20}",
        "verify": "${PEER_VERIFY:-10.0.0.30}",
    }


def test_ports_are_published_only_on_the_inventorys_addresses() -> None:
    loaded = inventory.load(REFERENCE)
    backup, db = loaded.machine("backup"), loaded.machine("db")
    assert bundle.published(loaded, backup, "backup-server") == ["10.0.0.20:8000:8000"]
    assert bundle.published(loaded, backup, "backup-server-verifier") == ["10.0.0.20:8001:8001"]
    assert bundle.published(loaded, backup, "maintenance") == ["10.0.0.20:9464:9464"]
    assert bundle.published(loaded, db, "files-agent") == ["10.0.0.11:9465:9464"]
    assert bundle.published(loaded, db, "mysql") == []


def test_the_override_adds_stand_ins_to_the_services_present() -> None:
    loaded = inventory.load(REFERENCE)
    stand_ins = load_yaml(ROOT / "compose" / "airgap.yml")["services"]
    override = bundle.host_override(
        loaded, loaded.machine("db"), ["mysql", "mysql-agent"], stand_ins
    )
    services = override["services"]
    assert services["mysql"]["image"] == "local/mariadb:11.8"
    assert services["mysql"]["healthcheck"] == {"test": ["CMD", "healthcheck.sh"]}
    assert "image" not in services["mysql-agent"]
    assert services["mysql-agent"]["ports"] == ["10.0.0.11:9464:9464"]
    assert set(override["services"]) == {"mysql", "mysql-agent"}


def test_the_env_file_says_where_to_publish_and_where_the_peers_are() -> None:
    loaded = inventory.load(REFERENCE)
    text = bundle.env_file(loaded, loaded.machine("verify"), {"AGENT_IMAGE": "me/agent:1"})
    values = dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))
    assert values["BIND_ADDRESS"] == "10.0.0.30"
    assert values["COMPOSE_PROFILES"] == "dashboard"  # the monitoring machine's Grafana
    assert values["PEER_BACKUP"] == "10.0.0.20" and "PEER_VERIFY" not in values
    assert values["AGENT_IMAGE"] == "me/agent:1" and "SERVER_IMAGE" not in values
    assert "PROMETHEUS_ADDRESS" not in values  # its own Prometheus, by service name
    db = bundle.env_file(loaded, loaded.machine("db"), {})
    assert "FILES_PATH=/home/backup/backup" in db.splitlines()
    assert "COMPOSE_PROFILES" not in db
    # backup-agent status on another machine reads the monitoring machine's Prometheus.
    assert f"PROMETHEUS_ADDRESS=verify:{loaded.ports.prometheus}" in db.splitlines()


def test_s3_key_pairs_when_asked_or_when_the_manifest_reaches_s3(tmp_path: Path) -> None:
    """The compose stack asks for every S3 user's key pair (secrets --s3: its S3 modes);
    otherwise an S3 repository brings the agents', verifier's and maintenance role's,
    an S3 copy its owner's and the appending copy user's, and rest-server none."""
    assert secret_store.s3_users(stack()) == []
    agents = ["mysql_agent", "grafana_agent", "files_agent", "verifier", "maintenance"]
    assert secret_store.s3_users(stack(), s3=True) == [*agents, "owner", "copy"]
    for name, users in (("compose-s3.yaml", agents), ("compose-s3-copy.yaml", ["owner", "copy"])):
        on_s3 = inventory.Inventory.single(manifest.load(ROOT / "manifests" / name))
        assert secret_store.s3_users(on_s3) == users, name
    made = secret_store.generated(stack(), s3=True)
    pairs = [made[f"s3_{user}"](tmp_path) for user in ("copy", "owner")]
    assert pairs[0] != pairs[1]
    for number, pair in enumerate(pairs):
        path = tmp_path / f"s3_{number}"
        path.write_text(pair)
        access, secret = restic.read_s3_credentials(str(path))  # the agent accepts it
        assert len(access) == 20 and access == access.upper() and len(secret) == 64
