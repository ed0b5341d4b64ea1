"""The inventory: the machines of a deployment, beside its manifest.

A small YAML file (schema: ``schema/inventory.schema.json``) names each machine, its
address, the roles it runs (``app``, ``backup-server``, ``verifier``, ``monitoring``)
and the application services whose data it holds. It is validated like the manifest:
every problem at once, each with its path, and against the manifest it names (the
repository URLs must reach the backup server's two rest-server endpoints over TLS, one
repository per service). ``bundle`` turns it into one directory per machine.

The compose role files (``compose/hosts/``) run the reference services ``mysql``,
``grafana`` and ``files``, one file each, so an inventory places those.
"""

from __future__ import annotations

import ipaddress
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from backup_agent import manifest as manifests
from backup_agent.errors import ManifestError
from backup_agent.manifest.loading import read_document, schema_problems
from backup_agent.manifest.model import SERVICE_FIELD, Manifest

Problems = list[tuple[str, str]]

ROLES = ("app", "backup-server", "verifier", "monitoring")
SINGLE_ROLES = ("backup-server", "verifier", "monitoring")  # exactly one machine each
# The compose service names of the backup server's two rest-server endpoints. Every
# machine reaches the backup server by them too, so one manifest serves one machine
# (the compose stack) and many (the bundles map them to the server's address).
SERVER_NAME = "backup-server"
VERIFIER_ENDPOINT = "backup-server-verifier"
# Services the compose role files run (compose/hosts/app-NAME.yml), each of its own type.
APP_SERVICES = ("mysql", "grafana", "files")
FIRST_METRICS_PORT = 9464


@dataclass(frozen=True)
class Ports:
    """Ports published on the machines' addresses (defaults: the schema's)."""

    rest: int = 8000
    rest_verifier: int = 8001
    prometheus: int = 9090
    alertmanager: int = 9093
    dashboard: int = 3001
    grafana: int = 3000


@dataclass(frozen=True)
class Machine:
    name: str
    address: str
    roles: tuple[str, ...]
    services: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    metrics_address: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    metrics_ports: Mapping[str, int] = field(default_factory=dict)  # agent -> published port

    @property
    def agents(self) -> tuple[str, ...]:
        """The agents running here: each service's sidecar, then maintenance, verifier."""
        extra = (("maintenance",) if "backup-server" in self.roles else ()) + (
            ("verifier",) if "verifier" in self.roles else ()
        )
        return self.services + extra

    @property
    def env_name(self) -> str:
        """The machine's name as a part of an environment variable name."""
        return "".join(c if c.isalnum() else "_" for c in self.name).upper()


@dataclass(frozen=True)
class Inventory:
    source: str
    manifest: Manifest
    manifest_file: Path
    machines: Mapping[str, Machine]
    project: str = "agama"
    ports: Ports = Ports()

    def machine(self, name: str) -> Machine:
        try:
            return self.machines[name]
        except KeyError:
            known = ", ".join(sorted(self.machines))
            problem = ("machines", f"no machine {name!r} ({known})")
            raise ManifestError(self.source, [problem]) from None

    def running(self, role: str) -> Machine:
        """The machine that runs ``role`` (backup-server, verifier or monitoring)."""
        return next(m for m in self.machines.values() if role in m.roles)

    def tls_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(DNS names, IP addresses) the backup server's certificate must hold."""
        server = self.running("backup-server")
        dns = (SERVER_NAME, VERIFIER_ENDPOINT, *dict.fromkeys((server.name, *server.names)))
        return dns, (server.address,)

    @classmethod
    def single(cls, loaded: Manifest) -> Inventory:
        """Every role and service on one machine: the compose stack (compose/docker-compose.yml)."""
        machine = Machine(
            "localhost", "127.0.0.1", ROLES, tuple(loaded.services), metrics_address="127.0.0.1"
        )
        machine = _with_metrics_ports(machine, {})
        return cls(loaded.source, loaded, Path(loaded.source), {machine.name: machine})


