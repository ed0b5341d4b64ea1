"""One directory per machine: what an operator copies to it and starts with one command.

A machine's bundle holds the compose role files of its roles (``compose/hosts/``, the
same files the compose stack includes all at once), a generated override per role
file (its ports on the machine's address, the other machines' names mapped to their
addresses, and with ``airgap`` the stand-in images), ``compose.yaml`` including them,
``.env``, the manifest and the inventory, only the secrets and certificates the
machine needs (``secret_store.needed_by``) and, on the monitoring machine,
Prometheus' configuration with every agent, the backup server, the maintenance role
and the verifier as targets. ``up.sh`` starts it: ``docker compose up -d --wait``.

Every machine reaches the others by name: the machine's name (and ``names``), and
``backup-server`` / ``backup-server-verifier`` for the backup server's endpoints,
which is what the manifest and the TLS certificate name. ``PEER_<MACHINE>`` in
``.env`` says where each machine is reached (default: its inventory address).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from backup_agent import secret_store
from backup_agent.errors import BackupError
from backup_agent.inventory import SERVER_NAME, VERIFIER_ENDPOINT, Inventory, Machine

MARKER = ".backup-agent-bundle"
# Each role file of compose/hosts and the files beside it that it mounts.
ROLE_FILES: dict[str, tuple[str, ...]] = {
    "app-mysql": ("mysql/initdb",),
    "app-grafana": ("grafana/provisioning", "grafana/dashboards"),
    "app-files": (),
    "backup-server": (),
    "verifier": (),
    "monitoring": (
        "prometheus/rules",
        "alertmanager",
        "grafana/provisioning",
        "grafana/dashboards",
    ),
}
SHARED = ("hosts/common.yml",)
# Image variables of the role files, passed on from the environment of `bundle`.
IMAGES = (
    "AGENT_IMAGE",
    "SERVER_IMAGE",
    "MYSQL_IMAGE",
    "GRAFANA_IMAGE",
    "PROMETHEUS_IMAGE",
    "ALERTMANAGER_IMAGE",
)
PROMETHEUS_CA = "/run/secrets/ca.pem"


def role_files(machine: Machine) -> list[str]:
    """The role files ``machine`` runs, by name (``app-mysql``, ``backup-server``...)."""
    files = [f"app-{service}" for service in machine.services]
    return files + [
        role for role in ("backup-server", "verifier", "monitoring") if role in machine.roles
    ]


def agent_service(agent: str) -> str:
    """The compose service that runs an agent (a service's sidecar, maintenance, verifier)."""
    return agent if agent in ("maintenance", "verifier") else f"{agent}-agent"


def project_name(inventory: Inventory, machine: Machine) -> str:
    return f"{inventory.project}-{machine.name.replace('.', '-')}"


def write(
    inventory: Inventory,
    machine_name: str,
    secrets: Path,
    compose_dir: Path,
    output: Path,
    *,
    airgap: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Write the bundle of ``machine_name`` into ``output`` (replacing an earlier bundle
    there, never anything else); the secrets directory gets what is missing first."""
    machine = inventory.machine(machine_name)
    secret_store.ensure(inventory, secrets)
    _clear(output)
    stand_ins = _stand_ins(compose_dir) if airgap else {}
    hosts = output / "compose" / "hosts"
    hosts.mkdir(parents=True)
    for shared in SHARED:
        shutil.copy2(compose_dir / shared, output / "compose" / shared)
    shutil.copy2(compose_dir / "hosts" / "up.sh", output / "up.sh")
    includes = []
    for role in role_files(machine):
        source = compose_dir / "hosts" / f"{role}.yml"
        shutil.copy2(source, hosts / source.name)
        for asset in ROLE_FILES[role]:
            if not (output / "compose" / asset).exists():
                _copy(compose_dir / asset, output / "compose" / asset)
        override = host_override(inventory, machine, _services_of(source), stand_ins)
        _write_yaml(hosts / f"{role}.host.yml", override, f"machine {machine.name}: {role}")
        includes.append({"path": [f"compose/hosts/{role}.yml", f"compose/hosts/{role}.host.yml"]})
    if "monitoring" in machine.roles:
        _write_yaml(
            output / "compose" / "prometheus" / "prometheus.yml",
            prometheus_config(inventory, machine),
            "Prometheus of the monitoring machine: every agent, the backup server's rest-server,\n"
            "# the maintenance role and the verifier, each on its machine",
        )
    top = {"name": project_name(inventory, machine), "include": includes}
    _write_yaml(output / "compose.yaml", top, f"machine {machine.name}: start it with ./up.sh")
    (output / ".env").write_text(env_file(inventory, machine, environ or {}))
    shutil.copy2(inventory.manifest_file, output / "manifest.yaml")
    shutil.copy2(inventory.source, output / "inventory.yaml")
    kept = output / "compose" / "secrets"
    kept.mkdir(mode=0o700)
    for name in secret_store.needed_by(inventory, machine):
        shutil.copy2(secrets / name, kept / name)
        secret_store.share(kept / name)
    (output / MARKER).write_text(f"{machine.name}\n")
    return output


def host_override(
    inventory: Inventory,
    machine: Machine,
    services: list[str],
    stand_ins: Mapping[str, Any],
) -> dict[str, Any]:
    """The override of one role file on ``machine``: peers by name, published ports,
    and the air-gapped stand-ins of its services."""
    peers = peer_hosts(inventory, machine)
    result: dict[str, Any] = {}
    for service in services:
        entry: dict[str, Any] = {}
        if peers:
            entry["extra_hosts"] = peers
        ports = published(inventory, machine, service)
        if ports:
            entry["ports"] = ports
        entry = _merge(entry, stand_ins.get(service, {}))
        if entry:
            result[service] = entry
    return {"services": result}


def peer_hosts(inventory: Inventory, machine: Machine) -> dict[str, str]:
    """Every other machine's names, mapped to where this machine reaches it."""
    peers: dict[str, str] = {}
    for other in inventory.machines.values():
        if other.name == machine.name:
            continue
        where = f"${{PEER_{other.env_name}:-{other.address}}}"
        aliases = (SERVER_NAME, VERIFIER_ENDPOINT) if "backup-server" in other.roles else ()
        for name in (other.name, *other.names, *aliases):
            peers[name] = where
    return peers


def published(inventory: Inventory, machine: Machine, service: str) -> list[str]:
    """Ports a compose service publishes on ``machine``'s addresses."""
    ports = inventory.ports
    if service == SERVER_NAME:
        return [f"{machine.address}:{ports.rest}:{ports.rest}"]
    if service == VERIFIER_ENDPOINT:
        return [f"{machine.address}:{ports.rest_verifier}:{ports.rest_verifier}"]
    inside = inventory.manifest.agent.metrics_port
    return [
        f"{machine.metrics_address}:{port}:{inside}"
        for agent, port in machine.metrics_ports.items()
        if agent_service(agent) == service
    ]


def prometheus_config(inventory: Inventory, monitor: Machine) -> dict[str, Any]:
    """Prometheus' configuration on ``monitor``: a target on the same machine by its
    compose service, any other by the machine's name and published port."""
    inside = inventory.manifest.agent.metrics_port
    jobs: dict[str, list[str]] = {
        "backup-agent": [],
        "backup-maintenance": [],
        "backup-verifier": [],
    }
    server: list[str] = []
    for machine in inventory.machines.values():
        local = machine.name == monitor.name
        for agent, port in machine.metrics_ports.items():
            name = {"maintenance": "backup-maintenance", "verifier": "backup-verifier"}.get(
                agent, "backup-agent"
            )
            jobs[name].append(
                f"{agent_service(agent)}:{inside}" if local else f"{machine.name}:{port}"
            )
        if "backup-server" in machine.roles:
            server.append(f"{SERVER_NAME if local else machine.name}:{inventory.ports.rest}")

    def job(name: str, targets: list[str], **more: Any) -> dict[str, Any]:
        return {"job_name": name, **more, "static_configs": [{"targets": targets}]}

    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]},
        "rule_files": ["/etc/prometheus/rules/backup-alerts.yml"],
        "scrape_configs": [
            job("prometheus", ["localhost:9090"]),
            *(job(name, targets) for name, targets in jobs.items()),
            job("backup-server", server, scheme="https", tls_config={"ca_file": PROMETHEUS_CA}),
        ],
    }


