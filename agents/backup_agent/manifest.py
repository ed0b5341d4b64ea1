"""Load a manifest: YAML -> JSON Schema -> cross-field checks -> frozen dataclasses.

Every problem is collected, with its path (``services.mysql.schedule``), and raised
at once as one ``ManifestError``. Checks the schema cannot express (cron expressions
that never fire, time zones, retention that contradicts itself, RTO target above its
limit) are done here; risky but legal choices become warnings.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from itertools import islice, pairwise, takewhile
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
import yaml
from cronsim import CronSim, CronSimError

from backup_agent.errors import ManifestError
from backup_agent.restic import Repository

DEFAULT_PATH = "/etc/backup-agent/manifest.yaml"
DEFAULT_WORK_DIR = "/var/tmp/backup-agent"  # noqa: S108 - a private subdirectory, mode 0700
KINDS = ("mysql", "grafana", "files")
SYSTEM_DATABASES = frozenset({"mysql", "sys", "information_schema", "performance_schema"})
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# How far ahead schedules are simulated for the gap warnings (a year covers every month).
_HORIZON = timedelta(days=366)
_MAX_FIRES = 3000


def parse_duration(text: str) -> timedelta:
    """``30m``, ``2h``, ``1d``, ``3w`` -> timedelta (the schema guarantees the shape)."""
    match = re.fullmatch(r"([1-9][0-9]*)([smhdw])", text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def format_duration(value: timedelta) -> str:
    """Shortest exact form, for messages: 86400 s -> ``1d``."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Schedule:
    """One cron schedule of a service; ``kind`` is the snapshot kind it produces."""

    kind: str
    cron: str
    timezone: ZoneInfo

    def fires(self, start: datetime) -> Iterator[datetime]:
        """Run times after ``start``, in the schedule's time zone."""
        return iter(CronSim(self.cron, start.astimezone(self.timezone)))

    def fires_until(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Run times in (start, end], at most ``limit`` of them (a frequent schedule)."""
        return list(takewhile(lambda when: when <= end, islice(self.fires(start), limit)))


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


@dataclass(frozen=True)
class GrafanaOptions:
    data_dir: str = "/var/lib/grafana"
    database: str = ""
    config_file: str = "/etc/grafana/grafana.ini"
    provisioning_dir: str = "/etc/grafana/provisioning"
    plugins_dir: str = ""


@dataclass(frozen=True)
class FilesOptions:
    paths: tuple[str, ...]
    exclude: tuple[str, ...] = ()


Options = MysqlOptions | GrafanaOptions | FilesOptions


@dataclass(frozen=True)
class Service:
    name: str
    kind: str
    schedules: tuple[Schedule, ...]
    rpo: timedelta
    rto_target: timedelta
    rto_limit: timedelta
    options: Options
    expected_duration: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class Retention:
    keep_within: timedelta
    max_age: timedelta


@dataclass(frozen=True)
class ScratchMysql:
    """Where MySQL drills restore: a throwaway container (image) or a scratch server."""

    image: str | None = None
    network: str | None = None
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
class Verification:
    schedule: Schedule
    report_file: str
    scratch_dir: str
    file_sample: int = 20
    mysql: ScratchMysql = ScratchMysql()


@dataclass(frozen=True)
class Agent:
    state_dir: str = "/var/lib/backup-agent"
    metrics_port: int = 9464
    metrics_address: str = "0.0.0.0"  # noqa: S104 - a sidecar's metrics are scraped from outside


@dataclass(frozen=True)
class Maintenance:
    forget: Schedule
    check: Schedule
    read_data_subsets: int = 4
    repository_url: str | None = None


@dataclass(frozen=True)
class Manifest:
    source: str
    repository: Repository
    services: Mapping[str, Service]
    retention: Retention
    verification: Verification | None
    work_dir: str
    agent: Agent
    maintenance: Maintenance
    warnings: tuple[str, ...] = field(default=())

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(sorted(self.services))
            problem = (f"services.{name}", f"not defined (have: {known})")
            raise ManifestError(self.source, [problem]) from None


@cache
def schema() -> dict[str, Any]:
    """The published JSON Schema (agents/backup_agent/schema/manifest.schema.json)."""
    text = resources.files("backup_agent").joinpath("schema/manifest.schema.json").read_text()
    result: dict[str, Any] = json.loads(text)
    return result


def load(path: str | Path) -> Manifest:
    """Read and validate a manifest file; raises ``ManifestError`` listing every problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(source, [("(file)", exc.strerror or str(exc))]) from exc
    try:
        data = yaml.safe_load(expand_env(text))
    except yaml.YAMLError as exc:
        raise ManifestError(source, [("(yaml)", str(exc).replace("\n", " "))]) from exc
    return parse(data, source)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}`` (as in compose files) before parsing,
    so one manifest serves several deployments; an unset name without default is empty."""
    values = os.environ if environ is None else environ
    return _ENV.sub(lambda m: values.get(m.group(1)) or (m.group(2) or ""), text)


def parse(data: Any, source: str = "<manifest>") -> Manifest:
    """Validate already-loaded YAML data and build the ``Manifest``.

    Schema problems and cross-field problems are reported together; a section with
    a schema problem is not checked further, so each mistake is reported once.
    """
    problems = schema_problems(data)
    checker = _Checker(skip={path for path, _ in problems})
    manifest = checker.build(data, source) if isinstance(data, dict) else None
    problems += checker.problems
    if problems or manifest is None:
        raise ManifestError(source, problems or [("(top)", "the manifest is empty")])
    return manifest


def schema_problems(data: Any) -> list[tuple[str, str]]:
    """Every JSON Schema violation as (dotted path, message), in document order."""
    validator = jsonschema.Draft202012Validator(schema())
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.path]):
        problems.extend(_describe(error))
    return problems


_TYPE_NAMES = {
    "object": "a mapping",
    "string": "a string",
    "array": "a list",
    "integer": "a whole number",
}


def _describe(error: jsonschema.ValidationError) -> list[tuple[str, str]]:
    """Turn one schema error into messages a person can act on, each at its own path."""
    path = ".".join(str(part) for part in error.absolute_path) or "(top)"
    if error.validator == "oneOf" and error.context:
        # Report the alternative whose type matched, or a summary of the choices.
        specific = [e for e in error.context if e.validator != "type"]
        if specific:
            return [p for e in specific for p in _describe(e)]
        return [(path, "must be a cron expression or a mapping with 'incremental' and 'full'")]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [
            key for key in cast(list[str], error.validator_value) if key not in error.instance
        ]
        prefix = "" if path == "(top)" else f"{path}."
        return [(f"{prefix}{key}", "is required") for key in missing]
    if error.validator == "type":
        expected = _TYPE_NAMES.get(str(error.validator_value), str(error.validator_value))
        return [(path, f"must be {expected}, not {error.instance!r}")]
    if error.validator == "pattern" and "[smhdw]" in str(error.validator_value):
        return [(path, f"{error.instance!r} is not a duration like 30m, 2h, 1d or 3w")]
    message = error.message
    if error.validator == "additionalProperties":
        message = message.replace("Additional properties are not allowed", "unknown key(s)")
    return [(path, message)]


class _Checker:
    """Cross-field checks, collecting problems and warnings instead of stopping early."""

    def __init__(self, skip: set[str]) -> None:
        self.skip = skip  # paths with schema problems
        self.problems: list[tuple[str, str]] = []
        self.warnings: list[str] = []

    def valid(self, data: Mapping[str, Any], key: str, path: str) -> bool:
        """True when ``key`` is present and nothing at or below ``path`` broke the schema."""
        return key in data and not any(p == path or p.startswith(f"{path}.") for p in self.skip)

    def build(self, data: Mapping[str, Any], source: str) -> Manifest | None:
        """Check everything that passed the schema; the Manifest when all is well."""
        default_tz = (
            self.zone(data.get("timezone"), "timezone")
            if self.valid(data, "timezone", "timezone")
            else ZoneInfo("UTC")
        )
        retention = (
            self.retention(data["retention"])
            if self.valid(data, "retention", "retention")
            else None
        )
        services = data.get("services")
        checked = {
            name: self.service(name, spec, default_tz, retention)
            for name, spec in (services.items() if isinstance(services, dict) else ())
            if isinstance(spec, dict)
        }
        verification = None
        work_dir = data.get("work_dir", DEFAULT_WORK_DIR)
        agent_spec = data["agent"] if isinstance(data.get("agent"), dict) else {}
        state_dir = agent_spec.get("state_dir", Agent.state_dir)
        if self.valid(data, "verification", "verification"):
            spec = data["verification"]
            tz = self.zone(spec.get("timezone"), "verification.timezone", default_tz)
            scratch = dict(spec.get("mysql", {}))
            if "server_args" in scratch:
                scratch["server_args"] = tuple(scratch["server_args"])
            verification = Verification(
                schedule=self.schedule("drill", spec["schedule"], tz, "verification.schedule"),
                report_file=spec.get("report_file", f"{state_dir}/restore-report.json"),
                scratch_dir=spec.get("scratch_dir", f"{work_dir}/drill"),
                file_sample=spec.get("file_sample", 20),
                mysql=ScratchMysql(**scratch),
            )
        maintenance_spec = (
            data.get("maintenance", {}) if self.valid(data, "maintenance", "maintenance") else {}
        )
        maintenance = Maintenance(
            forget=self.schedule(
                "forget",
                maintenance_spec.get("forget_schedule", "0 4 * * *"),
                default_tz,
                "maintenance.forget_schedule",
            ),
            check=self.schedule(
                "check",
                maintenance_spec.get("check_schedule", "0 5 * * 0"),
                default_tz,
                "maintenance.check_schedule",
            ),
            read_data_subsets=maintenance_spec.get("read_data_subsets", 4),
            repository_url=maintenance_spec.get("repository_url"),
        )
        if self.skip or self.problems or retention is None:
            return None
        valid_services = {name: service for name, service in checked.items() if service}
        repo = data["repository"]
        return Manifest(
            source=source,
            repository=Repository(
                url=repo["url"],
                password_file=repo["password_file"],
                host=repo["host"],
                credentials_file=repo.get("credentials_file"),
                cache_dir=repo.get("cache_dir"),
            ),
            services=valid_services,
            retention=retention,
            verification=verification,
            work_dir=work_dir,
            agent=Agent(**data.get("agent", {})),
            maintenance=maintenance,
            warnings=tuple(self.warnings),
        )

    def retention(self, spec: Mapping[str, Any]) -> Retention:
        retention = Retention(
            keep_within=parse_duration(spec["keep_within"]),
            max_age=parse_duration(spec["max_age"]),
        )
        if retention.max_age < retention.keep_within:
            self.problems.append(
                (
                    "retention.max_age",
                    f"{format_duration(retention.max_age)} is shorter than keep_within "
                    f"{format_duration(retention.keep_within)}: the policy contradicts itself",
                )
            )
        return retention

    def zone(self, name: str | None, path: str, default: ZoneInfo | None = None) -> ZoneInfo:
        if name is None:
            return default or ZoneInfo("UTC")
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.problems.append((path, f"unknown time zone {name!r}"))
            return ZoneInfo("UTC")

    def schedule(self, kind: str, cron: str, tz: ZoneInfo, path: str) -> Schedule:
        schedule = Schedule(kind, cron, tz)
        try:
            next(schedule.fires(datetime.now(tz)))
        except (CronSimError, StopIteration) as exc:
            self.problems.append(
                (path, f"{cron!r} is not a cron expression that ever fires ({exc})")
            )
        return schedule

    def service(
        self, name: str, spec: Mapping[str, Any], default_tz: ZoneInfo, retention: Retention | None
    ) -> Service | None:
        """Check one service field by field; the Service when it is entirely valid."""
        where = f"services.{name}"

        def ok(key: str) -> bool:
            return self.valid(spec, key, f"{where}.{key}")

        kind = spec["kind"] if ok("kind") else None
        for other in KINDS:
            if kind and other != kind and other in spec:
                self.problems.append((f"{where}.{other}", f"only allowed for kind {other}"))
        tz = self.zone(spec.get("timezone"), f"{where}.timezone", default_tz)
        schedules: tuple[Schedule, ...] = ()
        if ok("schedule"):
            raw = spec["schedule"]
            crons = raw if isinstance(raw, dict) else {"full": raw}
            schedules = tuple(
                self.schedule(
                    key,
                    cron,
                    tz,
                    f"{where}.schedule.{key}" if isinstance(raw, dict) else f"{where}.schedule",
                )
                for key, cron in crons.items()
            )
        if ok("rto") and parse_duration(spec["rto"]["target"]) > parse_duration(
            spec["rto"]["limit"]
        ):
            self.problems.append((f"{where}.rto.target", "is above rto.limit"))
        if self.problems or not self.valid(spec, "kind", where) or kind is None:
            return None
        service = Service(
            name=name,
            kind=kind,
            schedules=schedules,
            rpo=parse_duration(spec["rpo"]),
            rto_target=parse_duration(spec["rto"]["target"]),
            rto_limit=parse_duration(spec["rto"]["limit"]),
            options=_options(kind, spec[kind]),
            expected_duration=parse_duration(spec.get("expected_duration", "10m")),
        )
        if retention is not None:
            self.gap_warnings(service, retention)
        return service

    def gap_warnings(self, service: Service, retention: Retention) -> None:
        gap = longest_gap(service.schedules)
        where = f"services.{service.name}"
        if gap > service.rpo:
            self.warnings.append(
                f"{where}: runs can be {format_duration(gap)} apart, longer than rpo "
                f"{format_duration(service.rpo)}; the freshness alert will fire between runs"
            )
        if gap >= retention.keep_within:
            self.warnings.append(
                f"{where}: runs can be {format_duration(gap)} apart, not less than retention "
                f"keep_within {format_duration(retention.keep_within)}; at times only the newest "
                "snapshot will be left as a restore point"
            )


def longest_gap(schedules: tuple[Schedule, ...], start: datetime | None = None) -> timedelta:
    """Longest elapsed time between two consecutive runs of any of ``schedules``.

    Runs are simulated for a year, or up to ``_MAX_FIRES`` runs of a frequent schedule;
    the year is then shortened to what every schedule covered. Times are compared in
    UTC, so a daylight-saving change counts as the hour it really is.
    """
    start = start or datetime.now(schedules[0].timezone)
    end = start + _HORIZON
    runs = []
    for schedule in schedules:
        times = schedule.fires_until(start, end, _MAX_FIRES)
        if len(times) == _MAX_FIRES:  # frequent: only compare what all schedules covered
            end = min(end, times[-1])
        runs += times
    times = sorted(t.astimezone(UTC) for t in runs if t <= end)
    gaps = [later - earlier for earlier, later in pairwise(times)]
    return max(gaps, default=_HORIZON)


def _options(kind: str, spec: Mapping[str, Any]) -> Options:
    if kind == "mysql":
        return MysqlOptions(
            defaults_file=spec["defaults_file"],
            host=spec.get("host", "localhost"),
            port=spec.get("port", 3306),
            socket=spec.get("socket"),
            databases=tuple(spec.get("databases", ())),
            client=spec.get("client", "auto"),
            dump_program=spec.get("dump_program"),
            restore_defaults_file=spec.get("restore_defaults_file"),
            sanity_queries=tuple((q["name"], q["sql"]) for q in spec.get("sanity_queries", ())),
        )
    if kind == "grafana":
        data_dir = spec.get("data_dir", "/var/lib/grafana")
        return GrafanaOptions(
            data_dir=data_dir,
            database=spec.get("database", f"{data_dir}/grafana.db"),
            config_file=spec.get("config_file", "/etc/grafana/grafana.ini"),
            provisioning_dir=spec.get("provisioning_dir", "/etc/grafana/provisioning"),
            plugins_dir=spec.get("plugins_dir", f"{data_dir}/plugins"),
        )
    return FilesOptions(paths=tuple(spec["paths"]), exclude=tuple(spec.get("exclude", ())))