def load(path: str | Path) -> Inventory:
    """Read and validate an inventory and its manifest; raises ``ManifestError`` listing
    every problem of both."""
    source = str(path)
    data = read_document(path)
    if not isinstance(data, dict):
        raise ManifestError(source, [("(top)", "must be a mapping")])
    problems = schema_problems(data, "inventory")
    if any(p == "manifest" or p == "(top)" for p, _ in problems):
        raise ManifestError(source, problems)
    manifest_file = Path(path).parent / data["manifest"]
    # The manifest as the machines read it: their .env gives it the endpoints' ports.
    ports = data.get("ports", {})
    environ = {
        **os.environ,
        "REST_PORT": str(ports.get("rest", Ports.rest)),
        "REST_VERIFIER_PORT": str(ports.get("rest_verifier", Ports.rest_verifier)),
    }
    loaded: Manifest | None = None
    try:
        loaded = manifests.load(manifest_file, environ)
    except ManifestError as exc:
        problems += [("manifest", f"{exc.source}: {where}: {why}") for where, why in exc.problems]
    if problems:
        raise ManifestError(source, problems)
    assert loaded is not None
    checker = _Checker(data, loaded)
    inventory = checker.build(source, manifest_file)
    if checker.problems:
        raise ManifestError(source, checker.problems)
    return inventory


def is_inventory(path: str | Path) -> bool:
    """Whether a YAML file is an inventory (it has ``machines``) rather than a manifest."""
    data = read_document(path)
    return isinstance(data, dict) and "machines" in data


class _Checker:
    """The cross-field checks, collecting every problem."""

    def __init__(self, data: Mapping[str, Any], loaded: Manifest) -> None:
        self.data = data
        self.manifest = loaded
        self.problems: Problems = []

    def build(self, source: str, manifest_file: Path) -> Inventory:
        raw_ports = dict(self.data.get("ports", {}))
        metrics = raw_ports.pop("metrics", {})
        ports = Ports(**raw_ports)
        machines = {
            name: self.machine(name, spec, metrics) for name, spec in self.data["machines"].items()
        }
        self.roles(machines)
        self.services(machines)
        self.unique(machines)
        for machine in machines.values():
            self.published(machine, ports)
        known = {agent for m in machines.values() for agent in m.agents}
        for agent in metrics:
            if agent not in known:
                self.problems.append(
                    (f"ports.metrics.{agent}", f"no such agent (have: {', '.join(sorted(known))})")
                )
        inventory = Inventory(
            source, self.manifest, manifest_file, machines, self.data.get("project", "agama"), ports
        )
        if not self.problems:
            self.repositories(inventory)
        return inventory

    def machine(self, name: str, spec: Mapping[str, Any], metrics: Mapping[str, int]) -> Machine:
        where = f"machines.{name}"
        for key in ("address", "metrics_address"):
            if key in spec and not _is_ip(spec[key]):
                self.problems.append(
                    (
                        f"{where}.{key}",
                        f"{spec[key]!r} is not an IP address (DNS names go in names)",
                    )
                )
        roles = tuple(spec["roles"])
        services = tuple(spec.get("services", ()))
        if "app" in roles and not services:
            self.problems.append((f"{where}.services", "is required for role app"))
        if services and "app" not in roles:
            self.problems.append(
                (f"{where}.services", "only a machine with role app runs services")
            )
        for index, alias in enumerate(spec.get("names", ())):
            if alias in (SERVER_NAME, VERIFIER_ENDPOINT):
                self.problems.append((f"{where}.names.{index}", f"{alias!r} is reserved"))
        machine = Machine(
            name=name,
            address=spec["address"],
            roles=roles,
            services=services,
            names=tuple(spec.get("names", ())),
            metrics_address=spec.get("metrics_address", spec["address"]),
            env=dict(spec.get("env", {})),
        )
        return _with_metrics_ports(machine, metrics)

    def roles(self, machines: Mapping[str, Machine]) -> None:
        for role in SINGLE_ROLES:
            running = [m.name for m in machines.values() if role in m.roles]
            if not running:
                self.problems.append(("machines", f"no machine has role {role}"))
            for name in running[1:]:
                self.problems.append(
                    (f"machines.{name}.roles", f"{role} runs on {running[0]} already: one machine")
                )

    def services(self, machines: Mapping[str, Machine]) -> None:
        placed: dict[str, str] = {}
        for machine in machines.values():
            for index, service in enumerate(machine.services):
                where = f"machines.{machine.name}.services.{index}"
                defined = self.manifest.services.get(service)
                if defined is None:
                    have = ", ".join(self.manifest.services)
                    self.problems.append(
                        (where, f"{service!r} is not a service of the manifest ({have})")
                    )
                elif service not in APP_SERVICES or defined.type != service:
                    self.problems.append(
                        (
                            where,
                            f"{service!r}: the compose role files run services named "
                            f"{', '.join(APP_SERVICES)}, each of its own type",
                        )
                    )
                elif service in placed:
                    self.problems.append((where, f"{service} runs on {placed[service]} already"))
                placed.setdefault(service, machine.name)
        for service in self.manifest.services:
            if service not in placed:
                self.problems.append(("machines", f"service {service} runs on no machine"))

    def unique(self, machines: Mapping[str, Machine]) -> None:
        seen: dict[str, str] = {}
        for machine in machines.values():
            if machine.address in seen:
                self.problems.append(
                    (
                        f"machines.{machine.name}.address",
                        f"{machine.address} is {seen[machine.address]}'s address too",
                    )
                )
            seen.setdefault(machine.address, machine.name)
        names = Counter(n for m in machines.values() for n in (m.name, *m.names))
        for name, count in names.items():
            if count > 1:
                self.problems.append(("machines", f"the name {name} is given {count} times"))

    def published(self, machine: Machine, ports: Ports) -> None:
        """No two endpoints of one machine publish the same port on the same address."""
        used: list[tuple[str, int, str]] = [
            (machine.metrics_address, port, f"{agent} metrics")
            for agent, port in machine.metrics_ports.items()
        ]
        own = machine.address
        if "backup-server" in machine.roles:
            used += [
                (own, ports.rest, "rest-server"),
                (own, ports.rest_verifier, "verifier endpoint"),
            ]
        if "monitoring" in machine.roles:
            used += [
                (own, ports.prometheus, "prometheus"),
                (own, ports.alertmanager, "alertmanager"),
                (own, ports.dashboard, "dashboard"),
            ]
        if "grafana" in machine.services:
            used.append((own, ports.grafana, "grafana"))
        clashes = Counter((address, port) for address, port, _ in used)
        for (address, port), count in clashes.items():
            if count > 1:
                what = ", ".join(w for a, p, w in used if (a, p) == (address, port))
                self.problems.append(
                    (
                        f"machines.{machine.name}",
                        f"{address}:{port} is published {count} times ({what})",
                    )
                )

    def repositories(self, inventory: Inventory) -> None:
        """The manifest must give every service its own repository on the backup server,
        over TLS, through the two endpoints the inventory publishes."""
        loaded = self.manifest
        repo = loaded.repository
        server = inventory.running("backup-server")
        hosts = {SERVER_NAME, VERIFIER_ENDPOINT, server.name, *server.names, server.address}
        wrong: list[str] = []
        wrong += _endpoint("repository.url", repo.url, hosts, inventory.ports.rest)
        drill_url = loaded.drill.repository_url if loaded.drill else None
        if drill_url is None:
            wrong.append("drill.repository_url: required (the verifier's endpoint)")
        else:
            wrong += _endpoint(
                "drill.repository_url", drill_url, hosts, inventory.ports.rest_verifier
            )
        if SERVICE_FIELD not in repo.password_file:
            wrong.append(f"repository.password_file: must name {SERVICE_FIELD} (a password each)")
        if not repo.cacert:
            wrong.append("repository.cacert: required (the CA of the backup server's certificate)")
        if not loaded.maintenance.repository_url:
            wrong.append("maintenance.repository_url: required (the repositories on disk)")
        self.problems += [("manifest", f"{loaded.source}: {line}") for line in wrong]


