"""The whole compose stack, for real: images, secrets, scheduled backups into the
append-only backup server, restore drills, a restore, Prometheus' alerts, teardown.

One scenario, in order, because each step needs the previous one and real minutes:
1. build the images (or reuse them), then `make up` (scripts/up.sh) creates secrets,
   brings the stack up and prints where to look (its own compose project name, the
   air-gapped stand-ins, tests/e2e/compose.e2e.yml: backups every minute, RPOs of
   minutes);
2. write rows into MySQL (the MariaDB stand-in), dashboards into the Grafana stand-in
   and files into FILES_PATH; wait for the scheduled backups; find the snapshots on
   the backup server's disk;
3. try to delete a snapshot with an agent's credentials: refused, nothing lost;
4. the restore drills pass through the verifier (MySQL's: a point-in-time restore to
   the end of the shipped binlogs, with its heartbeat); drop the database; `backup-agent
   restore mysql` brings the data back exactly (same checksums, rows, view, routine),
   from the dump and again to a point in time (`--to-time`, the binlogs the agent
   shipped); the Grafana and files snapshots hold what was written;
5. the real Prometheus: every target up, freshness and drill metrics present; then
   with the database stopped BackupStale fires for mysql once its 2-minute RPO has
   passed, and with an agent stopped BackupAgentDown fires (a stopped agent exports
   nothing, so no freshness alert can fire for it: the rules say so); the real
   Alertmanager (Debian's) receives the firing alerts; `backup-agent status` shows
   it all (mysql's binlog shipping on a line of its own, STALE too once its 2-minute
   RPO has passed, with BackupStale{kind="binlog"}), and with the backup server
   stopped BackupServerDown fires;
6. (still with the backup server stopped) `make backup-now SERVICE=files` fails in
   under two minutes naming the unreachable server, and BackupLastRunFailed fires;
7. the `make down-volumes` equivalent leaves no container, network or volume behind.

Docker is required: without it the test fails when BACKUP_AGENT_REQUIRE_INTEGRATION=1
(CI, make test), and is skipped otherwise, like the integration tests' tools.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backup_agent.jobs.mysql import scratch
from tests.conftest import REQUIRED, need, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "scripts" / "compose.sh"
OVERRIDE = Path(__file__).with_name("compose.e2e.yml")
# AGENT_IMAGE and SERVER_IMAGE (scripts/build-images.sh, the compose file) name the
# project's images, so that runs of several branches on one engine keep their own.
IMAGES = (
    os.environ.get("AGENT_IMAGE", "local/backup-agent:dev"),
    os.environ.get("SERVER_IMAGE", "local/backup-server:dev"),
    "local/mariadb:11.8",
    "local/prometheus:debian",
    "local/alertmanager:debian",
    "local/grafana-standin:dev",
)
SERVICES = ("mysql", "grafana", "files")
# Every scrape target of compose/prometheus/prometheus.yml, as (job, instance).
TARGETS = {
    ("backup-agent", "mysql-agent:9464"),
    ("backup-agent", "grafana-agent:9464"),
    ("backup-agent", "files-agent:9464"),
    ("backup-maintenance", "maintenance:9464"),
    ("backup-verifier", "verifier:9464"),
    ("backup-server", "backup-server:8000"),
    ("prometheus", "localhost:9090"),
}
ROWS = 3000
STARTED = time.monotonic()


def say(message: str) -> None:
    """Progress with the elapsed time (shown with -s, and on failure)."""
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def docker_ids(kind: str, *filters: str) -> set[str]:
    """Names of docker containers, networks or volumes (optionally filtered)."""
    argv = ["docker", kind, "ls", "--quiet", *(f"--filter={f}" for f in filters)]
    if kind == "container":
        argv.insert(3, "--all")
    if kind != "volume":
        argv += ["--no-trunc"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return set(out.split())


class Stack:
    """The compose stack under its own project name, driven through scripts/compose.sh."""

    def __init__(self, base: Path) -> None:
        prefix = os.environ.get("BACKUP_AGENT_E2E_PROJECT", "agama-e2e")  # several runs at once
        self.project = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self._drill_owner: str | None = None
        self.secrets = base / "secrets"
        self.files = base / "files"
        self.env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": self.project,
            "AIRGAP": "1",  # the stand-ins: the test must run without a registry
            "STACK_FILES": str(OVERRIDE),
            "SECRETS_DIR": str(self.secrets),
            "FILES_PATH": str(self.files),
            # Any free port on BIND_ADDRESS (default 127.0.0.1), unless the caller names them.
            "GRAFANA_PORT": os.environ.get("GRAFANA_PORT", "0"),
            "PROMETHEUS_PORT": os.environ.get("PROMETHEUS_PORT", "0"),
            "ALERTMANAGER_PORT": os.environ.get("ALERTMANAGER_PORT", "0"),
        }

    def compose(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(COMPOSE), *args],
            env=self.env,
            cwd=ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def exec(self, service: str, *argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.compose("exec", "-T", service, *argv, **kwargs)

    def drill_owner(self) -> str:
        """The label value of this stack's verifier's drill containers and volumes."""
        script = (
            "import os\n"
            "from backup_agent import manifest\n"
            "from backup_agent.jobs.mysql import scratch\n"
            "m = manifest.load(os.environ['BACKUP_AGENT_MANIFEST'])\n"
            "assert m.drill is not None\n"
            "print(scratch.owner(m.drill.mysql, m.drill.scratch_dir))\n"
        )
        if self._drill_owner is None:
            self._drill_owner = self.exec("verifier", "python3", "-c", script).stdout.strip()
        return self._drill_owner

    def agent(self, service: str, *argv: str, **kwargs: Any) -> str:
        """``backup-agent ARGV`` in a running agent container; its stdout."""
        return self.exec(service, "backup-agent", *argv, **kwargs).stdout

    def mysql(self, sql: str) -> str:
        """SQL as MySQL's root, inside the mysql container (password read there)."""
        script = (
            'MYSQL_PWD="$(cat /run/secrets/mysql_root_password)" '
            "exec mysql -uroot --batch --skip-column-names --default-character-set=utf8mb4"
        )
        return self.exec("mysql", "sh", "-c", script, stdin=sql).stdout

    def address(self, service: str, port: int) -> str:
        """HOST:PORT where a service's port is published."""
        return self.compose("port", service, str(port)).stdout.strip().splitlines()[0]

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--timestamps", "--tail=150", check=False).stdout

    def down(self, check: bool = True) -> None:
        """`make down-volumes`, plus drill containers a failed drill might have left."""
        network = f"{self.project}_drill-net"
        drills = docker_ids("container", "label=backup-agent.drill", f"network={network}")
        if drills:
            subprocess.run(["docker", "rm", "-f", "-v", *drills], capture_output=True)
        self.compose(
            "--profile",
            "restore",
            "down",
            "--volumes",
            "--remove-orphans",
            "--timeout=20",
            check=check,
        )