def env_file(inventory: Inventory, machine: Machine, environ: Mapping[str, str]) -> str:
    """The machine's .env: where it publishes, where its peers are, images, its own
    variables. docker compose reads it; variables set in the shell win."""
    ports = inventory.ports
    values = {
        "BIND_ADDRESS": machine.address,
        "MANIFEST": "../../manifest.yaml",
        "REST_PORT": ports.rest,
        "REST_VERIFIER_PORT": ports.rest_verifier,
        "GRAFANA_PORT": ports.grafana,
        "PROMETHEUS_PORT": ports.prometheus,
        "ALERTMANAGER_PORT": ports.alertmanager,
        "DASHBOARD_PORT": ports.dashboard,
    }
    if "monitoring" in machine.roles:
        values["COMPOSE_PROFILES"] = "dashboard"
    else:
        monitor = inventory.running("monitoring")
        values["PROMETHEUS_ADDRESS"] = f"{monitor.name}:{ports.prometheus}"
    for other in inventory.machines.values():
        if other.name != machine.name:
            values[f"PEER_{other.env_name}"] = other.address
    values.update({name: environ[name] for name in IMAGES if environ.get(name)})
    values.update(machine.env)
    lines = [
        f"# Machine {machine.name} of {inventory.source}, written by backup-agent bundle.",
        "# PEER_<MACHINE>: where this machine reaches that one (default: its inventory address).",
        *(f"{key}={value}" for key, value in values.items()),
    ]
    return "\n".join(lines) + "\n"


def _services_of(role_file: Path) -> list[str]:
    data = yaml.safe_load(role_file.read_text(encoding="utf-8"))
    return list(data.get("services", {}))


def _stand_ins(compose_dir: Path) -> dict[str, Any]:
    """The air-gapped overrides (compose/airgap.yml), by service."""
    data = yaml.safe_load((compose_dir / "airgap.yml").read_text(encoding="utf-8"))
    services: dict[str, Any] = data.get("services", {})
    return services


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _clear(output: Path) -> None:
    """Make ``output`` empty: a new directory, or an earlier bundle (its marker says so)."""
    if output.exists():
        if not (output / MARKER).is_file():
            if output.is_dir() and not any(output.iterdir()):
                output.rmdir()
            else:
                raise BackupError(f"{output} exists and is not a bundle: choose another --output")
        else:
            shutil.rmtree(output)
    output.mkdir(parents=True, mode=0o700)


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


class _Dumper(yaml.SafeDumper):
    """Writes repeated values out in full: files people read, no YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _write_yaml(path: Path, data: Mapping[str, Any], about: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    path.write_text(
        f"# {about}\n# Written by backup-agent bundle: edit the inventory instead.\n{text}"
    )
