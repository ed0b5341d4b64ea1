"""The manifest as frozen dataclasses: what the rest of the agent reads.

Defaults live here and only here; the JSON Schema repeats them as documentation
(``default``), and ``tests/unit/test_schema.py`` fails when the two disagree.
Defaults that depend on another value (``grafana.database`` below ``data_dir``) are
filled in by the loader and documented in the schema's descriptions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import islice, takewhile
from zoneinfo import ZoneInfo

from cronsim import CronSim

from backup_agent.errors import ManifestError
from backup_agent.restic import Repository

DEFAULT_PATH = "/etc/backup-agent/manifest.yaml"
SERVICE_FIELD = "{service}"  # in repository URLs and secret file names: one repository per service
TYPES = ("mysql", "grafana", "files")
MYSQL_METHODS = ("logical", "physical", "both")
# Snapshot kinds a schedule can make, most thorough first (the scheduler prefers it
# when several kinds of one service are due together).
BACKUP_KINDS = ("full", "incremental")
SYSTEM_DATABASES = frozenset({"mysql", "sys", "information_schema", "performance_schema"})
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Longer than any RPO, RTO or retention, and short enough that date arithmetic with it
# (now - max_age, a year of simulated runs) stays far inside datetime's range.
MAX_DURATION = timedelta(days=36525)
_SIZE_UNITS: dict[str, int] = {
    "B": 1,
    **{f"{p}B": 1000 ** (n + 1) for n, p in enumerate("KMGT")},
    **{f"{p}iB": 1024 ** (n + 1) for n, p in enumerate("KMGT")},
}


def parse_duration(text: str) -> timedelta:
    """``30m``, ``2h``, ``1d``, ``3w`` -> timedelta (the schema guarantees the shape);
    ValueError for anything else, or longer than ``MAX_DURATION``."""
    match = re.fullmatch(r"([1-9][0-9]*)([smhdw])", text)
    if not match:
        raise ValueError(f"not a duration: {text[:40]!r}")
    number, unit = match.groups()
    if len(number) > 12 or int(number) * _UNITS[unit] > MAX_DURATION.total_seconds():
        shown = text if len(text) <= 20 else f"{text[:17]}..."
        raise ValueError(f"{shown!r} is longer than 100 years")
    return timedelta(seconds=int(number) * _UNITS[unit])


def parse_size(value: int | str) -> int:
    """``536870912000``, ``500GiB``, ``1TB`` -> bytes (the schema guarantees the shape)."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"([1-9][0-9]*)([KMGT]i?B|B)", value)
    if not match:
        raise ValueError(f"not a size: {value!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def format_duration(value: timedelta) -> str:
    """Shortest exact form, for messages: 86400 s -> ``1d``."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Schedule:
    """A cron expression in a time zone."""

    cron: str
    timezone: ZoneInfo

    def fires(self, start: datetime) -> Iterator[datetime]:
        """Run times after ``start``, in the schedule's time zone."""
        return iter(CronSim(self.cron, start.astimezone(self.timezone)))

    def fires_until(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Run times in (start, end], at most ``limit`` of them (a frequent schedule)."""
        return list(takewhile(lambda when: when <= end, islice(self.fires(start), limit)))

    def last_before(self, moment: datetime) -> datetime:
        """The latest run time at or before ``moment``."""
        local = moment.astimezone(self.timezone)
        return next(iter(CronSim(self.cron, local, reverse=True)))

    def fires_on_day_of(self, moment: datetime) -> bool:
        """Whether the schedule has a run on ``moment``'s calendar day (its time zone)."""
        local = moment.astimezone(self.timezone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        first = next(self.fires(midnight - timedelta(microseconds=1)), None)
        return first is not None and first.date() == local.date()


@dataclass(frozen=True)
class MysqlOptions:
    defaults_file: str
    host: str = "localhost"
    port: int = 3306
    socket: str | None = None
    databases: tuple[str, ...] = ()
    client: str = "auto"
    dump_program: str | None = None
    restore_defaults_file: str | None = None
    sanity_queries: tuple[tuple[str, str], ...] = ()  # (name, sql)
    allow_empty: bool = False  # a dump of databases without tables is a success
    method: str = "logical"  # logical (a dump), physical (mariadb-backup/xtrabackup) or both


@dataclass(frozen=True)
class GrafanaOptions:
    data_dir: str = "/var/lib/grafana"
    database: str = ""  # the loader fills in DATA_DIR/grafana.db
    config_file: str = "/etc/grafana/grafana.ini"
    provisioning_dir: str = "/etc/grafana/provisioning"
    plugins_dir: str = ""  # the loader fills in DATA_DIR/plugins


@dataclass(frozen=True)
class FilesOptions:
    paths: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    allow_empty: bool = False  # an empty directory is a success


Options = MysqlOptions | GrafanaOptions | FilesOptions
DRILL_TARGETS = ("end", "random")


@dataclass(frozen=True)
class Heartbeat:
    """A one-row table the MySQL agent updates every ``every`` with its own user, so
    that a point-in-time drill can check the recovered time (like pt-heartbeat)."""

    table: str  # database.table, in a dumped database
    every: timedelta = timedelta(minutes=1)


@dataclass(frozen=True)
class Binlog:
    """Point-in-time recovery of a MySQL service: its binary logs are shipped on
    ``schedule`` (every ``every``, built by the loader) and the freshness of the
    newest shipment is held against ``rpo`` (the loader's default: ``every``)."""

    schedule: Schedule
    rpo: timedelta
    every: timedelta = timedelta(minutes=5)
    program: str | None = None  # mariadb-binlog or mysqlbinlog, when not the family's default
    drill_target: str = "end"  # where drills restore to: the window's end, or a random point
    heartbeat: Heartbeat | None = None


@dataclass(frozen=True)
class Service:
    """One thing to back up. ``type`` selects the job; ``schedules`` maps each snapshot
    kind the service makes (``full``, ``incremental``) to its schedule."""

    name: str
    type: str
    schedules: Mapping[str, Schedule]
    rpo: timedelta
    rto_target: timedelta
    rto_limit: timedelta
    options: Options
    expected_duration: timedelta = timedelta(minutes=10)
    # No backup runs longer: by default the shortest time between two of its runs,
    # within DEADLINE_BOUNDS (the loader fills it in from the schedules).
    deadline: timedelta = timedelta(hours=12)
    binlog: Binlog | None = None  # MySQL only: binary logs shipped for point-in-time recovery

    def kind_for(self, moment: datetime) -> str:
        """The snapshot kind an unscheduled backup at ``moment`` should make: the kind
        scheduled on that day (the most thorough if several), else the kind of the
        latest past run (a monthly job's kind on the days between)."""
        today = [kind for kind in BACKUP_KINDS if self._fires_on_day(kind, moment)]
        if today:
            return today[0]
        return max(self.schedules, key=lambda kind: self.schedules[kind].last_before(moment))

    def _fires_on_day(self, kind: str, moment: datetime) -> bool:
        return kind in self.schedules and self.schedules[kind].fires_on_day_of(moment)


@dataclass(frozen=True)
class Retention:
    keep_within: timedelta
    max_age: timedelta


@dataclass(frozen=True)
class DrillServer:
    """Where MySQL drills restore: a throwaway container (image) or a scratch server.
    ``memory``, ``cpus`` and ``pids_limit`` bound the container (it runs SQL from a
    backup, so it is treated as running attacker code)."""

    image: str | None = None
    network: str | None = None
    memory: str = "2g"
    cpus: float = 2.0
    pids_limit: int = 512
    server_args: tuple[str, ...] = (
        "--innodb-buffer-pool-size=1G",
        "--innodb-flush-log-at-trx-commit=0",
        "--innodb-doublewrite=0",
        "--skip-log-bin",
    )
    host: str = "127.0.0.1"
    port: int = 3306
    socket: str | None = None
    defaults_file: str | None = None


@dataclass(frozen=True)
class Drill:
    """Restore drills: when they run, where they restore and where results go.
    ``report_file`` and ``scratch_dir`` default below the state and work directories."""

    schedule: Schedule
    report_file: str
    scratch_dir: str
    file_sample: int = 20
    mysql: DrillServer = DrillServer()
    key_file: str | None = None  # signs drill records; the verifier and maintenance hold it
    repository_url: str | None = None  # the repositories as the verifier reaches them
    credentials_file: str | None = None  # the verifier's own (default: the agents')
    max_age: timedelta = timedelta(days=8)  # alert when no snapshot this recent passed a drill


@dataclass(frozen=True)
class Agent:
    state_dir: str = "/var/lib/backup-agent"
    metrics_port: int = 9464
    metrics_address: str = "0.0.0.0"  # noqa: S104 - a sidecar's metrics are scraped from outside


@dataclass(frozen=True)
class Copy:
    """A second copy of every repository, made by the maintenance role (restic copy).
    ``repository`` may name ``{service}`` like the manifest's repository."""

    repository: Repository
    schedule: Schedule
    max_age: timedelta = timedelta(days=2)  # alert when the copy's newest snapshot is older


@dataclass(frozen=True)
class Maintenance:
    """The maintenance role's tasks: retention (forget, then prune), the check and the copy."""

    retention: Schedule
    check: Schedule
    read_data_subsets: int = 4
    repository_url: str | None = None
    credentials_file: str | None = None  # its own (default: none with repository_url)
    deadline: timedelta = timedelta(hours=6)  # for each retention, check or copy run
    recovery_kit_file: str | None = None  # the record of the last recovery-kit export
    copy: Copy | None = None


def for_service(repo: Repository, service: str) -> Repository:
    """``repo`` with ``{service}`` in its URL, password and credentials files replaced."""
    credentials = repo.credentials_file
    return replace(
        repo,
        url=repo.url.replace(SERVICE_FIELD, service),
        password_file=repo.password_file.replace(SERVICE_FIELD, service),
        credentials_file=credentials.replace(SERVICE_FIELD, service) if credentials else None,
    )


@dataclass(frozen=True)
class Monitoring:
    """Where ``backup-agent status`` reads metrics and firing alerts."""

    prometheus_url: str | None = None


# The default deadline of a service: its shortest gap between runs, kept within these.
DEADLINE_BOUNDS = (timedelta(minutes=10), timedelta(hours=12))
# Defaults of values the dataclasses cannot hold (schedules, directories).
DEFAULT_WORK_DIR = "/var/tmp/backup-agent"  # noqa: S108 - a private subdirectory, mode 0700
DEFAULT_RETENTION_SCHEDULE = "0 4 * * *"
DEFAULT_CHECK_SCHEDULE = "0 5 * * 0"
DEFAULT_TIMEZONE = "UTC"


@dataclass(frozen=True)
class Manifest:
    source: str
    repository: Repository
    services: Mapping[str, Service]
    retention: Retention
    drill: Drill | None
    work_dir: str
    agent: Agent
    maintenance: Maintenance
    former_hosts: tuple[str, ...] = ()  # host names older snapshots were written under
    clock_skew: timedelta = timedelta(minutes=5)  # allowed for snapshots dated in the future
    size_limit: int | None = None  # bytes the backup server stores at most (rest-server --max-size)
    monitoring: Monitoring = Monitoring()
    warnings: tuple[str, ...] = field(default=())
    role: str = "backup"  # whose view of the repositories: backup, verifier or maintenance

    def for_role(self, role: str) -> Manifest:
        """The same manifest, seen by ``role`` (which URL reaches the repositories)."""
        return replace(self, role=role)

    def repository_for(self, service: str) -> Repository:
        """The repository of ``service`` as this manifest's role reaches it.

        ``{service}`` in the URL (and in the password and credentials files) gives every
        service a repository of its own; without it all services share one. The
        verifier may reach them through ``drill.repository_url`` (another rest-server
        endpoint) with ``drill.credentials_file``, the maintenance role through
        ``maintenance.repository_url`` (the directory on the backup server, without
        rest-server credentials) or with ``maintenance.credentials_file`` (its own S3
        key pair, which may delete).
        """
        repo = self.repository
        url, credentials = repo.url, repo.credentials_file
        if self.role == "verifier" and self.drill:
            url = self.drill.repository_url or url
            credentials = self.drill.credentials_file or credentials
        elif self.role == "maintenance":
            if self.maintenance.repository_url:
                url, credentials = self.maintenance.repository_url, None
            credentials = self.maintenance.credentials_file or credentials
        return for_service(replace(repo, url=url, credentials_file=credentials), service)

    def copies(self) -> list[tuple[Repository, Repository, tuple[str, ...]]]:
        """Each repository as the maintenance role reaches it, the repository its copy
        goes to, and the services they hold (none without ``maintenance.copy``)."""
        copy = self.maintenance.copy
        if copy is None:
            return []
        return [
            (source, for_service(copy.repository, names[0]), names)
            for source, names in self.for_role("maintenance").repositories().values()
        ]

    def repositories(self) -> dict[str, tuple[Repository, tuple[str, ...]]]:
        """Each distinct repository (by URL) and the services that keep their snapshots in it."""
        found: dict[str, tuple[Repository, tuple[str, ...]]] = {}
        for name in self.services:
            repo = self.repository_for(name)
            known = found.get(repo.url)
            found[repo.url] = (known[0] if known else repo, (*(known[1] if known else ()), name))
        return found

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(sorted(self.services))
            problem = (f"services.{name}", f"not defined (have: {known})")
            raise ManifestError(self.source, [problem]) from None
