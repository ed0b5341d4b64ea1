"""Load a manifest: YAML -> JSON Schema -> cross-field checks -> frozen dataclasses.

Every problem is collected, with its path (``services.mysql.schedule``), and raised
at once as one ``ManifestError``. Checks the schema cannot express (cron expressions
that never fire, time zones, retention that contradicts itself, RTO target above its
limit) are done here; risky but legal choices become warnings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
import yaml
from cronsim import CronSim, CronSimError

from backup_agent.errors import ManifestError
from backup_agent.restic import Repository

DEFAULT_PATH = "/etc/backup-agent/manifest.yaml"
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


@dataclass(frozen=True)
class MysqlOptions:
    defaults_file: str
    host: str = "localhost"
    port: int = 3306
    socket: str | None = None
    databases: tuple[str, ...] = ()
    client: str = "auto"
    dump_program: str | None = None


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


@dataclass(frozen=True)
class Retention:
    keep_within: timedelta
    max_age: timedelta


@dataclass(frozen=True)
class Verification:
    schedule: Schedule


@dataclass(frozen=True)
class Manifest:
    source: str
    repository: Repository
    services: Mapping[str, Service]
    retention: Retention
    verification: Verification | None
    work_dir: str
    warnings: tuple[str, ...] = field(default=())

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            known = ", ".join(sorted(self.services))
            raise ManifestError(self.source, [(f"services.{name}", f"not defined (have: {known})")])


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
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(source, [("(yaml)", str(exc).replace("\n", " "))]) from exc
    return parse(data, source)


def parse(data: Any, source: str = "<manifest>") -> Manifest:
    """Validate already-loaded YAML data and build the ``Manifest``."""
    problems = schema_problems(data)
    if problems:
        raise ManifestError(source, problems)
    checker = _Checker()
    manifest = checker.build(data, source)
    if checker.problems:
        raise ManifestError(source, checker.problems)
    return manifest


def schema_problems(data: Any) -> list[tuple[str, str]]:
    """Every JSON Schema violation as (dotted path, message), in document order."""
    validator = jsonschema.Draft202012Validator(schema())
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.path]):
        problems.extend(_describe(error))
    return problems


def _describe(error: jsonschema.ValidationError) -> list[tuple[str, str]]:
    """Flatten ``oneOf``/``if-then`` errors into messages a person can act on."""
    path = ".".join(str(part) for part in error.absolute_path) or "(top)"
    if error.validator == "oneOf" and error.context:
        # Report the alternative whose type matched, or a summary of the choices.
        specific = [e for e in error.context if e.validator != "type"]
        if specific:
            return [p for e in specific for p in _describe(e)]
        return [(path, "must be a cron expression string or a mapping with 'incremental' and 'full'")]
    if error.validator == "false" or (error.validator is False):
        return [(path, "not allowed for this kind")]
    if error.validator == "pattern" and "[smhdw]" in str(error.validator_value):
        return [(path, f"{error.instance!r} is not a duration like 30m, 2h, 1d or 3w")]
    message = error.message
    if error.validator == "additionalProperties":
        message = message.replace("Additional properties are not allowed", "unknown key(s)")
    return [(path, message)]


class _Checker:
    """Cross-field checks, collecting problems and warnings instead of stopping early."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.warnings: list[str] = []

    def build(self, data: Mapping[str, Any], source: str) -> Manifest:
        default_tz = self.zone(data.get("timezone", "UTC"), "timezone")
        repo = data["repository"]
        repository = Repository(
            url=repo["url"],
            password_file=repo["password_file"],
            host=repo["host"],
            credentials_file=repo.get("credentials_file"),
            cache_dir=repo.get("cache_dir"),
        )
        retention = Retention(
            keep_within=parse_duration(data["retention"]["keep_within"]),
            max_age=parse_duration(data["retention"]["max_age"]),
        )
        if retention.max_age < retention.keep_within:
            self.problems.append(
                (
                    "retention.max_age",
                    f"{format_duration(retention.max_age)} is shorter than keep_within "
                    f"{format_duration(retention.keep_within)}: the policy contradicts itself",
                )
            )
        services = {
            name: self.service(name, spec, default_tz, retention)
            for name, spec in data["services"].items()
        }
        verification = None
        if "verification" in data:
            spec = data["verification"]
            tz = self.zone(spec.get("timezone"), "verification.timezone", default_tz)
            verification = Verification(
                self.schedule("full", spec["schedule"], tz, "verification.schedule")
            )
        return Manifest(
            source=source,
            repository=repository,
            services=services,
            retention=retention,
            verification=verification,
            work_dir=data.get("work_dir", "/var/tmp/backup-agent"),
            warnings=tuple(self.warnings),
        )

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
            self.problems.append((path, f"{cron!r} is not a cron expression that ever fires ({exc})"))
        return schedule

    def service(
        self, name: str, spec: Mapping[str, Any], default_tz: ZoneInfo, retention: Retention
    ) -> Service:
        where = f"services.{name}"
        tz = self.zone(spec.get("timezone"), f"{where}.timezone", default_tz)
        raw = spec["schedule"]
        crons = raw if isinstance(raw, dict) else {"full": raw}
        schedules = tuple(
            self.schedule(
                kind,
                cron,
                tz,
                f"{where}.schedule.{kind}" if isinstance(raw, dict) else f"{where}.schedule",
            )
            for kind, cron in crons.items()
        )
        rto = spec["rto"]
        service = Service(
            name=name,
            kind=spec["kind"],
            schedules=schedules,
            rpo=parse_duration(spec["rpo"]),
            rto_target=parse_duration(rto["target"]),
            rto_limit=parse_duration(rto["limit"]),
            options=_options(spec["kind"], spec[spec["kind"]]),
        )
        if service.rto_target > service.rto_limit:
            self.problems.append((f"{where}.rto.target", "is above rto.limit"))
        if not self.problems:
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
    """Longest time between two consecutive runs of any of ``schedules`` over a year."""
    start = start or datetime.now(schedules[0].timezone)
    end = start + _HORIZON
    times = sorted(
        t for s in schedules for t in islice(s.fires(start), _MAX_FIRES) if t <= end
    )
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
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
