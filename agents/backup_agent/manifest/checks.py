"""Cross-field checks the JSON Schema cannot express, and building the dataclasses.

Cron expressions that never fire, unknown time zones, retention that contradicts
itself, an RTO target above its limit, directories the agent deletes in that are not
safe to delete in: each becomes a problem with its path. Risky but legal choices
(runs further apart than the RPO or the retention window) become warnings.
Values the schema left out take the dataclasses' defaults (``manifest.model``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSimError

from backup_agent.manifest import model
from backup_agent.manifest.model import format_duration, parse_duration, parse_size
from backup_agent.repository_errors import bucket_of
from backup_agent.restic import Repository

Problems = list[tuple[str, str]]
# How far ahead schedules are simulated for the gap warnings (a year covers every month).
_HORIZON = timedelta(days=366)
_MAX_FIRES = 3000
# Directories the agent must never be told to delete in: it removes what it creates
# below work_dir and drill.scratch_dir, so these must be its own.
SYSTEM_DIRECTORIES = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/media",
        "/mnt",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",  # noqa: S108 - listed to be refused
        "/usr",
        "/var",
        "/var/lib",
        "/var/tmp",  # noqa: S108 - listed to be refused
        "/var/log",
        "/var/cache",
    }
)


def build(
    data: Mapping[str, Any], source: str, skip: set[str]
) -> tuple[model.Manifest | None, Problems, list[str]]:
    """Check everything that passed the schema (``skip`` holds paths that did not);
    the Manifest when all is well, the problems and the warnings."""
    checker = _Checker(skip)
    manifest = checker.manifest(data, source)
    return manifest, checker.problems, checker.warnings


class _Checker:
    """Collects problems and warnings instead of stopping at the first."""

    def __init__(self, skip: set[str]) -> None:
        self.skip = skip
        self.problems: Problems = []
        self.warnings: list[str] = []

    def valid(self, data: Mapping[str, Any], key: str, path: str) -> bool:
        """True when ``key`` is present and nothing at or below ``path`` broke the schema."""
        return key in data and not any(p == path or p.startswith(f"{path}.") for p in self.skip)

    def section(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        """A top-level mapping that passed the schema, or an empty one."""
        value = data.get(key)
        return value if self.valid(data, key, key) and isinstance(value, dict) else {}

    def manifest(self, data: Mapping[str, Any], source: str) -> model.Manifest | None:
        tz = self.zone(data.get("timezone", model.DEFAULT_TIMEZONE), "timezone")
        retention = (
            self.retention(data["retention"])
            if self.valid(data, "retention", "retention")
            else None
        )
        services = data.get("services")
        checked = {
            name: self.service(name, spec, tz)
            for name, spec in (services.items() if isinstance(services, dict) else ())
            if isinstance(spec, dict)
        }
        work_dir = self.directory(data, "work_dir", model.DEFAULT_WORK_DIR)
        agent = model.Agent(**self.section(data, "agent"))
        # The agent replaces its state file (and the drill report) there.
        self.directory(self.section(data, "agent"), "state_dir", agent.state_dir, "agent.")
        drill = (
            self.drill(data["drill"], tz, work_dir, agent) if self.section(data, "drill") else None
        )
        maintenance = self.maintenance(self.section(data, "maintenance"), tz, data)
        self.per_service(data)
        self.s3(data)
        if self.skip or self.problems or retention is None:
            return None
        # Only for a manifest that will be used: simulating a year of runs is the slow
        # part, and a refused manifest's warnings are never shown.
        for service in checked.values():
            if service:
                self.gap_warnings(service, retention)
        repo = data["repository"]
        optional: dict[str, Any] = {}
        if "former_hosts" in repo:
            optional["former_hosts"] = tuple(repo["former_hosts"])
        if "clock_skew" in repo:
            optional["clock_skew"] = parse_duration(repo["clock_skew"])
        if "size_limit" in repo:
            optional["size_limit"] = parse_size(repo["size_limit"])
        return model.Manifest(
            source=source,
            repository=repository(repo, repo),
            services={name: service for name, service in checked.items() if service},
            retention=retention,
            drill=drill,
            work_dir=work_dir,
            agent=agent,
            maintenance=maintenance,
            monitoring=model.Monitoring(**self.section(data, "monitoring")),
            **optional,
        )

    def per_service(self, data: Mapping[str, Any]) -> None:
        """``{service}`` is in every repository URL or in none: the roles (and the copy)
        must agree on whether each service has a repository of its own; secret files
        name it only where the URL does."""
        repo = data.get("repository")
        if not isinstance(repo, dict) or not isinstance(repo.get("url"), str):
            return
        own = model.SERVICE_FIELD in repo["url"]
        for where, section in views(data):
            url = section.get("repository_url", section.get("url"))
            if isinstance(url, str) and (model.SERVICE_FIELD in url) != own:
                says = "has" if own else "has no"
                key = "url" if where == "maintenance.copy" else "repository_url"
                self.problems.append(
                    (
                        f"{where}.{key}",
                        f"repository.url {says} {model.SERVICE_FIELD}; this URL must agree",
                    )
                )
        for where, section in [("repository", repo), *views(data)]:
            for key in ("password_file", "credentials_file"):
                value = section.get(key)
                if isinstance(value, str) and model.SERVICE_FIELD in value and not own:
                    self.problems.append(
                        (
                            f"{where}.{key}",
                            f"names {model.SERVICE_FIELD} but repository.url does not: services "
                            f"sharing one repository share its {key.partition('_')[0]}",
                        )
                    )

    def s3(self, data: Mapping[str, Any]) -> None:
        """An S3 repository needs a key pair for every role that reaches it, the
        maintenance role its own (it deletes); ``s3`` options only go with ``s3:`` URLs;
        restic copy gives both repositories one set of credentials."""
        repo = data.get("repository")
        if not isinstance(repo, dict) or not isinstance(repo.get("url"), str):
            return
        sections = dict(views(data))
        agents_s3 = is_s3(repo["url"])
        drill, maintenance = sections.get("drill", {}), sections.get("maintenance", {})
        drill_s3 = is_s3(drill.get("repository_url", repo["url"])) if "drill" in data else False
        maintenance_s3 = is_s3(maintenance.get("repository_url", repo["url"]))
        if agents_s3 and "credentials_file" not in repo:
            self.problems.append(
                (
                    "repository.credentials_file",
                    "required for an s3: URL: an AWS credentials file with the agents' key pair",
                )
            )
        if maintenance_s3 and "credentials_file" not in maintenance:
            self.problems.append(
                (
                    "maintenance.credentials_file",
                    "required when the maintenance role reaches an S3 repository: retention "
                    "deletes, which the agents' key pair may not (the bucket policy)",
                )
            )
        if drill_s3 and "credentials_file" not in drill:
            self.warnings.append(
                "drill.credentials_file: not set, so the verifier uses the agents' S3 key "
                "pair; give it one of its own (s3-setup --verifier)"
            )
        if "s3" in repo and not (agents_s3 or drill_s3 or maintenance_s3):
            self.problems.append(("repository.s3", "only for s3: repository URLs"))
        self.bucket_names(data)
        copy = sections.get("maintenance.copy")
        if not copy or not isinstance(copy.get("url"), str):
            return
        if is_s3(copy["url"]) and "credentials_file" not in copy:
            self.problems.append(
                (
                    "maintenance.copy.credentials_file",
                    "required for an s3: URL: an AWS credentials file (best an append-only "
                    "key pair)",
                )
            )
        if "s3" in copy and not is_s3(copy["url"]):
            self.problems.append(("maintenance.copy.s3", "only for an s3: url"))
        source = maintenance.get("repository_url", repo["url"])
        source_credentials = maintenance.get(
            "credentials_file",
            None if "repository_url" in maintenance else repo.get("credentials_file"),
        )
        kind = backend(source)
        if kind in ("s3", "rest") and kind == backend(copy["url"]):
            if source_credentials != copy.get("credentials_file"):
                self.problems.append(
                    (
                        "maintenance.copy.credentials_file",
                        f"restic copy gives both repositories one set of {kind} credentials: "
                        "use the maintenance role's file, or reach one of them another way",
                    )
                )
            if kind == "s3" and repo.get("s3") != copy.get("s3"):
                self.problems.append(
                    (
                        "maintenance.copy.s3",
                        "restic copy gives both S3 repositories the same options: must equal "
                        "repository.s3",
                    )
                )

    def bucket_names(self, data: Mapping[str, Any]) -> None:
        """Every S3 bucket the manifest names, with ``{service}`` replaced by each service,
        is a name S3 allows (restic would retry a bad one for 15 minutes)."""
        repo, services = data["repository"], data.get("services")
        names = list(services) if isinstance(services, dict) else []
        urls = [("repository.url", repo["url"])]
        for where, section in views(data):
            key = "url" if where == "maintenance.copy" else "repository_url"
            urls.append((f"{where}.{key}", section.get(key)))
        for where, url in urls:
            if not is_s3(url):
                continue
            for bucket in dict.fromkeys(
                bucket_of(url.replace(model.SERVICE_FIELD, n)) for n in names or [""]
            ):
                if not BUCKET_NAME.fullmatch(bucket) or IP_ADDRESS.fullmatch(bucket):
                    self.problems.append(
                        (
                            where,
                            f"{bucket!r} is not an S3 bucket name: 3-63 lowercase letters, "
                            "digits, '.' and '-', starting and ending with a letter or digit",
                        )
                    )

    def drill(
        self, spec: Mapping[str, Any], tz: ZoneInfo, work_dir: str, agent: model.Agent
    ) -> model.Drill:
        server = dict(spec.get("mysql", {}))
        if "server_args" in server:
            server["server_args"] = tuple(server["server_args"])
        scratch_dir = self.directory(spec, "scratch_dir", f"{work_dir}/drill", "drill.")
        report = str(spec.get("report_file", f"{agent.state_dir}/drill-report.json"))
        self.directory(
            {"report_file": report.rsplit("/", 1)[0] or "/"}, "report_file", "", "drill."
        )
        keys = ("file_sample", "key_file", "repository_url", "credentials_file")
        optional: dict[str, Any] = {k: spec[k] for k in keys if k in spec}
        if "max_age" in spec:
            optional["max_age"] = parse_duration(spec["max_age"])
        return model.Drill(
            schedule=self.schedule(
                spec["schedule"],
                self.zone(spec.get("timezone"), "drill.timezone", tz),
                "drill.schedule",
            ),
            report_file=spec.get("report_file", f"{agent.state_dir}/drill-report.json"),
            scratch_dir=scratch_dir,
            mysql=model.DrillServer(**server),
            **optional,
        )

    def maintenance(
        self, spec: Mapping[str, Any], tz: ZoneInfo, data: Mapping[str, Any]
    ) -> model.Maintenance:
        keys = ("read_data_subsets", "repository_url", "credentials_file", "recovery_kit_file")
        optional: dict[str, Any] = {k: spec[k] for k in keys if k in spec}
        if "deadline" in spec:
            optional["deadline"] = parse_duration(spec["deadline"])
        copy, repo = spec.get("copy"), data.get("repository")
        valid = self.valid(spec, "copy", "maintenance.copy")
        if valid and isinstance(copy, dict) and isinstance(repo, dict):
            optional["copy"] = model.Copy(
                repository=repository(
                    {"password_file": repo.get("password_file", ""), **copy}, repo
                ),
                schedule=self.schedule(copy["schedule"], tz, "maintenance.copy.schedule"),
                **({"max_age": parse_duration(copy["max_age"])} if "max_age" in copy else {}),
            )
        return model.Maintenance(
            retention=self.schedule(
                spec.get("retention_schedule", model.DEFAULT_RETENTION_SCHEDULE),
                tz,
                "maintenance.retention_schedule",
            ),
            check=self.schedule(
                spec.get("check_schedule", model.DEFAULT_CHECK_SCHEDULE),
                tz,
                "maintenance.check_schedule",
            ),
            **optional,
        )

    def directory(self, spec: Mapping[str, Any], key: str, default: str, prefix: str = "") -> str:
        """A directory the agent creates and removes things in: absolute, and not a
        system directory (``scratch_dir: /`` must never make a drill remove ``/home``)."""
        path = str(spec.get(key, default))
        normal = "/" + "/".join(part for part in path.split("/") if part not in ("", "."))
        if f"{prefix}{key}" in self.skip:  # not a string, or not printable: said already
            pass
        elif not path.startswith("/") or ".." in path.split("/"):
            self.problems.append((f"{prefix}{key}", "must be an absolute path without '..'"))
        elif normal in SYSTEM_DIRECTORIES:
            self.problems.append(
                (f"{prefix}{key}", f"{path} is a system directory; use a directory of its own")
            )
        return path

    def retention(self, spec: Mapping[str, Any]) -> model.Retention:
        retention = model.Retention(
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

    def zone(self, name: Any, path: str, default: ZoneInfo | None = None) -> ZoneInfo:
        if name is None:
            return default or ZoneInfo(model.DEFAULT_TIMEZONE)
        try:
            return ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            if not any(p == path for p in self.skip):
                self.problems.append((path, f"unknown time zone {str(name)[:60]!r}"))
            return ZoneInfo(model.DEFAULT_TIMEZONE)

    def schedule(self, cron: str, tz: ZoneInfo, path: str) -> model.Schedule:
        schedule = model.Schedule(cron, tz)
        try:
            next(schedule.fires(datetime.now(tz)))
        except (CronSimError, StopIteration) as exc:
            self.problems.append(
                (path, f"{cron[:60]!r} is not a cron expression that ever fires ({exc})")
            )
        return schedule

    def service(
        self,
        name: str,
        spec: Mapping[str, Any],
        default_tz: ZoneInfo,
    ) -> model.Service | None:
        """Check one service field by field; the Service when it is entirely valid."""
        where = f"services.{name}"

        def ok(key: str) -> bool:
            return self.valid(spec, key, f"{where}.{key}")

        type_ = spec["type"] if ok("type") else None
        for other in model.TYPES:
            if type_ and other != type_ and other in spec:
                self.problems.append((f"{where}.{other}", f"only allowed for type {other}"))
        if type_ and type_ != "mysql" and "binlog" in spec:
            self.problems.append((f"{where}.binlog", "only allowed for type mysql"))
        if type_ == "mysql" and "binlog" in spec and self._method(spec) == "physical":
            self.problems.append(
                (
                    f"{where}.binlog",
                    "needs a dump to replay binlogs on: use mysql.method logical or both, "
                    "not physical",
                )
            )
        tz = self.zone(spec.get("timezone"), f"{where}.timezone", default_tz)
        schedules: dict[str, model.Schedule] = {}
        if ok("schedule"):
            raw = spec["schedule"]
            crons = raw if isinstance(raw, dict) else {"full": raw}
            schedules = {
                kind: self.schedule(
                    cron,
                    tz,
                    f"{where}.schedule.{kind}" if isinstance(raw, dict) else f"{where}.schedule",
                )
                for kind, cron in crons.items()
            }
        if ok("rto") and parse_duration(spec["rto"]["target"]) > parse_duration(
            spec["rto"]["limit"]
        ):
            self.problems.append((f"{where}.rto.target", "is above rto.limit"))
        binlog = self.binlog(spec["binlog"], tz, f"{where}.binlog") if ok("binlog") else None
        if self.problems or not self.valid(spec, "type", where) or type_ is None:
            return None
        optional: dict[str, Any] = {"deadline": default_deadline(tuple(schedules.values()))}
        for key in ("expected_duration", "deadline"):
            if key in spec:
                optional[key] = parse_duration(spec[key])
        if binlog is not None:
            optional["binlog"] = binlog
        return model.Service(
            name=name,
            type=type_,
            schedules=schedules,
            rpo=parse_duration(spec["rpo"]),
            rto_target=parse_duration(spec["rto"]["target"]),
            rto_limit=parse_duration(spec["rto"]["limit"]),
            options=options(type_, spec[type_]),
            **optional,
        )

    @staticmethod
    def _method(spec: Mapping[str, Any]) -> str:
        """A MySQL service's backup method (the schema checked its value)."""
        options = spec.get("mysql")
        method = options.get("method") if isinstance(options, dict) else None
        return str(method or model.MysqlOptions.method)

    def binlog(self, spec: Mapping[str, Any], tz: ZoneInfo, where: str) -> model.Binlog:
        """Binlog shipping: ``every`` becomes a cron schedule, so it must divide an hour
        or a day (the scheduler and ``plan`` know only cron schedules)."""
        every = parse_duration(spec["every"]) if "every" in spec else model.Binlog.every
        minutes = int(every.total_seconds()) // 60
        if minutes < 60 and 60 % minutes == 0:
            cron = "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
        elif minutes % 60 == 0 and 24 % (minutes // 60) == 0:
            cron = "0 * * * *" if minutes == 60 else f"0 */{minutes // 60} * * *"
        else:
            self.problems.append(
                (f"{where}.every", "must divide an hour (1m to 60m) or a day (1h to 24h)")
            )
            cron = "*/5 * * * *"
        optional: dict[str, Any] = {k: spec[k] for k in ("program", "drill_target") if k in spec}
        heartbeat = spec.get("heartbeat")
        if heartbeat is not None:
            beat = model.Heartbeat(heartbeat["table"])
            if "every" in heartbeat:
                beat = model.Heartbeat(beat.table, parse_duration(heartbeat["every"]))
            optional["heartbeat"] = beat
        return model.Binlog(
            schedule=model.Schedule(cron, tz),
            rpo=parse_duration(spec["rpo"]) if "rpo" in spec else every,
            every=every,
            **optional,
        )

    def gap_warnings(self, service: model.Service, retention: model.Retention) -> None:
        gap = longest_gap(tuple(service.schedules.values()))
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


def repository(spec: Mapping[str, Any], main: Mapping[str, Any]) -> Repository:
    """A ``Repository`` from a repository block (``repository``, ``maintenance.copy``);
    the host and cache directory are always the main repository's."""
    s3 = spec.get("s3") or {}
    return Repository(
        url=spec["url"],
        password_file=spec["password_file"],
        host=main.get("host", ""),
        credentials_file=spec.get("credentials_file"),
        cache_dir=main.get("cache_dir"),
        cacert=spec.get("cacert"),
        s3_region=s3.get("region"),
        s3_path_style=s3.get("path_style"),
    )


def views(data: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The sections that give the repositories another URL or other credentials."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    for key in ("drill", "maintenance"):
        section = data.get(key)
        if isinstance(section, dict):
            found.append((key, section))
            if key == "maintenance" and isinstance(section.get("copy"), dict):
                found.append(("maintenance.copy", section["copy"]))
    return found


BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")


def is_s3(url: Any) -> bool:
    return isinstance(url, str) and url.startswith("s3:")


def backend(url: Any) -> str:
    """restic's backend of a repository location: ``s3``, ``rest``, ... or ``local``."""
    scheme, sep, _ = str(url).partition(":")
    return scheme if sep and re.fullmatch(r"[a-z][a-z0-9]+", scheme) else "local"


def default_deadline(schedules: tuple[model.Schedule, ...]) -> timedelta:
    """The shortest time between two runs over the next two weeks (a backup never runs
    into its next slot), within ``DEADLINE_BOUNDS``."""
    low, high = model.DEADLINE_BOUNDS
    start = datetime.now(UTC)
    runs = sorted(
        when.astimezone(UTC)
        for schedule in schedules
        for when in schedule.fires_until(start, start + timedelta(days=14), _MAX_FIRES)
    )
    gaps = [later - earlier for earlier, later in pairwise(runs) if later > earlier]
    return min(max(min(gaps, default=high), low), high)


def longest_gap(schedules: tuple[model.Schedule, ...], start: datetime | None = None) -> timedelta:
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


def options(type_: str, spec: Mapping[str, Any]) -> model.Options:
    """The options block of a service type; absent keys take the dataclass defaults."""
    if type_ == "mysql":
        values = dict(spec)
        for key in ("databases",):
            if key in values:
                values[key] = tuple(values[key])
        if "sanity_queries" in values:
            values["sanity_queries"] = tuple((q["name"], q["sql"]) for q in spec["sanity_queries"])
        return model.MysqlOptions(**values)
    if type_ == "grafana":
        data_dir = spec.get("data_dir", model.GrafanaOptions.data_dir)
        return model.GrafanaOptions(
            **{
                "database": f"{data_dir}/grafana.db",
                "plugins_dir": f"{data_dir}/plugins",
                **spec,
            }
        )
    return model.FilesOptions(
        paths=tuple(spec["paths"]),
        exclude=tuple(spec.get("exclude", ())),
        **{k: spec[k] for k in ("allow_empty",) if k in spec},
    )
