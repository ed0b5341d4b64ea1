"""The deployment on several machines, for real, simulated on this one Docker host.

Five machines of tests/e2e/hosts/inventory.yaml, each a compose project of its own on
its own Docker network, started from its own bundle (`backup-agent bundle`, then
`./up.sh` in the bundle, as an operator does), publishing only on its own loopback
address (127.0.0.11 backup server, .12 MySQL, .13 Grafana and files, .14 verifier,
.15 monitoring). They reach each other only through those published ports: their
containers resolve the other machines' names to the Docker host's gateway, where
tests/e2e/relay.py forwards each port to the destination's published address, as the
network between real machines would. One scenario, in order:

1. backups flow from the application machines to the backup server, over TLS (every
   connection to rest-server starts with a TLS handshake), into one repository per
   service; the drills run on the verification machine and pass; Prometheus on the
   monitoring machine scrapes every agent, the backup server, the maintenance role and
   the verifier, and the recovery kit exported before the start is current;
2. the MySQL sidecar's credentials cannot read or write Grafana's repository, cannot
   make a snapshot of another service count (one tagged grafana stays in its own
   repository), cannot delete; nor can the verifier's;
3. the MySQL machine is lost (containers, volumes, bundle and secrets, and the
   administrator's secrets directory too): from the recovery kit alone, a new bundle,
   MySQL first, the runbook's restore, the data verified; the time from "host lost"
   to "data verified" is printed against the RTO;
4. the backup server's rest-server stops: BackupServerDown fires;
5. the Grafana machine is lost: rebuilt from the kit, Grafana and the files restored;
6. the backup server is lost with its disk: rebuilt from the kit, empty repositories,
   every agent backs up again and the drills pass;
7. nothing of the test is left behind.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import wait_for
from tests.e2e.relay import TLS_HANDSHAKE, Relay, docker_gateway
from tests.e2e.test_stack import (
    FINGERPRINT_SQL,
    IMAGES,
    Prometheus,
    docker_ids,
    ensure_images,
    newest_dumps,
    orders_sql,
    require_docker,
    say,
    status_table,
    tree_hashes,
    write_files,
)
from tests.net import free_port_on

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = Path(__file__).with_name("hosts") / "inventory.yaml"
SERVICES = ("mysql", "grafana", "files")
AGENT_IMAGE, SERVER_IMAGE = IMAGES[0], IMAGES[1]


class Machine:
    """One simulated machine: its bundle directory and its compose project."""

    def __init__(self, name: str, bundle: Path, deployment: Deployment) -> None:
        self.name = name
        self.bundle = bundle
        self.deployment = deployment
        self.project = f"{deployment.prefix}-{name}"
        spec = deployment.inventory["machines"][name]
        self.address: str = spec["address"]

    @property
    def env(self) -> dict[str, str]:
        return {**self.deployment.env, "COMPOSE_PROJECT_NAME": self.project}

    def up(self, *services: str) -> None:
        """`./up.sh [SERVICE...]` in the bundle: the one command on the machine."""
        result = subprocess.run(
            ["./up.sh", *services],
            cwd=self.bundle, env=self.env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, (
            f"{self.name}: ./up.sh\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )

    def compose(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", "compose", *args],
            cwd=self.bundle, env=self.env, input=stdin, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"{self.name}: docker compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def exec(self, service: str, *argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.compose("exec", "-T", service, *argv, **kwargs)

    def down(self) -> None:
        """Containers, networks and volumes of the machine, gone."""
        if self.bundle.exists():
            args = ["--profile", "restore", "--profile", "dashboard", "--profile", "migrate"]
            self.compose(
                *args, "down", "--volumes", "--remove-orphans", "--timeout=10", check=False
            )
        label = f"label=com.docker.compose.project={self.project}"
        for kind, remove in (("container", "rm -f -v"), ("volume", "rm -f"), ("network", "rm")):
            left = docker_ids(kind, label)
            if left:
                subprocess.run(["docker", kind, *remove.split(), *left], capture_output=True)

    def logs(self) -> str:
        if not self.bundle.exists():
            return ""
        return self.compose("logs", "--no-color", "--tail=80", check=False).stdout


class Deployment:
    """The administrator's side: inventory, secrets, kit, bundles; and the machines."""

    def __init__(self, base: Path) -> None:
        self.base = base
        # Several runs at once on one engine: BACKUP_AGENT_E2E_PROJECT, as in test_stack.
        prefix = os.environ.get("BACKUP_AGENT_E2E_PROJECT", "agama-hosts")
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.inventory: dict[str, Any] = yaml.safe_load(INVENTORY.read_text())
        self.gateway = docker_gateway(AGENT_IMAGE)
        # The file's ports, moved to ports free right now on every machine's address and
        # on the relay's: another run on this engine may hold the file's own.
        listening = [m["address"] for m in self.inventory["machines"].values()] + [self.gateway]
        self.inventory["ports"] = free_ports(self.inventory["ports"], listening)
        self.admin = base / "admin"  # the administrator's machine: inventory and secrets
        self.safe = base / "safe"  # off every machine: the recovery kit
        self.files = base / "files"  # the Grafana machine's FILES_PATH
        self.machines: dict[str, Machine] = {}
        peers = {
            f"PEER_{n.upper().replace('-', '_')}": "host-gateway"
            for n in self.inventory["machines"]
        }
        self.env = {
            **os.environ,
            **peers,  # every other machine through the relay on the gateway
            "AGENT_IMAGE": AGENT_IMAGE,
            "SERVER_IMAGE": SERVER_IMAGE,
            "FILES_PATH": str(self.files),
            # What ./up.sh sets, for the later `docker compose` commands on the verifier.
            "DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        }
        ports = self.inventory["ports"]
        addresses = {n: m["address"] for n, m in self.inventory["machines"].items()}
        metrics_host = {"mysql": "mh-db", "grafana": "mh-web", "files": "mh-web"}
        metrics_host |= {"maintenance": "mh-backup", "verifier": "mh-verify"}
        routes = {
            ports["rest"]: addresses["mh-backup"],
            ports["rest_verifier"]: addresses["mh-backup"],
            ports["prometheus"]: addresses["mh-monitor"],  # backup-agent status
        }
        routes |= {port: addresses[metrics_host[agent]] for agent, port in ports["metrics"].items()}
        self.relay = Relay(self.gateway, routes)

    def cli(self, *args: str) -> str:
        """`backup-agent ARGS` on the administrator's machine; its stdout."""
        result = subprocess.run(
            [sys.executable, "-m", "backup_agent", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, (
            f"backup-agent {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout

    def bundle(self, name: str, inventory: Path, secrets: Path) -> Machine:
        """`backup-agent bundle NAME`, "copied" to the machine (a directory of its own)."""
        output = self.base / "machines" / name
        self.cli(
            "bundle", name, "--inventory", str(inventory), "--secrets", str(secrets),
            "--output", str(output), "--compose-dir", str(ROOT / "compose"), "--airgap",
        )  # fmt: skip
        self.machines[name] = Machine(name, output, self)
        return self.machines[name]

    def lose(self, machine: Machine) -> None:
        """The machine is gone: containers, volumes, its bundle and its secrets."""
        machine.down()
        shutil.rmtree(machine.bundle)

    def teardown(self) -> None:
        """Every machine down, drill servers a failed drill left first (they hold the
        verifier's drill network)."""
        verify = self.machines.get("mh-verify")
        if verify is not None:
            network = f"{verify.project}_drill-net"
            drills = docker_ids("container", "label=backup-agent.drill", f"network={network}")
            if drills:
                subprocess.run(["docker", "rm", "-f", "-v", *drills], capture_output=True)
        for machine in self.machines.values():
            machine.down()
        self.relay.stop()


def free_ports(
    ports: dict[str, Any], addresses: list[str], taken: set[int] | None = None
) -> dict[str, Any]:
    """``ports`` (names to ports, nested) with each port replaced by a different one
    that nothing listens on at any of ``addresses``."""
    taken = set() if taken is None else taken
    moved: dict[str, Any] = {}
    for name, value in ports.items():
        if isinstance(value, dict):
            moved[name] = free_ports(value, addresses, taken)
        else:
            moved[name] = free_port_on(addresses, taken)
            taken.add(moved[name])
    return moved


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    require_docker()
    ensure_images()
    found = Deployment(tmp_path)
    found.files.mkdir()
    found.safe.mkdir()
    try:
        yield found
    finally:
        found.teardown()
        # No secret stays behind in pytest's kept temporary directories.
        for place in (found.admin, found.safe, found.base / "machines", found.base / "recovered"):
            shutil.rmtree(place, ignore_errors=True)


def sql(machine: Machine, text: str) -> str:
    """SQL as MySQL's root on the MySQL machine (the password read there)."""
    script = (
        'MYSQL_PWD="$(cat /run/secrets/mysql_root_password)" '
        "exec mysql -uroot --batch --skip-column-names --default-character-set=utf8mb4"
    )
    return machine.exec("mysql", "sh", "-c", script, stdin=text).stdout


def fingerprint(machine: Machine) -> tuple[str, str]:
    out = sql(machine, FINGERPRINT_SQL)
    return "\n".join(out.splitlines()[:2]), hashlib.sha256(out.encode()).hexdigest()


def on_server(backup: Machine) -> dict[str, list[dict[str, Any]]]:
    """Each service's snapshots, read on the backup server's disk (maintenance role)."""
    out = backup.exec(
        "maintenance", "sh", "-c",
        'for s in "$@"; do RESTIC_REPOSITORY=/srv/restic/$s'
        " RESTIC_PASSWORD_FILE=/run/secrets/restic_password_$s"
        " restic snapshots --json --no-lock || exit 1; done",
        "sh", *SERVICES,
    ).stdout  # fmt: skip
    return dict(zip(SERVICES, (json.loads(line) for line in out.splitlines()), strict=True))


def fresh_backups(backup: Machine, since: float) -> dict[str, dict[str, Any]] | None:
    """The newest dump of each service made after ``since`` (``newest_dumps``)."""
    return newest_dumps(itertools.chain.from_iterable(on_server(backup).values()), since)


def short_ids(snapshots: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{service} {snap['short_id']}" for service, snap in snapshots.items())


# As an attacker with a sidecar's (or the verifier's) credentials would: plain restic.
ATTEMPT = (
    "IFS=: read -r user password </run/secrets/rest_credentials;"
    ' export RESTIC_REST_USERNAME="$user" RESTIC_REST_PASSWORD="$password";'
    ' export RESTIC_REPOSITORY="$1" RESTIC_PASSWORD_FILE="$2" RESTIC_CACERT=/run/secrets/ca.pem;'
    ' shift 2; echo forged | timeout 120 restic "$@" 2>&1'
)


def attempt(machine: Machine, service: str, url: str, password: str, *argv: str) -> tuple[int, str]:
    result = machine.exec(service, "sh", "-c", ATTEMPT, "sh", url, password, *argv, check=False)
    return result.returncode, result.stdout + result.stderr


def grafana(machine: Machine, path: str, password: str, body: object = None) -> Any:
    token = base64.b64encode(f"admin:{password}".encode()).decode()
    port = machine.deployment.inventory["ports"]["grafana"]
    request = urllib.request.Request(
        f"http://{machine.address}:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http:// above
        return json.load(response)


def test_machines_back_up_isolated_over_tls_and_recover_from_the_kit(
    deployment: Deployment,
) -> None:
    try:
        scenario(deployment)
    except BaseException:
        for machine in deployment.machines.values():
            print(f"--- {machine.name} ({machine.project}) ---\n{machine.logs()}")
        raise
    # 7. Nothing of the test is left: no container, network (the verifier's drill network
    # included) or volume of any machine.
    deployment.teardown()
    for machine in deployment.machines.values():
        label = f"label=com.docker.compose.project={machine.project}"
        for kind in ("container", "network", "volume"):
            assert docker_ids(kind, label) == set(), f"{kind}s of {machine.project} left behind"
    say("down: no container, network or volume of the machines left")


def scenario(d: Deployment) -> None:
    # 0. The administrator: the inventory beside the manifest, the secrets and the CA,
    # the recovery kit (kept off every machine), one bundle per machine.
    inventory = d.admin / "inventory.yaml"
    d.admin.mkdir()
    inventory.write_text(yaml.safe_dump(d.inventory, sort_keys=False))
    shutil.copy2(INVENTORY.parent.parent / "manifest.yaml", d.base / "manifest.yaml")
    secrets = d.admin / "secrets"
    d.cli("validate", str(inventory))
    d.cli("secrets", "--inventory", str(inventory), "--dir", str(secrets))
    kit = d.safe / "recovery-kit.yaml"
    d.cli(
        "recovery-kit",
        "export",
        "--inventory",
        str(inventory),
        "--secrets",
        str(secrets),
        "--output",
        str(kit),
    )
    machines = {name: d.bundle(name, inventory, secrets) for name in d.inventory["machines"]}
    backup, db, web = machines["mh-backup"], machines["mh-db"], machines["mh-web"]
    verify, monitor = machines["mh-verify"], machines["mh-monitor"]
    assert not (db.bundle / "compose" / "secrets" / "restic_password_grafana").exists()
    d.relay.start()

    # 1. Every machine at once: a sidecar that finds no repository yet waits for it; one
    # that cannot reach the backup server yet fails and backs up at its next minute.
    expected_files = write_files(d.files)
    say(f"starting {', '.join(m.project for m in machines.values())}")
    starting = [
        (m, subprocess.Popen(["./up.sh"], cwd=m.bundle, env=m.env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        for m in machines.values()
    ]  # fmt: skip
    for machine, process in starting:
        out, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{machine.name}: ./up.sh\n{out[-3000:]}"
    say("every machine up and healthy")

    sql(db, orders_sql())
    grafana_password = (secrets / "grafana_admin_password").read_text().strip()
    titles = [f"Hosts dashboard {n} ✓" for n in range(3)]
    for title in titles:
        saved = grafana(
            web, "/api/dashboards/db", grafana_password, {"dashboard": {"title": title}}
        )
        assert saved["status"] == "success"
    written = time.time()
    fresh = wait_for(
        "backups of every service", lambda: fresh_backups(backup, written), 300, every=5
    )
    say(f"scheduled backups on the backup server: {short_ids(fresh)}")
    handshakes = d.relay.first_bytes[d.inventory["ports"]["rest"]]
    assert handshakes and set(handshakes) == {TLS_HANDSHAKE}, handshakes
    say(f"{sum(handshakes.values())} connections to rest-server, every one a TLS handshake")

    drill = verify.exec("verifier", "backup-agent", "drill", check=False, timeout=900)
    say(f"restore drills on the verification machine:\n{drill.stdout}")
    assert drill.returncode == 0, drill.stdout + drill.stderr[-3000:]
    for name in (*SERVICES, "repository check"):
        assert f"PASS {name}" in drill.stdout

    prometheus = Prometheus(f"{monitor.address}:{d.inventory['ports']['prometheus']}")
    ports = d.inventory["ports"]
    metrics = ports["metrics"]
    targets = {
        ("backup-agent", f"mh-db:{metrics['mysql']}"),
        ("backup-agent", f"mh-web:{metrics['grafana']}"),
        ("backup-agent", f"mh-web:{metrics['files']}"),
        ("backup-maintenance", f"mh-backup:{metrics['maintenance']}"),
        ("backup-verifier", f"mh-verify:{metrics['verifier']}"),
        ("backup-server", f"mh-backup:{ports['rest']}"),
    }

    def all_up() -> bool:
        up = {(dict(k)["job"], dict(k)["instance"]): v for k, v in prometheus.query("up").items()}
        return set(up) >= targets and all(up[t] == 1 for t in targets)

    wait_for("every machine's target up in Prometheus", all_up, 120, every=5)
    assert prometheus.by("backup_recovery_kit_current", "job") == {"backup-maintenance": 1.0}
    say(
        "prometheus (monitoring machine): agents, backup server, maintenance, verifier up;"
        " kit current"
    )
    wait_for(
        "drill results in Prometheus",
        lambda: (
            prometheus.by("backup_drill_last_success", "service") == dict.fromkeys(SERVICES, 1.0)
        ),
        60,
        every=5,
    )
    shown = verify.exec("verifier", "backup-agent", "status").stdout
    kit_line = next(line for line in shown.splitlines() if line.startswith("Recovery kit:"))
    assert kit_line.endswith(", current"), kit_line
    status = status_table(shown)
    for service in SERVICES:
        assert " ok" in status[service] and "PASS" in status[service], status[service]
    assert all(status[instance].split()[2] == "up" for _, instance in targets), status
    say("status on the verification machine, from the monitoring machine's Prometheus:")
    say("every service within its RPO with a passing drill, every machine's component up")

    # 2. Isolation, tried with plain restic from the MySQL sidecar.
    server = f"rest:https://backup-server:{ports['rest']}"
    code, out = attempt(
        db, "mysql-agent", f"{server}/grafana", "/run/secrets/restic_password_mysql", "snapshots"
    )
    assert code != 0 and ("401" in out or "403" in out), out
    code, out = attempt(
        db, "mysql-agent", f"{server}/grafana", "/run/secrets/restic_password_mysql",
        "backup", "--stdin", "--host", "agama", "--tag", "service=grafana", "--tag", "kind=full",
    )  # fmt: skip
    assert code != 0 and ("401" in out or "403" in out), out
    code, out = attempt(
        db, "mysql-agent", f"{server}/mysql", "/run/secrets/restic_password_mysql",
        "backup", "--stdin", "--host", "agama", "--tag", "service=grafana", "--tag", "kind=full",
    )  # fmt: skip
    saved = re.search(r"snapshot ([0-9a-f]{8}) saved", out)
    assert code == 0 and saved, out  # into its own repository, which grafana never reads
    mysql_dump = fresh["mysql"]["id"]
    code, out = attempt(
        db,
        "mysql-agent",
        f"{server}/mysql",
        "/run/secrets/restic_password_mysql",
        "forget",
        "--retry-lock=1m",  # a live backup's or drill's lock is not what is tried here
        mysql_dump,
    )
    assert "403" in out and "unable to remove" in out, out
    verifier_endpoint = f"rest:https://backup-server-verifier:{ports['rest_verifier']}"
    code, out = attempt(
        verify,
        "verifier",
        f"{verifier_endpoint}/mysql",
        "/run/secrets/restic_password_mysql",
        "forget",
        "--retry-lock=1m",  # a live backup's or drill's lock is not what is tried here
        mysql_dump,
    )
    assert "403" in out and "unable to remove" in out, out
    code, out = attempt(
        db,
        "mysql-agent",
        f"{verifier_endpoint}/mysql",
        "/run/secrets/restic_password_mysql",
        "snapshots",
    )
    assert code != 0 and "401" in out, out
    held = {service: {s["short_id"] for s in snaps} for service, snaps in on_server(backup).items()}
    assert mysql_dump[:8] in held["mysql"], "a snapshot was deleted"
    assert saved[1] in held["mysql"] and saved[1] not in held["grafana"]
    say("mysql's credentials: grafana's repository refused (read, write); its 'grafana' snapshot")
    say("stays in /mysql; no deletion with its or the verifier's credentials")

    # 3. The MySQL machine is lost, with the administrator's copy of the secrets.
    original = fingerprint(db)
    lost = time.monotonic()
    d.lose(db)
    shutil.rmtree(d.admin)
    say("MySQL machine lost (containers, volumes, bundle, secrets; the admin's secrets too)")
    recovered = d.base / "recovered"
    d.cli("recovery-kit", "unpack", str(kit), "--to", str(recovered))
    db = d.bundle("mh-db", recovered / "inventory.yaml", recovered / "secrets")
    db.up("mysql")
    restored = db.compose("run", "--rm", "-T", "mysql-restore", "restore", "mysql", timeout=600)
    assert "matches the backup record" in restored.stdout, restored.stdout
    assert fingerprint(db) == original, "the restored database differs from the original"
    took = time.monotonic() - lost
    rto = yaml.safe_load((d.base / "manifest.yaml").read_text())["services"]["mysql"]["rto"]
    say(
        f"MySQL machine lost -> data verified in {took:.0f} s "
        f"(RTO target {rto['target']}, limit {rto['limit']}), from the recovery kit alone"
    )
    db.up()  # the sidecar: its first backup is of the restored data

    # 4. The backup server's rest-server stops: its alert fires.
    backup.compose("stop", "backup-server")
    stopped = time.monotonic()
    wait_for(
        "BackupServerDown",
        lambda: prometheus.firing("BackupServerDown", instance=f"mh-backup:{ports['rest']}"),
        240,
        every=5,
    )
    say(f"BackupServerDown fired {time.monotonic() - stopped:.0f} s after rest-server stopped")
    status = status_table(verify.exec("verifier", "backup-agent", "status").stdout)
    row = status[f"mh-backup:{ports['rest']}"]
    assert "DOWN" in row and "BackupServerDown" in row, row
    backup.compose("start", "backup-server")

    # 5. The Grafana machine is lost: Grafana and the files come back from the kit.
    d.lose(web)
    shutil.rmtree(d.files)
    d.files.mkdir()
    os.chown(d.files, 10001, 10001)
    lost = time.monotonic()
    web = d.bundle("mh-web", recovered / "inventory.yaml", recovered / "secrets")
    web.up("grafana")
    web.compose("stop", "grafana")
    web.compose(
        "run", "--rm", "-T", "grafana-restore", "restore", "grafana", "--force", timeout=600
    )
    web.compose("run", "--rm", "-T", "files-restore", timeout=600)
    web.up()
    found = grafana(web, "/api/search?query=Hosts", grafana_password)
    assert sorted(item["title"] for item in found) == titles
    assert tree_hashes(d.files) == expected_files
    say(f"Grafana machine lost -> dashboards and files back in {time.monotonic() - lost:.0f} s")

    # 6. The backup server is lost with its disk: a new one from the kit, empty
    # repositories; every agent backs up again on schedule and the drills pass. The
    # agents are stopped while the server is replaced, as the runbook says: a backup in
    # flight keeps retrying its uploads and would put them, encrypted with the old
    # repository's key, into the new server's repository at the same address.
    agents = {db: ["mysql-agent"], web: ["grafana-agent", "files-agent"]}
    for machine, services in agents.items():
        machine.compose("stop", *services)
    d.lose(backup)
    backup = d.bundle("mh-backup", recovered / "inventory.yaml", recovered / "secrets")
    rebuilt = time.time()
    backup.up()
    for machine, services in agents.items():
        machine.compose("start", *services)
    fresh = wait_for(
        "backups into the new backup server", lambda: fresh_backups(backup, rebuilt), 300, every=5
    )
    say(f"new backup server: {short_ids(fresh)}")
    drill = verify.exec("verifier", "backup-agent", "drill", check=False, timeout=900)
    assert drill.returncode == 0, drill.stdout + drill.stderr[-3000:]
    wait_for(
        "the new backup server's kit status",
        lambda: prometheus.by("backup_recovery_kit_current", "job") == {"backup-maintenance": 1.0},
        120,
        every=5,
    )
    say("drills pass against the new backup server; the kit's record came with the kit")