class Prometheus:
    def __init__(self, address: str) -> None:
        self.address = address

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"http://{self.address}{path}{query}", timeout=10) as response:
            return json.load(response)["data"]

    def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Instant query: {sorted labels: value}."""
        return {
            tuple(sorted(item["metric"].items())): float(item["value"][1])
            for item in self.get("/api/v1/query", query=expr)["result"]
        }

    def by(self, expr: str, label: str) -> dict[str, float]:
        return {dict(labels).get(label, ""): value for labels, value in self.query(expr).items()}

    def firing(self, alert: str, **labels: str) -> bool:
        return any(
            a["labels"].get("alertname") == alert
            and all(a["labels"].get(k) == v for k, v in labels.items())
            and a["state"] == "firing"
            for a in self.get("/api/v1/alerts")["alerts"]
        )


def require_docker() -> None:
    """need("docker") semantics for the engine and compose too: fail in CI, else skip."""
    need("docker")
    for argv in (["docker", "info"], ["docker", "compose", "version"]):
        if subprocess.run(argv, capture_output=True).returncode != 0:
            message = f"`{' '.join(argv)}` fails: start the engine (scripts/start-dockerd.sh)"
            if REQUIRED:
                pytest.fail(message)
            pytest.skip(message)


def ensure_images() -> None:
    """Reuse the images `make base-images` built; build them when one is missing."""
    missing = [
        image
        for image in IMAGES
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode
    ]
    if missing:
        say(f"building images ({', '.join(missing)} missing): make base-images")
        subprocess.run(["make", "--no-print-directory", "base-images"], cwd=ROOT, check=True)
    else:
        say("reusing images (make base-images rebuilds them)")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    require_docker()
    ensure_images()
    stack = Stack(tmp_path)
    stack.files.mkdir()
    try:
        yield stack
    finally:
        # Safety net after a failure (the test itself tears down and checks); no test
        # secret stays behind in pytest's kept temporary directories either.
        stack.down(check=False)
        shutil.rmtree(stack.secrets, ignore_errors=True)


def write_files(directory: Path) -> dict[str, str]:
    """A small tree readable by the agent (uid 10001); returns {relative path: sha256}."""
    (directory / "reports" / "2026").mkdir(parents=True, exist_ok=True)
    for n in range(20):
        (directory / "reports" / "2026" / f"report-{n:02d}.csv").write_text(
            "".join(f"{n},{i},Übersicht ✓ {i * n}\n" for i in range(200))
        )
    (directory / "photo.bin").write_bytes(os.urandom(256 << 10))
    for path in (directory, *directory.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return tree_hashes(directory)


def tree_hashes(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def orders_sql() -> str:
    """A table with varied types (unicode, binary, decimals), a view and a procedure."""
    rows = [
        f"({i}, 'Kund {i} ✓ Ünïcødé', {i * 7 % 1000}.{i % 100:02d}, REPEAT('x', {i % 300}),"
        f" UNHEX('{hashlib.sha256(str(i).encode()).hexdigest()}'),"
        f" '2026-01-01 00:00:00' + INTERVAL {i} MINUTE)"
        for i in range(1, ROWS + 1)
    ]
    inserts = [
        "INSERT INTO orders (id, customer, amount, note, digest, created) VALUES "
        + ",\n".join(rows[start : start + 500])
        + ";"
        for start in range(0, ROWS, 500)
    ]
    return "\n".join(
        [
            "USE agama;",
            "CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(100) NOT NULL,"
            " amount DECIMAL(10,2) NOT NULL, note TEXT, digest VARBINARY(32),"
            " created DATETIME(6) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;",
            "CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 500;",
            "CREATE PROCEDURE order_count(OUT n INT) SELECT COUNT(*) INTO n FROM orders;",
            *inserts,
        ]
    )


FINGERPRINT_SQL = """
CHECKSUM TABLE agama.orders;
SELECT COUNT(*), SUM(amount) FROM agama.orders;
SELECT id, customer, amount, note, HEX(digest), created FROM agama.orders ORDER BY id;
SELECT COUNT(*) FROM agama.big_orders;
SELECT ROUTINE_NAME, ROUTINE_DEFINITION FROM information_schema.ROUTINES
 WHERE ROUTINE_SCHEMA = 'agama';
SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = 'agama';
"""


def fingerprint(stack: Stack) -> tuple[str, str]:
    """(first lines, SHA-256) of the database's content, view and routine."""
    out = stack.mysql(FINGERPRINT_SQL)
    return "\n".join(out.splitlines()[:2]), hashlib.sha256(out.encode()).hexdigest()


def snapshots(stack: Stack) -> list[dict[str, Any]]:
    """Every snapshot, through rest-server with the verifier's credentials."""
    found: list[dict[str, Any]] = json.loads(stack.agent("verifier", "snapshots", "--json"))
    return found


def status_rows(stack: Stack) -> dict[str, str]:
    """``backup-agent status`` in the verifier (Prometheus from the manifest)."""
    return status_table(stack.agent("verifier", "status"))


def status_table(text: str) -> dict[str, str]:
    """The lines of ``backup-agent status`` by their first word (a service name), or a
    component's by its instance (the second word, after its job); a line of the binlog
    table as "NAME binlogs"."""
    rows: dict[str, str] = {}
    table = ""
    for line in text.splitlines():
        words = line.split()
        if words and words[0].isupper():
            table = words[0]
        if len(words) > 2 and words[0].startswith("backup-"):
            rows[words[1]] = line
        elif words and words[0] in SERVICES:
            rows[f"{words[0]} binlogs" if table == "BINLOGS" else words[0]] = line
    return rows


def tag(snapshot: dict[str, Any], key: str) -> str | None:
    return next((t.split("=", 1)[1] for t in snapshot["tags"] if t.startswith(f"{key}=")), None)


