"""Point-in-time recovery against a real MariaDB with binary logs and a real restic
repository.

A writer commits rows continuously (each row carries the server's NOW(6), the instant
its binlog events carry); binlogs are shipped several times around a dump; the
database is destroyed and restored to chosen seconds, and each restore must hold
exactly what was committed before that second. Then: a purged binlog breaks the chain
until the next dump, the drill proves a point in time (and fails when it should), and
forged binlogs cannot make the replay touch the restoring host or other databases.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from backup_agent import restic, runs
from backup_agent.drill import drill
from backup_agent.errors import BackupError, CommandError
from backup_agent.jobs import mysql
from backup_agent.jobs.base import RestoreRequest
from backup_agent.jobs.mysql.binlog import events, pitr
from backup_agent.jobs.mysql.binlog.chain import Coordinates, Shipment, Target, dump_tags
from backup_agent.jobs.mysql.binlog.events import BinlogError
from backup_agent.jobs.mysql.binlog.heartbeat import Beating
from backup_agent.jobs.mysql.binlog.ship import RECORD_FILE
from backup_agent.manifest import Manifest, MysqlOptions, Service
from backup_agent.metrics import Metrics
from backup_agent.state import State
from tests.binlog_files import BinlogWriter
from tests.conftest import ManifestFactory, need
from tests.mariadb_server import MariaDB

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

OFFSET = timedelta(hours=5)  # the source server's time zone: NOW() is UTC+5
SOURCE_ARGS = (
    "--innodb-buffer-pool-size=64M",
    "--log-bin=mysql-bin",
    "--binlog-format=ROW",
    "--server-id=14",
    "--max-binlog-size=4096",  # the smallest allowed: rotates every few seconds here
    "--default-time-zone=+05:00",
)
DB = "shop"
SCHEMA = (
    "CREATE TABLE ticks (id INT PRIMARY KEY AUTO_INCREMENT, ts DATETIME(6) NOT NULL,"
    " note VARCHAR(100) NOT NULL) ENGINE=InnoDB",
    "CREATE TABLE counter (id INT PRIMARY KEY, n INT NOT NULL, at DATETIME(6)) ENGINE=InnoDB",
    "INSERT INTO counter VALUES (1, 0, NULL)",
    "CREATE TABLE heartbeat (id INT PRIMARY KEY, ts DATETIME(6) NOT NULL) ENGINE=InnoDB",
)
# The compose stack's backup user: the dump's grants, shipping's, and the heartbeat.
AGENT_GRANTS = (
    "SELECT, SHOW VIEW, TRIGGER, EVENT ON {db}.*",
    "SELECT ON mysql.proc",
    "BINLOG MONITOR, REPLICATION SLAVE ON *.*",
    "INSERT, UPDATE ON {db}.heartbeat",
)
RESTORE_GRANTS = ("ALL ON {db}.*", "BINLOG REPLAY ON *.*")


@pytest.fixture
def source() -> Iterator[MariaDB]:
    """A server with binary logging, a UTC+5 clock, frequent rotation and the schema."""
    for tool in ("mariadbd", "mariadb-install-db", "mariadb-binlog", "mariadb-dump"):
        need(tool)
    server = MariaDB(SOURCE_ARGS)
    server.start()
    try:
        server.execute(f"CREATE DATABASE {DB}")
        server.execute(*SCHEMA, database=DB)
        yield server
    finally:
        server.stop()


def user(servers: list[MariaDB], tmp_path: Path, name: str, grants: tuple[str, ...]) -> str:
    """Create ``name`` with ``grants`` on every server (one password); its option file."""
    password = uuid.uuid4().hex
    for server in servers:
        server.execute(f"CREATE OR REPLACE USER '{name}'@'localhost' IDENTIFIED BY '{password}'")
        for grant in grants:
            server.execute(f"GRANT {grant.format(db=DB)} TO '{name}'@'localhost'")
    return servers[0].defaults_file(tmp_path / f"{name}.cnf", name, password)


def manifest_for(
    make_manifest: ManifestFactory,
    server: MariaDB,
    agent_cnf: str,
    restore_cnf: str,
    binlog: dict[str, Any] | None = None,
    **top: Any,
) -> tuple[Manifest, Service]:
    loaded = make_manifest(
        {
            "db": {
                "type": "mysql",
                "schedule": "0 22 * * *",
                "rpo": "1d",
                "rto": {"target": "30m", "limit": "2h"},
                "binlog": binlog or {},
                "mysql": {
                    "socket": server.socket,
                    "defaults_file": agent_cnf,
                    "restore_defaults_file": restore_cnf,
                    "databases": [DB],
                    "client": "mariadb",
                },
            }
        },
        **top,
    )
    return loaded, loaded.service("db")


class Writer(threading.Thread):
    """Commits a row every few milliseconds and bumps a counter now and then.

    Each commit is autocommit, so the row's NOW(6) is the statement's start, which is
    also its binlog events' time: a restore to second S must hold exactly the rows
    with NOW(6) before S. The counter's history is read back after each update.
    """

    def __init__(self, server: MariaDB) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stop = threading.Event()
        self.counter: list[tuple[int, datetime]] = []  # (n, server time of the update)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = self.server.connect(DB)
            with conn.cursor() as cur:
                count = 0
                while not self.stop.is_set():
                    count += 1
                    cur.execute(
                        "INSERT INTO ticks (ts, note) VALUES (NOW(6), %s)", (f"row {count}",)
                    )
                    if count % 7 == 0:
                        cur.execute("UPDATE counter SET n = n + 1, at = NOW(6) WHERE id = 1")
                        cur.execute("SELECT n, at FROM counter WHERE id = 1")
                        n, at = cur.fetchone()  # type: ignore[misc]
                        self.counter.append((int(n), at))
                    time.sleep(0.02)
            conn.close()
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.join(30)
        if self.error:
            raise self.error


def options_of(service: Service) -> MysqlOptions:
    assert isinstance(service.options, MysqlOptions)
    return service.options


def utc(local: Any) -> datetime:
    """A DATETIME the UTC+5 server wrote, as an aware UTC time."""
    assert isinstance(local, datetime)
    return (local - OFFSET).replace(tzinfo=UTC)


def rows(server: MariaDB) -> list[tuple[object, ...]]:
    return server.execute("SELECT id, ts, note FROM ticks ORDER BY id", database=DB)


def test_restores_to_chosen_seconds_hold_exactly_what_was_committed_before(
    source: MariaDB, scratch_mariadb: MariaDB, make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    agent_cnf = user([source], tmp_path, "agent", AGENT_GRANTS)
    restore_cnf = user([source, scratch_mariadb], tmp_path, "restorer", RESTORE_GRANTS)
    manifest, service = manifest_for(make_manifest, source, agent_cnf, restore_cnf)
    writer = Writer(source)
    writer.start()
    try:
        time.sleep(1.5)
        first_shipment = pitr.ship_service(manifest, service)
        assert first_shipment.shipments == 1 and first_shipment.gap is None
        time.sleep(1.0)
        dump = mysql.backup(manifest, service, "full")  # as the agent: no RELOAD, no SUPER
        position = dump.details["binlog"]
        assert isinstance(position, dict) and position["file"].startswith("mysql-bin.")
        consistent = datetime.fromisoformat(position["consistent_by"])
        for _ in range(4):
            time.sleep(1.2)
            assert pitr.ship_service(manifest, service).gap is None
    finally:
        writer.finish()
    time.sleep(1.1)  # the last shipment's clock is past the last commit's second
    last = pitr.ship_service(manifest, service)
    assert last.shipments == 1 and last.status.broken is None
    assert pitr.ship_service(manifest, service).shipments == 0  # nothing new: no snapshot
    assert last.status.dump_id == dump.snapshot_id and last.status.covered_until is not None
    shipped = restic.snapshots(manifest.repository_for("db"), {"kind": "binlog"})
    files = {s.tag("binlog") for s in shipped}
    assert (
        len(shipped) == 6 and len({f.split("@")[0] for t in files if t for f in t.split(";")}) > 2
    )

    history = rows(source)
    counter = list(writer.counter)
    source.execute(f"DROP DATABASE {DB}")  # the disaster

    first = (consistent + timedelta(seconds=2)).replace(microsecond=0)
    last_row = utc(history[-1][1]).replace(microsecond=0)
    targets = [first, first + timedelta(seconds=2), last_row]
    assert len(set(targets)) == 3 and targets == sorted(targets)
    for target in targets:
        scratch_mariadb.execute(f"DROP DATABASE IF EXISTS {DB}")
        request = RestoreRequest(target=scratch_mariadb.socket, to_time=target)
        restored = mysql.restore(manifest, service, request)
        assert restored.snapshot_id == dump.snapshot_id
        expected = [r for r in history if utc(r[1]) < target]
        got = rows(scratch_mariadb)
        assert got == expected, f"restore to {target}: {len(got)} rows, expected {len(expected)}"
        # Rows were committed in the second before the target and in the target's own
        # second: an off-by-one-second cut would show.
        assert any(utc(r[1]) >= target for r in history)
        assert any(utc(r[1]) >= target - timedelta(seconds=1) for r in expected)
        n = max((n for n, at in counter if utc(at) < target), default=0)
        assert scratch_mariadb.execute("SELECT n FROM counter", database=DB) == [(n,)]
        assert any("as planned" in line for line in restored.verified)
    scratch_mariadb.execute(f"DROP DATABASE IF EXISTS {DB}")

    # The dry run names the chain and the window, and restores nothing.
    dry = RestoreRequest(target=scratch_mariadb.socket, to_time=targets[1], dry_run=True)
    lines = mysql.restore(manifest, service, dry).verified
    assert lines[1].startswith(f"dump {dump.snapshot_id[:8]}")
    assert any(line.startswith("binlog mysql-bin.") for line in lines)
    assert lines[-1].startswith("the point-in-time window is ")
    assert scratch_mariadb.execute(f"SHOW DATABASES LIKE '{DB}'") == []
    # A plain restore of "latest" still means the newest dump, not a newer shipment.
    plain = RestoreRequest(target=scratch_mariadb.socket, dry_run=True)
    assert mysql.restore(manifest, service, plain).snapshot_id == dump.snapshot_id

    # In place, into the server that lost the database, to the end of the window:
    # everything is back (the server logs the replay itself).
    end = RestoreRequest(to_time=last.status.covered_until)
    mysql.restore(manifest, service, end)
    assert rows(source) == history
    assert source.execute("SELECT n FROM counter", database=DB) == [(counter[-1][0],)]

    # Outside the window: the error says what the window is.
    after = RestoreRequest(to_time=last.status.covered_until + timedelta(minutes=5), dry_run=True)
    with pytest.raises(BinlogError, match=r"point-in-time window is \d{4}-.* \.\. "):
        mysql.restore(manifest, service, after)
    before = RestoreRequest(to_time=consistent - timedelta(minutes=5), dry_run=True)
    with pytest.raises(BinlogError, match="point-in-time window is"):
        mysql.restore(manifest, service, before)


def test_a_restore_to_a_gtid_or_a_position_stops_there(
    source: MariaDB, scratch_mariadb: MariaDB, make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    agent_cnf = user([source], tmp_path, "agent", AGENT_GRANTS)
    restore_cnf = user([source, scratch_mariadb], tmp_path, "restorer", RESTORE_GRANTS)
    manifest, service = manifest_for(make_manifest, source, agent_cnf, restore_cnf)
    mysql.backup(manifest, service, "full")
    marks = []
    for number in range(1, 6):
        source.execute(f"INSERT INTO ticks (ts, note) VALUES (NOW(6), 'n{number}')", database=DB)
        ((gtid,),) = source.execute("SELECT @@gtid_binlog_pos")
        file, end = source.execute("SHOW MASTER STATUS")[0][:2]
        marks.append((str(gtid), f"{file}:{end}"))  # its GTID, and where the next one starts
    source.execute(f"DROP TABLE {DB}.counter")  # the mistake to undo
    assert pitr.ship_service(manifest, service).gap is None
    for request, notes in (
        (RestoreRequest(to_gtid=marks[2][0]), ["n1", "n2", "n3"]),
        (RestoreRequest(to_position=marks[3][1]), ["n1", "n2", "n3", "n4"]),
    ):
        scratch_mariadb.execute(f"DROP DATABASE IF EXISTS {DB}")
        mysql.restore(manifest, service, replace(request, target=scratch_mariadb.socket))
        found = scratch_mariadb.execute("SELECT note FROM ticks ORDER BY id", database=DB)
        assert [row[0] for row in found] == notes
        assert scratch_mariadb.execute(f"SHOW TABLES FROM {DB} LIKE 'counter'") == [("counter",)]
    scratch_mariadb.execute(f"DROP DATABASE IF EXISTS {DB}")


def test_a_binlog_purged_before_shipping_breaks_the_chain_until_the_next_dump(
    source: MariaDB, make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    agent_cnf = user([source], tmp_path, "agent", AGENT_GRANTS)
    root_cnf = source.defaults_file(tmp_path / "root.cnf", "root", "")
    manifest, service = manifest_for(make_manifest, source, agent_cnf, root_cnf)
    registry = CollectorRegistry()
    metrics, state = Metrics(registry), State(manifest.agent.state_dir)
    metrics.declare(manifest, ["db"])

    def value(name: str) -> float | None:
        return registry.get_sample_value(name, {"service": "db"})

    # Reading binlogs needs REPLICATION SLAVE: without it, a clear failure and no snapshot.
    lister = user([source], tmp_path, "lister", ("BINLOG MONITOR ON *.*",))
    no_slave = replace(service, options=replace(options_of(service), defaults_file=lister))
    with pytest.raises(CommandError, match="REPLICATION SLAVE"):
        runs.run_binlog(manifest, no_slave, state, metrics)
    assert restic.snapshots(manifest.repository_for("db"), {"kind": "binlog"}) == []
    assert value("backup_binlog_last_success_timestamp_seconds") == 0

    insert = "INSERT INTO ticks (ts, note) VALUES (NOW(6), 'x')"
    source.execute(insert, database=DB)
    old_dump = mysql.backup(manifest, service, "full")
    runs.run_binlog(manifest, service, state, metrics)
    assert value("backup_binlog_chain_broken") == 0 and value("backup_pitr_window_seconds")
    assert value("backup_binlog_last_success_timestamp_seconds") == pytest.approx(
        time.time(), abs=30
    )
    # While the shipper is away, the server rotates and purges files never shipped.
    for _ in range(3):
        source.execute(insert, "FLUSH BINARY LOGS", database=DB)
    active = source.execute("SHOW BINARY LOGS")[-1][0]
    source.execute(f"PURGE BINARY LOGS TO '{active}'")

    with pytest.raises(BinlogError, match="was purged on the server before it was shipped") as gap:
        runs.run_binlog(manifest, service, state, metrics)
    assert gap.value.reason == "binlog_gap"
    assert value("backup_binlog_chain_broken") == 1
    assert value("backup_binlog_chain_breaks_total") == 1
    assert (
        registry.get_sample_value(
            "backup_failures_total", {"service": "db", "reason": "binlog_gap"}
        )
        == 1
    )
    time.sleep(1.1)
    source.execute(insert, database=DB)
    runs.run_binlog(manifest, service, state, metrics)  # ships on, the chain stays broken
    assert value("backup_binlog_chain_broken") == 1
    broken = pitr.listing(manifest, service)
    with pytest.raises(BinlogError, match="stops at"):
        pitr.plan(manifest, service, Target(time=broken.shipments[-1].until))

    # The next dump starts a new chain: restores after it work again.
    new_dump = mysql.backup(manifest, service, "full")
    time.sleep(1.1)
    source.execute(insert, database=DB)
    time.sleep(1.1)  # restoring to the shipment's second includes that commit
    shipped = runs.run_binlog(manifest, service, state, metrics)
    assert value("backup_binlog_chain_broken") == 0
    assert shipped.status.dump_id == new_dump.snapshot_id != old_dump.snapshot_id
    assert shipped.status.covered_until is not None
    expected = len(rows(source))
    source.execute(f"DROP DATABASE {DB}")
    mysql.restore(manifest, service, RestoreRequest(to_time=shipped.status.covered_until))
    assert len(rows(source)) == expected


def drill_section(scratch: MariaDB, tmp_path: Path) -> dict[str, Any]:
    root_cnf = scratch.defaults_file(tmp_path / "scratch-root.cnf", "root", "")
    return {
        "schedule": "0 6 * * 1",
        "scratch_dir": str(tmp_path / "drills"),
        "mysql": {"socket": scratch.socket, "defaults_file": root_cnf},
    }


def test_the_drill_proves_a_point_in_time_and_fails_when_it_should(
    source: MariaDB, scratch_mariadb: MariaDB, make_manifest: ManifestFactory, tmp_path: Path
) -> None:
    agent_cnf = user([source], tmp_path, "agent", AGENT_GRANTS)
    sanity = [{"name": "rows", "sql": "SELECT COUNT(*) > 0 FROM shop.ticks"}]
    heartbeat = {"table": f"{DB}.heartbeat", "every": "1s"}
    manifest, service = manifest_for(
        make_manifest,
        source,
        agent_cnf,
        agent_cnf,
        {"heartbeat": heartbeat},
        drill=drill_section(scratch_mariadb, tmp_path),
    )
    binlog = service.binlog
    assert binlog is not None and binlog.heartbeat is not None
    options = replace(options_of(service), sanity_queries=(("rows", sanity[0]["sql"]),))
    service = replace(service, options=options)
    beating = Beating("db", options, binlog.heartbeat)  # as the agent's own user
    beating.start()
    writer = Writer(source)
    writer.start()
    try:
        time.sleep(1.5)
        mysql.backup(manifest, service, "full")
        for _ in range(3):
            time.sleep(1.5)
            pitr.ship_service(manifest, service)
    finally:
        writer.finish()
    time.sleep(1.1)
    pitr.ship_service(manifest, service)

    passed = drill(manifest, service)
    assert passed.passed, passed.error
    checks = "\n".join(passed.checks)
    assert "as planned" in checks and "tables hold the dump's rows plus" in checks
    assert "heartbeat " in checks and "sanity query 'rows' holds" in checks
    at_random = replace(service, binlog=replace(binlog, drill_target="random"))
    for _ in range(2):
        assert drill(manifest, at_random).passed

    # The heartbeat stops; writes go on and are shipped: the end of the window is
    # now long after the last heartbeat, and the drill says so.
    beating.stop.set()
    beating.join(5)
    time.sleep(3.5)
    source.execute("INSERT INTO ticks (ts, note) VALUES (NOW(6), 'late')", database=DB)
    time.sleep(1.1)
    pitr.ship_service(manifest, service)
    stale = drill(manifest, service)
    assert not stale.passed and "recovered heartbeat" in (stale.error or "")

    # A sanity query that does not hold fails the drill too.
    failing = replace(
        service,
        options=replace(options, sanity_queries=(("none", "SELECT COUNT(*) = 0 FROM shop.ticks"),)),
    )
    failed = drill(manifest, replace(failing, binlog=replace(binlog, heartbeat=None)))
    assert not failed.passed and "sanity query 'none'" in (failed.error or "")
    assert scratch_mariadb.execute(f"SHOW DATABASES LIKE '{DB}'") == []


def forge(
    manifest: Manifest, dump_id: str, record: dict[str, Any], writer: BinlogWriter, at: int
) -> datetime:
    """What a compromised sidecar can do: a new record of a real dump naming a position
    in a binlog it forged, and a shipment of that binlog, all trusted by their tags."""
    repo = manifest.repository_for("db")
    now = datetime.now(UTC).replace(microsecond=0)
    name = "mysql-bin.000001"
    tags = dump_tags(Coordinates(name, at), now - timedelta(seconds=20))
    restic.backup_bytes(
        repo,
        "db.meta.json",
        json.dumps(record).encode(),
        {"service": "db", "kind": "meta", "of": dump_id, **tags},
    )
    data = writer.bytes()
    upload = Path(manifest.work_dir) / "forged" / uuid.uuid4().hex
    upload.mkdir(parents=True)
    (upload / name).write_bytes(data)
    fmt = events.read_format(data)
    segment = events.describe(name, fmt.created, data, 0, fmt.checksum)
    (upload / RECORD_FILE).write_text(json.dumps({"segments": [asdict(segment)]}))
    draft = Shipment("", str(upload), now, now, (segment,))
    restic.backup(repo, [str(upload)], draft.tags("db"))
    return now - timedelta(seconds=1)


Forgery = Callable[[BinlogWriter, int, Path], object]
SHELL = b"DO 1\n\\! touch %s\nDO 2"  # the client's \! would run the shell command
LOCAL = b"LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE ticks (note)"
FORGED: list[tuple[str, Forgery, str]] = [
    # A statement the client would run as its shell command without binary mode.
    (
        "client command",
        lambda w, t, m: w.query(t, SHELL % str(m).encode(), b"shop"),
        "Unknown command",
    ),
    # LOAD DATA LOCAL would read a file of the restoring host into the database.
    ("load data local", lambda w, t, m: w.query(t, LOCAL, b"shop"), "local infile"),
    # A row event for a table outside the dump: BINLOG REPLAY would write it anyway.
    ("other database", lambda w, t, m: w.table_map(t, b"mysql", b"global_priv"), "outside the"),
    # A LOAD DATA event of statement-based logging.
    ("load data event", lambda w, t, m: w.event(t, 18, bytes(30)), "LOAD DATA event"),
]


@pytest.mark.parametrize(("what", "add", "refusal"), FORGED, ids=[f[0] for f in FORGED])
def test_forged_binlogs_cannot_make_the_replay_touch_the_host_or_other_databases(
    what: str,
    add: Forgery,
    refusal: str,
    source: MariaDB,
    scratch_mariadb: MariaDB,
    make_manifest: ManifestFactory,
    tmp_path: Path,
) -> None:
    agent_cnf = user([source], tmp_path, "agent", AGENT_GRANTS)
    restore_cnf = user([source, scratch_mariadb], tmp_path, "restorer", RESTORE_GRANTS)
    manifest, service = manifest_for(make_manifest, source, agent_cnf, restore_cnf)
    dump = mysql.backup(manifest, service, "full")
    scratch_mariadb.execute("SET GLOBAL local_infile = 1")  # the server would accept it
    accounts = scratch_mariadb.execute("SELECT COUNT(*) FROM mysql.global_priv")
    marker = tmp_path / "PWNED"
    when = int(time.time()) - 10
    writer = BinlogWriter(created=when - 5)
    start = writer.gtid(when, 1)
    add(writer, when, marker)
    writer.xid(when)
    record = {k: v for k, v in dump.details.items() if k != "binlog"}
    target = forge(manifest, dump.snapshot_id, record, writer, start)
    scratch_mariadb.execute(f"DROP DATABASE IF EXISTS {DB}")
    request = RestoreRequest(target=scratch_mariadb.socket, to_time=target)
    with pytest.raises(BackupError, match=refusal):
        mysql.restore(manifest, service, request)
    assert not marker.exists()
    assert scratch_mariadb.execute("SELECT COUNT(*) FROM shop.ticks") == [(0,)]
    assert scratch_mariadb.execute("SELECT COUNT(*) FROM mysql.global_priv") == accounts
    scratch_mariadb.execute(f"DROP DATABASE IF EXISTS {DB}")