def _endpoint(key: str, url: str, hosts: set[str], port: int) -> list[str]:
    """Problems of a repository URL that should be ``rest:https://HOST:PORT/{service}``."""
    scheme, _, rest = url.partition(":")
    parts = urlsplit(rest)
    if scheme != "rest" or parts.scheme != "https":
        return [f"{key}: {url} must be rest:https://... (TLS between machines)"]
    problems = []
    if parts.hostname not in hosts:
        problems.append(
            f"{key}: host {parts.hostname} is not the backup server ({', '.join(sorted(hosts))})"
        )
    if parts.port != port:
        problems.append(f"{key}: port {parts.port} is not the inventory's {port}")
    if parts.path.strip("/") != SERVICE_FIELD:
        problems.append(f"{key}: the path must be /{SERVICE_FIELD} (rest-server --private-repos)")
    return problems


def _with_metrics_ports(machine: Machine, chosen: Mapping[str, int]) -> Machine:
    """The machine with a metrics port for each of its agents: the inventory's, or the
    next free one from 9464."""
    ports: dict[str, int] = {}
    taken = {chosen[a] for a in machine.agents if a in chosen}
    candidate = FIRST_METRICS_PORT
    for agent in machine.agents:
        if agent in chosen:
            ports[agent] = chosen[agent]
            continue
        while candidate in taken:
            candidate += 1
        ports[agent] = candidate
        taken.add(candidate)
    return replace(machine, metrics_ports=ports)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