def on_server(stack: Stack) -> set[str]:
    """Snapshot ids read directly from each service's repository directory on the
    backup server (/srv/restic/SERVICE, password restic_password_SERVICE)."""
    out = stack.exec(
        "maintenance",
        "sh",
        "-c",
        'for s in "$@"; do RESTIC_REPOSITORY=/srv/restic/$s'
        " RESTIC_PASSWORD_FILE=/run/secrets/restic_password_$s"
        " restic snapshots --json --no-lock || exit 1; done",
        "sh",
        *SERVICES,
    ).stdout
    return {s["id"] for line in out.splitlines() for s in json.loads(line)}


def fresh_backups(stack: Stack, since: float) -> dict[str, dict[str, Any]] | None:
    """The newest dump of each service made after ``since`` (``newest_dumps``)."""
    return newest_dumps(snapshots(stack), since)


def newest_dumps(snaps: Iterable[dict[str, Any]], since: float) -> dict[str, dict[str, Any]] | None:
    """The newest data snapshot of each service made after ``since``, once every service
    has one and binlogs were shipped after MySQL's: only then does a point-in-time
    window reach past ``since``, for the drill to restore (until then its window ends
    before the data written at ``since``, or there is none)."""
    newest: dict[str, dict[str, Any]] = {}
    shipped: list[float] = []
    for snap in snaps:  # each service's in time order, as restic lists them
        made = datetime.fromisoformat(snap["time"]).timestamp()
        if tag(snap, "kind") == "binlog":
            shipped.append(made)
        elif tag(snap, "kind") not in ("meta", "drill") and made > since:
            newest[str(tag(snap, "service"))] = snap
    if set(newest) != set(SERVICES):
        return None
    dumped = datetime.fromisoformat(newest["mysql"]["time"]).timestamp()
    return newest if any(made > dumped for made in shipped) else None


def grafana_request(stack: Stack, method: str, path: str, body: object = None) -> Any:
    password = (stack.secrets / "grafana_admin_password").read_text().strip()
    token = base64.b64encode(f"admin:{password}".encode()).decode()
    request = urllib.request.Request(
        f"http://{stack.address('grafana', 3000)}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http:// above
        return json.load(response)


RESTORED_TITLES = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print("\\n".join(row[0] for row in db.execute("SELECT title FROM dashboard WHERE is_folder = 0")))
"""

RESTORED_HASHES = """
import hashlib, json, pathlib, sys
root = pathlib.Path(sys.argv[1])
print(json.dumps({str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                  for p in sorted(root.rglob("*")) if p.is_file()}))
"""


def test_stack_backs_up_restores_alerts_and_cleans_up(stack: Stack) -> None:
    try:
        scenario(stack)
    except BaseException:
        print(f"--- docker compose logs ({stack.project}) ---\n{stack.logs()}")
        raise
    drills = f"label={scratch.LABEL}={stack.drill_owner()}"  # asked of the verifier
    # 7. `make down-volumes`: nothing of the test's project is left, nor a drill container
    # or volume of its verifier (made outside compose, labelled by their owner). Objects
    # of other runs on a shared engine are not this run's business.
    stack.down()
    label = f"label=com.docker.compose.project={stack.project}"
    for kind in ("container", "network", "volume"):
        assert docker_ids(kind, label) == set(), f"{kind}s of {stack.project} left behind"
    for kind in ("container", "volume"):
        assert docker_ids(kind, drills) == set(), f"drill {kind}s of {stack.project} left behind"
    say("down: no container, network or volume left")


def scenario(stack: Stack) -> None:
    # 1. `make up` (scripts/up.sh) on the images built above: engine checks, secrets,
    # `up --wait` until every service is healthy, then where to look.
    expected_files = write_files(stack.files)
    say(f"starting project {stack.project}: scripts/up.sh")
    up = subprocess.run(
        ["bash", "scripts/up.sh"],
        cwd=ROOT,
        env={**stack.env, "SKIP_BUILD": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert up.returncode == 0, f"{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
    assert "using the stand-ins" in up.stdout
    assert f"Prometheus: http://{stack.address('prometheus', 9090)}" in up.stdout
    assert f"Grafana TEST STAND-IN: http://{stack.address('grafana', 3000)}" in up.stdout
    assert f"Alertmanager: http://{stack.address('alertmanager', 9093)}" in up.stdout
    say("stack up and healthy")

    # 2. Data in every source, then the next scheduled backups.
    stack.mysql(orders_sql())
    titles = [f"E2E dashboard {n} ✓" for n in range(3)]
    for title in titles:
        saved = grafana_request(
            stack, "POST", "/api/dashboards/db", {"dashboard": {"title": title, "panels": []}}
        )
        assert saved["status"] == "success"
    found = grafana_request(stack, "GET", "/api/search?query=E2E")
    assert sorted(d["title"] for d in found) == titles
    (stack.files / "added-later.txt").write_text("written after the first backup\n")
    (stack.files / "added-later.txt").chmod(0o644)
    expected_files = tree_hashes(stack.files)
    written = time.time()
    say("wrote 3000 rows, 3 dashboards, files; waiting for the scheduled backups")
    fresh: dict[str, dict[str, Any]] = wait_for(
        "scheduled backups of every service", lambda: fresh_backups(stack, written), 240, every=5
    )
    ids = ", ".join(f"{name} {snap['short_id']}" for name, snap in fresh.items())
    say(f"scheduled backups: {ids}")
    dump = fresh["mysql"]
    metas = [s for s in snapshots(stack) if tag(s, "of") in {dump["id"], tag(dump, "link")}]
    assert len(metas) == 1, "the dump's metadata snapshot is missing"
    server_side = on_server(stack)
    assert {s["id"] for s in fresh.values()} | {metas[0]["id"]} <= server_side

    # 3. An agent cannot delete: rest-server is append-only.
    attempt = stack.compose(
        "exec",
        "-T",
        "-e",
        "RESTIC_REPOSITORY=rest:https://backup-server:8000/mysql",
        "-e",
        "RESTIC_PASSWORD_FILE=/run/secrets/restic_password_mysql",
        "-e",
        "RESTIC_CACERT=/run/secrets/ca.pem",
        "mysql-agent",
        "sh",
        "-c",
        # The agent's own credentials, read inside its container (never in argv).
        "IFS=: read -r user password </run/secrets/rest_credentials; RESTIC_REST_USERNAME=$user"
        ' RESTIC_REST_PASSWORD=$password exec restic forget --prune "$1" "$2"',
        "sh",
        dump["id"],
        metas[0]["id"],
        check=False,
    )
    output = attempt.stdout + attempt.stderr
    assert "403" in output and "unable to remove" in output, output
    assert on_server(stack) >= server_side, "a snapshot was deleted with an agent's credentials"
    say("forget with the mysql agent's credentials: refused (403), nothing lost")

    # 4. Drills pass; lose the database; restores bring it back exactly.
    drill = stack.exec("verifier", "backup-agent", "drill", check=False, timeout=600)
    say(f"restore drills:\n{drill.stdout}")
    assert drill.returncode == 0, drill.stdout + drill.stderr[-3000:]
    for name in (*SERVICES, "repository check"):
        assert f"PASS {name}" in drill.stdout
    assert "sanity query 'orders restored' holds" in drill.stdout
    # MySQL's drill restores to the window's end: through the newest dump's binlogs, or
    # the dump alone when it is newer than every shipment (dumps run every minute here;
    # the --to-time restore below always replays).
    replayed = "as planned" in drill.stdout or "nothing to replay" in drill.stdout
    assert "point in time " in drill.stdout and replayed, "no point-in-time proof"
    assert "heartbeat " in drill.stdout, "the recovered heartbeat was not checked"
    original = fingerprint(stack)
    assert original[0].split("\t")[-1] != "NULL", original

    # An order before a point in time and one after it, shipped at once: a restore to
    # the point holds the first and not the second.
    def order(n: int, note: str) -> None:
        stack.mysql(
            "INSERT INTO agama.orders (id, customer, amount, created) VALUES"
            f" ({ROWS + n}, '{note}', 1.00, NOW(6));"
        )

    order(1, "before the point")
    at_point = fingerprint(stack)
    time.sleep(1.1)  # a point a second after it (the point's own second is excluded)
    point = datetime.now(UTC)
    time.sleep(1.1)
    order(2, "after the point")
    shipped = json.loads(stack.agent("mysql-agent", "backup", "mysql", "--kind", "binlog"))
    assert shipped["shipments"] >= 1 and shipped["gap"] is None, shipped
    assert shipped["status"]["broken"] is None, shipped
    stack.mysql("DROP DATABASE agama;")
    assert "agama" not in stack.mysql("SHOW DATABASES;").split()
    drills = docker_ids(
        "container", "label=backup-agent.drill", f"network={stack.project}_drill-net"
    )
    assert not drills, "drill container left"
    records = [s for s in snapshots(stack) if tag(s, "kind") == "drill"]
    assert {tag(s, "service") for s in records} == set(SERVICES), records
    assert all(len(tag(s, "mac") or "") == 64 for s in records), "drill records are signed"
    say("each passing drill left its signed record in the repository")
    restored = stack.compose(
        "run", "--rm", "-T", "mysql-restore", "restore", "mysql", "--snapshot", dump["id"]
    )
    assert "matches the backup record" in restored.stdout, restored.stdout
    assert fingerprint(stack) == original, "restored database differs from the original"
    say(f"mysql restored exactly: {original[0]!r}")
    stack.mysql("DROP DATABASE agama;")
    at = point.strftime("%Y-%m-%d %H:%M:%S")
    to_point = stack.compose(
        "run", "--rm", "-T", "mysql-restore", "restore", "mysql", "--to-time", at
    )
    # Replayed from the newest dump before the point; replay ends "as planned", or
    # there was nothing to replay when a scheduled dump (every minute here) fell in the
    # two seconds between the first order and the point.
    out = to_point.stdout
    assert "as planned" in out or "nothing to replay" in out, out
    assert fingerprint(stack) == at_point, "the point-in-time restore differs from the point"
    say(
        f"mysql restored to {at} UTC from the dump and the shipped binlogs: the order before"
        " it, not the one after"
    )

    # 5a. Prometheus sees every target and the freshness and drill metrics.
    prometheus = Prometheus(stack.address("prometheus", 9090))

    def all_up() -> bool:
        up = {(dict(k)["job"], dict(k)["instance"]): v for k, v in prometheus.query("up").items()}
        return set(up) >= TARGETS and all(up[t] == 1 for t in TARGETS)

    wait_for("every target up", all_up, 60, every=5)
    success = prometheus.by("backup_last_success_timestamp_seconds", "service")
    assert set(success) == set(SERVICES) and all(v > written for v in success.values()), success
    assert prometheus.by("backup_rpo_seconds{job='backup-agent'}", "service")["mysql"] == 120
    wait_for(
        "drill metrics",
        lambda: (
            prometheus.by("backup_drill_last_success", "service") == dict.fromkeys(SERVICES, 1.0)
        ),
        60,
        every=5,
    )
    assert prometheus.by("backup_maintenance_last_success", "task") == {"retention": 1, "check": 1}
    assert not prometheus.firing("BackupStale")
    say("prometheus: all targets up, freshness, drill and maintenance metrics present")
    status = status_rows(stack)
    for name in SERVICES:
        assert " ok" in status[name] and "PASS" in status[name], status[name]
    shipping = status["mysql binlogs"].split()
    assert shipping[-1] == "ok" and " / 2m  ok" in status["mysql binlogs"], shipping
    components = [instance for job, instance in TARGETS if job != "prometheus"]
    assert all(status[instance].split()[2] == "up" for instance in components), status
    say(
        "status: every service within its RPO with a passing drill, binlogs shipped within"
        " theirs and the chain whole, every component up"
    )

    # 5b. Backups stop (database down) and an agent stops; alerts follow.
    stack.compose("stop", "mysql", "files-agent")
    stopped = time.monotonic()
    say("stopped the database and files-agent; checking restores while the RPO passes")

    # 4b. Meanwhile: the Grafana and files snapshots hold what was written.
    stack.agent("verifier", "restore", "grafana", "--to", "/var/tmp/backup-agent/e2e-grafana")
    titles_found = stack.exec(
        "verifier", "python3", "-c", RESTORED_TITLES, "/var/tmp/backup-agent/e2e-grafana/grafana.db"
    ).stdout.splitlines()
    assert set(titles) <= set(titles_found), titles_found
    stack.agent("verifier", "restore", "files", "--to", "/var/tmp/backup-agent/e2e-files")
    hashes = json.loads(
        stack.exec(
            "verifier",
            "python3",
            "-c",
            RESTORED_HASHES,
            "/var/tmp/backup-agent/e2e-files/home/backup/backup",
        ).stdout
    )
    assert hashes == expected_files
    say("grafana and files restores hold the dashboards and files written")

    wait_for(
        "BackupStale for mysql",
        lambda: prometheus.firing("BackupStale", service="mysql"),
        360,
        every=5,
    )
    say(f"BackupStale fired for mysql {time.monotonic() - stopped:.0f} s after the stop")
    wait_for(
        "BackupStale for mysql's binlogs",
        lambda: prometheus.firing("BackupStale", service="mysql", kind="binlog"),
        120,
        every=5,
    )
    say(f"... and for its binlogs {time.monotonic() - stopped:.0f} s after the stop")
    assert prometheus.firing("BackupLastRunFailed", service="mysql")
    wait_for(
        "BackupAgentDown for files-agent",
        lambda: prometheus.firing("BackupAgentDown", instance="files-agent:9464"),
        120,
        every=5,
    )
    say(f"BackupAgentDown fired for files-agent {time.monotonic() - stopped:.0f} s after the stop")
    alertmanager = f"http://{stack.address('alertmanager', 9093)}/api/v2/alerts"

    def delivered() -> set[tuple[str, str]]:
        with urllib.request.urlopen(alertmanager, timeout=10) as response:
            alerts = json.load(response)
        return {(a["labels"]["alertname"], a["labels"].get("service", "")) for a in alerts}

    wait_for("BackupStale in Alertmanager", lambda: ("BackupStale", "mysql") in delivered(), 60)
    say("Alertmanager holds the firing alerts")
    assert not prometheus.firing("BackupStale", service="grafana")
    status = status_rows(stack)
    assert "STALE" in status["mysql"] and "BackupStale" in status["mysql"], status["mysql"]
    assert "STALE" in status["mysql binlogs"], status["mysql binlogs"]
    assert "DOWN" in status["files-agent:9464"], status["files-agent:9464"]
    assert "BackupAgentDown" in status["files-agent:9464"], status["files-agent:9464"]
    say("status: mysql STALE with BackupStale, files-agent DOWN with BackupAgentDown")

    # 5c. The backup server stops: its own alert, and status says so.
    stack.compose("stop", "backup-server")
    server_stopped = time.monotonic()
    wait_for(
        "BackupServerDown",
        lambda: prometheus.firing("BackupServerDown", instance="backup-server:8000"),
        180,
        every=5,
    )
    took = time.monotonic() - server_stopped
    say(f"BackupServerDown fired {took:.0f} s after the backup server stopped")
    row = status_rows(stack)["backup-server:8000"]
    assert "DOWN" in row and "BackupServerDown" in row, row

    # 6. A newcomer's worst day: the backup server is down and `make backup-now` fails fast.
    newcomer_with_the_backup_server_down(stack, prometheus)


def newcomer_with_the_backup_server_down(stack: Stack, prometheus: Prometheus) -> None:
    """`make backup-now SERVICE=files` with the backup server stopped fails in under two
    minutes with one line naming the unreachable server (not restic's "Is there a
    repository" hint after 15 minutes), counted by reason, and BackupLastRunFailed fires."""
    stack.compose("start", "files-agent")
    stack.compose("stop", "backup-server")
    started = time.monotonic()
    make = subprocess.run(
        ["make", "--no-print-directory", "backup-now", "SERVICE=files"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    took = time.monotonic() - started
    output = make.stdout + make.stderr
    errors = [json.loads(line)["msg"] for line in output.splitlines() if '"level": "error"' in line]
    assert make.returncode != 0 and len(errors) == 1, output[-3000:]
    assert errors[0].startswith("backup server backup-server:8000 unreachable: "), errors
    assert "Is there a repository" not in output and "\\n" not in errors[0]
    assert took < 120, f"make backup-now took {took:.0f} s"
    say(f"make backup-now with the backup server down: {took:.0f} s, {errors[0]!r}")
    wait_for(
        "BackupLastRunFailed for files",
        lambda: prometheus.firing("BackupLastRunFailed", service="files"),
        120,
        every=5,
    )
    # The restarted agent's own catch-up runs fail the same way and count too.
    reasons = prometheus.by("backup_failures_total{service='files'}", "reason")
    counted = {reason for reason, count in reasons.items() if count > 0}  # all start at 0
    assert counted == {"server_unreachable"}, reasons
    say("BackupLastRunFailed fired; backup_failures_total counts it as server_unreachable")
    stack.compose("start", "backup-server")
