"""Manifest loading: the shipped manifests, every error path, warnings and durations."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from backup_agent import manifest
from backup_agent.errors import EXIT_USAGE, ManifestError
from backup_agent.manifest import (
    Agent,
    FilesOptions,
    GrafanaOptions,
    Manifest,
    MysqlOptions,
    Schedule,
    format_duration,
    longest_gap,
    parse_duration,
)

ROOT = Path(__file__).resolve().parents[2]
AGAMA = ROOT / "manifests" / "agama.yaml"
MINIMAL = ROOT / "manifests" / "minimal.yaml"
UTC_ZONE = ZoneInfo("UTC")
HELSINKI = ZoneInfo("Europe/Helsinki")
RTO = {"target": "30m", "limit": "2h"}

Data = dict[str, Any]
Problems = list[tuple[str, str]]


@pytest.fixture(scope="module")
def agama() -> Manifest:
    """manifests/agama.yaml, loaded once (its monthly schedule is slow to simulate)."""
    return manifest.load(AGAMA)


@pytest.fixture(scope="module")
def minimal() -> Manifest:
    """manifests/minimal.yaml, loaded once."""
    return manifest.load(MINIMAL)


def base() -> Data:
    """A small valid manifest: one hourly MySQL service (cheap to simulate)."""
    return {
        "version": 1,
        "repository": {
            "url": "/srv/restic/repo",
            "password_file": "/run/secrets/restic_password",
            "host": "agama",
        },
        "services": {
            "db": {
                "type": "mysql",
                "schedule": "0 * * * *",
                "rpo": "1d",
                "rto": dict(RTO),
                "mysql": {"defaults_file": "/run/secrets/mysql_backup.cnf"},
            }
        },
        "retention": {"keep_within": "3w", "max_age": "31d"},
    }


def files_service(**changes: Any) -> Data:
    """A valid files service spec, with ``changes`` applied on top."""
    spec: Data = {
        "type": "files",
        "schedule": {"incremental": "0 0 * * 1-6", "full": "0 0 * * 0"},
        "rpo": "1d",
        "rto": dict(RTO),
        "files": {"paths": ["/srv/documents"]},
    }
    spec.update(changes)
    return spec


def problems_of(data: Any) -> Problems:
    """The problems ``manifest.parse`` reports for ``data`` (it must refuse it)."""
    with pytest.raises(ManifestError) as caught:
        manifest.parse(data, "test.yaml")
    assert caught.value.source == "test.yaml"
    return caught.value.problems


def assert_problems(problems: Problems, expected: Problems) -> None:
    """Exactly the expected problems: same count, each path with its message fragment."""
    assert len(problems) == len(expected), problems
    for path, fragment in expected:
        assert any(p == path and fragment in m for p, m in problems), (path, fragment, problems)


# --- the shipped manifests ---------------------------------------------------------------


def test_agama_repository(agama: Manifest) -> None:
    """The repository section becomes a restic.Repository."""
    repo = agama.repository
    assert agama.source == str(AGAMA)
    assert repo.url == "rest:http://backup-server:8000/agama"
    assert repo.password_file == "/run/secrets/restic_password"
    assert repo.credentials_file == "/run/secrets/rest_credentials"
    assert repo.host == "agama"
    assert repo.cache_dir is None
    assert agama.work_dir == manifest.DEFAULT_WORK_DIR


def test_agama_services_and_types(agama: Manifest) -> None:
    """Services keep their order and types."""
    assert list(agama.services) == ["mysql", "grafana", "files"]
    assert {name: s.type for name, s in agama.services.items()} == {
        "mysql": "mysql",
        "grafana": "grafana",
        "files": "files",
    }
    assert all(agama.service(name).name == name for name in agama.services)


def test_agama_schedules(agama: Manifest) -> None:
    """mysql and grafana run one full schedule; files runs incremental and full."""
    assert agama.service("mysql").schedules == {"full": Schedule("0 22 * * *", UTC_ZONE)}
    assert agama.service("grafana").schedules == {"full": Schedule("0 2 28 * *", UTC_ZONE)}
    assert agama.service("files").schedules == {
        "incremental": Schedule("0 0 * * 1-6", UTC_ZONE),
        "full": Schedule("0 0 * * 0", UTC_ZONE),
    }


def test_agama_rpo_rto(agama: Manifest) -> None:
    """Durations become timedeltas."""
    assert agama.service("mysql").rpo == timedelta(days=1)
    assert agama.service("grafana").rpo == timedelta(days=32)
    assert agama.service("files").rpo == timedelta(days=1)
    for service in agama.services.values():
        assert service.rto_target == timedelta(minutes=30)
        assert service.rto_limit == timedelta(hours=2)


def test_agama_options(agama: Manifest) -> None:
    """Each service gets the options of its kind, with defaults filled in."""
    assert agama.service("mysql").options == MysqlOptions(
        defaults_file="/run/secrets/mysql_backup.cnf",
        host="mysql",
        port=3306,
        restore_defaults_file="/run/secrets/mysql_restore.cnf",
    )
    assert agama.service("grafana").options == GrafanaOptions(
        data_dir="/var/lib/grafana",
        database="/var/lib/grafana/grafana.db",
        config_file="/etc/grafana/grafana.ini",
        provisioning_dir="/etc/grafana/provisioning",
        plugins_dir="/var/lib/grafana/plugins",
    )
    assert agama.service("files").options == FilesOptions(paths=("/home/backup/backup",))


def test_agama_retention_and_drill(agama: Manifest) -> None:
    """Retention 3w/31d and a Monday 06:00 restore drill."""
    assert agama.retention.keep_within == timedelta(weeks=3)
    assert agama.retention.max_age == timedelta(days=31)
    assert agama.drill is not None
    assert agama.drill.schedule.cron == "0 6 * * 1"
    assert agama.drill.schedule.timezone == UTC_ZONE
    assert agama.drill.report_file == "/var/lib/backup-agent/drill-report.json"
    assert agama.drill.scratch_dir == f"{manifest.DEFAULT_WORK_DIR}/drill"


def test_agama_defaults_for_agent_and_maintenance(agama: Manifest) -> None:
    """Sections the manifest leaves out get their documented defaults."""
    assert agama.agent == Agent("/var/lib/backup-agent", 9464, "0.0.0.0")  # noqa: S104
    assert agama.maintenance.retention == Schedule("0 4 * * *", UTC_ZONE)
    assert agama.maintenance.check == Schedule("0 5 * * 0", UTC_ZONE)
    assert agama.maintenance.read_data_subsets == 4
    assert agama.maintenance.repository_url is None
    assert all(s.expected_duration == timedelta(minutes=10) for s in agama.services.values())


def test_agama_warns_about_monthly_grafana(agama: Manifest) -> None:
    """Grafana's 31-day gap is not below keep_within 3w; its rpo of 32d is not exceeded."""
    assert len(agama.warnings) == 1
    (warning,) = agama.warnings
    assert warning.startswith("services.grafana: runs can be 31d apart")
    assert "keep_within 3w" in warning


def test_unknown_service_lists_known_ones(agama: Manifest) -> None:
    """Asking for a service the manifest lacks is a ManifestError naming the known ones."""
    with pytest.raises(ManifestError) as caught:
        agama.service("postgres")
    assert caught.value.problems == [
        ("services.postgres", "not defined (have: files, grafana, mysql)")
    ]


def test_minimal(minimal: Manifest) -> None:
    """The minimal manifest: one files service, no drill, no warnings."""
    assert minimal.repository.url == "/srv/restic/repo"
    assert minimal.repository.host == "myhost"
    assert minimal.repository.credentials_file is None
    assert list(minimal.services) == ["documents"]
    documents = minimal.service("documents")
    assert documents.type == "files"
    assert documents.schedules == {
        "incremental": Schedule("30 1 * * 1-6", UTC_ZONE),
        "full": Schedule("30 1 * * 0", UTC_ZONE),
    }
    assert documents.options == FilesOptions(paths=("/srv/documents",), exclude=("*.tmp",))
    assert minimal.retention.keep_within == timedelta(weeks=3)
    assert minimal.retention.max_age == timedelta(days=31)
    assert minimal.drill is None
    assert minimal.warnings == ()


def test_base_is_valid() -> None:
    """The dict the error tests start from is itself accepted, without warnings."""
    loaded = manifest.parse(base(), "test.yaml")
    assert list(loaded.services) == ["db"]
    assert loaded.warnings == ()


def test_time_zones_are_inherited_and_overridden() -> None:
    """Top-level zone applies to services and drills unless they set their own."""
    data = base()
    data["timezone"] = "Europe/Helsinki"
    data["drill"] = {"schedule": "0 6 * * 1", "timezone": "UTC"}
    data["services"]["db"]["timezone"] = "America/New_York"
    data["services"]["db2"] = base()["services"]["db"]
    loaded = manifest.parse(data, "test.yaml")
    assert loaded.service("db").schedules["full"].timezone == ZoneInfo("America/New_York")
    assert loaded.service("db2").schedules["full"].timezone == HELSINKI
    assert loaded.drill is not None
    assert loaded.drill.schedule.timezone == UTC_ZONE


def test_schedule_fires_in_its_time_zone() -> None:
    """22:00 in Helsinki (UTC+2 in winter) is 20:00 UTC."""
    first = next(Schedule("0 22 * * *", HELSINKI).fires(datetime(2026, 1, 1, tzinfo=UTC)))
    assert first.astimezone(UTC) == datetime(2026, 1, 1, 20, 0, tzinfo=UTC)


def test_agent_maintenance_and_expected_duration_are_read() -> None:
    """Explicit agent, maintenance and expected_duration values are used."""
    data = base()
    data["timezone"] = "Europe/Helsinki"
    data["agent"] = {"state_dir": "/state", "metrics_port": 0}
    data["maintenance"] = {
        "repository_url": "/srv/restic/agama",
        "retention_schedule": "30 3 * * *",
        "read_data_subsets": 12,
    }
    data["services"]["db"]["expected_duration"] = "45m"
    loaded = manifest.parse(data)
    assert loaded.agent == Agent(state_dir="/state", metrics_port=0)
    assert loaded.maintenance.retention == Schedule("30 3 * * *", HELSINKI)
    assert loaded.maintenance.check == Schedule("0 5 * * 0", HELSINKI)
    assert loaded.maintenance.read_data_subsets == 12
    assert loaded.maintenance.repository_url == "/srv/restic/agama"
    assert loaded.service("db").expected_duration == timedelta(minutes=45)


def test_rto_target_equal_to_limit_is_fine() -> None:
    """Only a target above the limit is refused."""
    data = base()
    data["services"]["db"]["rto"] = {"target": "2h", "limit": "2h"}
    assert manifest.parse(data).service("db").rto_target == timedelta(hours=2)


# --- every error path --------------------------------------------------------------------

Mutation = Callable[[Data], None]


def _set(*keys: str, value: Any) -> Mutation:
    """A mutation that sets data[k1][k2]...[kn] = value."""

    def mutate(data: Data) -> None:
        target = data
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return mutate


def _delete(*keys: str) -> Mutation:
    """A mutation that deletes data[k1]...[kn]."""

    def mutate(data: Data) -> None:
        target = data
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return mutate


ERROR_CASES = [
    pytest.param(
        _set("colour", value="blue"), [("(top)", "unknown key(s) ('colour'")], id="top-key"
    ),
    pytest.param(
        _set("services", "db", "colour", value="blue"),
        [("services.db", "unknown key(s) ('colour'")],
        id="service-key",
    ),
    pytest.param(
        _set("repository", "password", value="hunter2"),
        [("repository", "unknown key(s) ('password' was unexpected)")],
        id="password-in-repository",
    ),
    pytest.param(_delete("repository", "host"), [("repository.host", "is required")], id="host"),
    pytest.param(_delete("retention"), [("retention", "is required")], id="retention"),
    pytest.param(
        _delete("retention", "max_age"), [("retention.max_age", "is required")], id="max_age"
    ),
    pytest.param(_delete("services", "db", "rpo"), [("services.db.rpo", "is required")], id="rpo"),
    pytest.param(
        _delete("services", "db", "rto", "limit"),
        [("services.db.rto.limit", "is required")],
        id="rto-limit",
    ),
    pytest.param(
        _delete("services", "db", "mysql"),
        [("services.db.mysql", "is required")],
        id="options-block",
    ),
    pytest.param(
        _delete("services", "db", "mysql", "defaults_file"),
        [("services.db.mysql.defaults_file", "is required")],
        id="defaults_file",
    ),
    pytest.param(
        _set("services", "docs", value=files_service(schedule="0 0 * * *")),
        [("services.docs.schedule", "must be a mapping, not '0 0 * * *'")],
        id="files-schedule-string",
    ),
    pytest.param(
        _set("services", "db", "schedule", value={"incremental": "0 * * * *", "full": "0 0 * * 0"}),
        [("services.db.schedule", "must be a string")],
        id="mysql-schedule-mapping",
    ),
    pytest.param(
        _set(
            "services",
            "dash",
            value={
                "type": "grafana",
                "schedule": {"incremental": "0 0 * * 1-6", "full": "0 0 * * 0"},
                "rpo": "1d",
                "rto": dict(RTO),
                "grafana": {},
            },
        ),
        [("services.dash.schedule", "must be a string")],
        id="grafana-schedule-mapping",
    ),
    pytest.param(
        _set("services", "docs", value=files_service(schedule={"full": "0 0 * * 0"})),
        [("services.docs.schedule.incremental", "is required")],
        id="files-schedule-incomplete",
    ),
    pytest.param(
        _set("services", "docs", value=files_service(schedule={"full": "0 0 * * 0", "x": "1"})),
        [
            ("services.docs.schedule", "unknown key(s) ('x'"),
            ("services.docs.schedule.incremental", "is required"),
        ],
        id="files-schedule-extra-key",
    ),
    pytest.param(
        _set("services", "db", "rpo", value="1 day"),
        [("services.db.rpo", "'1 day' is not a duration like 30m, 2h, 1d or 3w")],
        id="rpo-duration",
    ),
    pytest.param(
        _set("services", "db", "rto", "limit", value="0h"),
        [("services.db.rto.limit", "'0h' is not a duration")],
        id="rto-zero",
    ),
    pytest.param(
        _set("retention", "keep_within", value="3y"),
        [("retention.keep_within", "'3y' is not a duration")],
        id="keep_within-unit",
    ),
    pytest.param(
        _set("services", "db", "schedule", value="61 22 * * *"),
        [("services.db.schedule", "'61 22 * * *' is not a cron expression that ever fires")],
        id="cron-minute",
    ),
    pytest.param(
        _set("services", "db", "schedule", value="every night"),
        [("services.db.schedule", "'every night' is not a cron expression")],
        id="cron-words",
    ),
    pytest.param(
        _set(
            "services",
            "docs",
            value=files_service(schedule={"incremental": "0 0 * *", "full": "0 0 * * 0"}),
        ),
        [("services.docs.schedule.incremental", "'0 0 * *' is not a cron expression")],
        id="cron-files-incremental",
    ),
    pytest.param(
        _set("services", "db", "schedule", value="0 0 30 2 *"),
        [("services.db.schedule", "'0 0 30 2 *' is not a cron expression that ever fires")],
        id="cron-never-fires",
    ),
    pytest.param(
        _set("drill", value={"schedule": "0 0 31 4 *"}),
        [("drill.schedule", "'0 0 31 4 *' is not a cron expression that ever fires")],
        id="drill-never-fires",
    ),
    pytest.param(
        _set("timezone", value="Mars/Olympus"),
        [("timezone", "unknown time zone 'Mars/Olympus'")],
        id="zone-top",
    ),
    pytest.param(
        _set("services", "db", "timezone", value="Europe/Atlantis"),
        [("services.db.timezone", "unknown time zone 'Europe/Atlantis'")],
        id="zone-service",
    ),
    pytest.param(
        _set("drill", value={"schedule": "0 6 * * 1", "timezone": "Nowhere"}),
        [("drill.timezone", "unknown time zone 'Nowhere'")],
        id="zone-drill",
    ),
    pytest.param(
        _set("services", "db", "rto", value={"target": "3h", "limit": "2h"}),
        [("services.db.rto.target", "is above rto.limit")],
        id="rto-target-above-limit",
    ),
    pytest.param(
        _set("retention", "max_age", value="2w"),
        [("retention.max_age", "2w is shorter than keep_within 3w")],
        id="max_age-below-keep_within",
    ),
    pytest.param(
        _set("services", "db", "grafana", value={}),
        [("services.db.grafana", "only allowed for type grafana")],
        id="grafana-block-on-mysql",
    ),
    pytest.param(
        _set("services", "docs", value=files_service(mysql={"defaults_file": "/x.cnf"})),
        [("services.docs.mysql", "only allowed for type mysql")],
        id="mysql-block-on-files",
    ),
    pytest.param(
        _set("services", "docs", value=files_service(files={"paths": ["/ok", "srv/docs"]})),
        [("services.docs.files.paths.1", "'srv/docs' does not match '^/'")],
        id="relative-path",
    ),
    pytest.param(
        _set("repository", "host", value="bad host!"),
        [("repository.host", "'bad host!' does not match")],
        id="host-space",
    ),
    pytest.param(
        _set("repository", "host", value="-agama"),
        [("repository.host", "'-agama' does not match")],
        id="host-dash",
    ),
    pytest.param(
        _set("services", "db", "type", value="postgres"),
        [("services.db.type", "'postgres' is not one of")],
        id="type",
    ),
    pytest.param(
        _set("maintenance", value={"retention_schedule": "0 0 30 2 *"}),
        [("maintenance.retention_schedule", "'0 0 30 2 *' is not a cron expression")],
        id="maintenance-never-fires",
    ),
    pytest.param(
        _set("maintenance", value={"read_data_subsets": 0}),
        [("maintenance.read_data_subsets", "0 is less than the minimum of 1")],
        id="read_data_subsets",
    ),
    pytest.param(
        _set("agent", value={"metrics_port": 70000}),
        [("agent.metrics_port", "70000 is greater than the maximum of 65535")],
        id="metrics_port",
    ),
    pytest.param(
        _set("services", "db", "expected_duration", value="ten minutes"),
        [("services.db.expected_duration", "'ten minutes' is not a duration")],
        id="expected_duration",
    ),
    pytest.param(_set("version", value=2), [("version", "1 was expected")], id="version"),
    pytest.param(
        _set("services", value={"Bad Name": base()["services"]["db"]}),
        [("services", "'Bad Name' does not match")],
        id="service-name",
    ),
    pytest.param(
        _set("services", "db", "mysql", "port", value="3306"),
        [("services.db.mysql.port", "must be a whole number, not '3306'")],
        id="port-type",
    ),
    pytest.param(
        _set("services", value={}), [("services", "should be non-empty")], id="no-services"
    ),
    pytest.param(
        _set("services", "db", "binlog", value={"every": "7m"}),
        [("services.db.binlog.every", "must divide an hour")],
        id="binlog-every-7m",
    ),
    pytest.param(
        _set("services", "db", "binlog", value={"every": "30s"}),
        [("services.db.binlog.every", "does not match")],
        id="binlog-every-seconds",
    ),
    pytest.param(
        _set("services", "db", "binlog", value={"drill_target": "middle"}),
        [("services.db.binlog.drill_target", "is not one of")],
        id="binlog-drill-target",
    ),
    pytest.param(
        _set("services", "db", "binlog", value={"heartbeat": {"table": "heartbeat"}}),
        [("services.db.binlog.heartbeat.table", "does not match")],
        id="heartbeat-without-database",
    ),
    pytest.param(
        _set("services", "docs", value=files_service(binlog={})),
        [("services.docs.binlog", "only allowed for type mysql")],
        id="binlog-on-files",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), ERROR_CASES)
def test_problem(mutate: Mutation, expected: Problems) -> None:
    """Each mistake is reported once, at its path, with a helpful message."""
    data = base()
    mutate(data)
    assert_problems(problems_of(data), expected)


@pytest.mark.parametrize("data", [None, [], "version: 1"], ids=["empty", "list", "string"])
def test_top_level_must_be_a_mapping(data: Any) -> None:
    """An empty file or a non-mapping document is refused, not crashed on."""
    problems = problems_of(data)
    assert len(problems) == 1
    assert problems[0][0] == "(top)"
    assert "must be a mapping" in problems[0][1]


def test_every_problem_at_once() -> None:
    """Schema and cross-field problems in many places are all reported together."""
    data = base()
    data["extra"] = 1
    data["timezone"] = "Mars/Olympus"
    del data["repository"]["host"]
    data["repository"]["password"] = "hunter2"
    db = data["services"]["db"]
    db["schedule"] = "0 0 30 2 *"
    db["rpo"] = "1y"
    db["grafana"] = {}
    data["retention"]["max_age"] = "1w"
    data["services"]["docs"] = files_service(
        files={"paths": ["relative"]}, rto={"target": "3h", "limit": "2h"}
    )
    data["drill"] = {"schedule": "0 6 * * 1", "timezone": "Nowhere"}
    with pytest.raises(ManifestError) as caught:
        manifest.parse(data, "test.yaml")
    error = caught.value
    expected = [
        ("(top)", "'extra' was unexpected"),
        ("repository", "'password' was unexpected"),
        ("repository.host", "is required"),
        ("services.db.rpo", "'1y' is not a duration"),
        ("services.docs.files.paths.0", "'relative' does not match"),
        ("timezone", "unknown time zone 'Mars/Olympus'"),
        ("retention.max_age", "1w is shorter than keep_within 3w"),
        ("services.db.grafana", "only allowed for type grafana"),
        ("services.db.schedule", "'0 0 30 2 *' is not a cron expression"),
        ("services.docs.rto.target", "is above rto.limit"),
        ("drill.timezone", "unknown time zone 'Nowhere'"),
    ]
    assert_problems(error.problems, expected)
    assert error.exit_code == EXIT_USAGE == 2
    lines = str(error).splitlines()
    assert lines[0] == f"test.yaml: {len(expected)} problem(s)"
    assert lines[1:] == [f"  {path}: {message}" for path, message in error.problems]


def test_grafana_mapping_schedule_is_one_clear_problem() -> None:
    """A mapping schedule for grafana is reported only as 'must be a string'."""
    data = base()
    data["services"]["dash"] = {
        "type": "grafana",
        "schedule": {"full": "0 2 * * *"},
        "rpo": "1d",
        "rto": dict(RTO),
        "grafana": {},
    }
    assert_problems(problems_of(data), [("services.dash.schedule", "must be a string")])


def test_load_missing_file(tmp_path: Path) -> None:
    """A missing file is a ManifestError at '(file)'."""
    path = tmp_path / "absent.yaml"
    with pytest.raises(ManifestError) as caught:
        manifest.load(path)
    assert caught.value.source == str(path)
    assert caught.value.problems == [("(file)", "No such file or directory")]


def test_load_yaml_syntax_error(tmp_path: Path) -> None:
    """Broken YAML is a ManifestError at '(yaml)', on one line."""
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nservices: [unclosed\n")
    with pytest.raises(ManifestError) as caught:
        manifest.load(path)
    ((where, message),) = caught.value.problems
    assert where == "(yaml)"
    assert "\n" not in message
    assert "line" in message


# --- warnings ------------------------------------------------------------------------------


def test_warning_gap_longer_than_rpo() -> None:
    """A weekly dump with a daily rpo is legal, but warned about."""
    data = base()
    data["services"]["db"]["schedule"] = "0 22 * * 1"
    loaded = manifest.parse(data)
    assert loaded.warnings == (
        "services.db: runs can be 1w apart, longer than rpo 1d; "
        "the freshness alert will fire between runs",
    )


def test_warning_gap_not_below_keep_within() -> None:
    """A gap of keep_within or more leaves only the newest snapshot at times."""
    data = base()
    data["services"]["db"]["rpo"] = "3w"
    data["services"]["db"]["schedule"] = "0 22 1,15 * *"
    data["retention"] = {"keep_within": "2w", "max_age": "31d"}
    (warning,) = manifest.parse(data).warnings
    assert warning.startswith("services.db: runs can be 17d apart, not less than retention")
    assert "keep_within 2w" in warning


def test_warning_gap_equal_to_keep_within() -> None:
    """The boundary counts: a weekly run with keep_within 1w is warned about, rpo 1w is not."""
    data = base()
    data["services"]["db"]["rpo"] = "1w"
    data["services"]["db"]["schedule"] = "0 22 * * 1"
    data["retention"] = {"keep_within": "1w", "max_age": "31d"}
    (warning,) = manifest.parse(data).warnings
    assert warning.startswith("services.db: runs can be 1w apart, not less than retention")


# --- durations and gaps --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("3w", timedelta(weeks=3)),
        ("31d", timedelta(days=31)),
        ("90m", timedelta(hours=1, minutes=30)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    """Number and unit become a timedelta."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["0m", "1y", "1.5h", "", "d", " 1d", "1d ", "01d", "1D", "-1d"])
def test_parse_duration_rejects(text: str) -> None:
    """Anything but a positive integer and one of s, m, h, d, w is a ValueError."""
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(days=1), "1d"),
        (timedelta(weeks=3), "3w"),
        (timedelta(days=14), "2w"),
        (timedelta(days=31), "31d"),
        (timedelta(hours=25), "25h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=61), "61s"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration(value: timedelta, expected: str) -> None:
    """The shortest exact form."""
    assert format_duration(value) == expected


@pytest.mark.parametrize("text", ["45s", "30m", "2h", "1d", "3w", "31d", "120m", "48h"])
def test_duration_round_trip(text: str) -> None:
    """Formatting a parsed duration gives back the same length of time."""
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


START = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("crons", "expected"),
    [
        (["0 22 * * *"], timedelta(days=1)),
        (["0 2 28 * *"], timedelta(days=31)),
        (["0 0 * * 1-6", "0 0 * * 0"], timedelta(days=1)),
        (["0 0 1 1 *"], timedelta(days=366)),  # fewer than two runs: the horizon
    ],
)
def test_longest_gap_utc(crons: list[str], expected: timedelta) -> None:
    """Longest time between consecutive runs of all schedules together, in UTC."""
    schedules = tuple(Schedule(cron, UTC_ZONE) for cron in crons)
    assert longest_gap(schedules, START) == expected


def test_longest_gap_counts_real_time_across_dst() -> None:
    """Daily 02:00 in Helsinki: the night DST ends (2026-10-25) the gap is 25 hours."""
    schedule = Schedule("0 2 * * *", HELSINKI)
    assert longest_gap((schedule,), datetime(2026, 10, 1, tzinfo=HELSINKI)) == timedelta(hours=25)


def test_longest_gap_hourly_incremental_weekly_full() -> None:
    """Hourly Mon-Sat plus Sunday midnight never leaves more than a day between runs."""
    schedules = (
        Schedule("0 * * * 1-6", UTC_ZONE),
        Schedule("0 0 * * 0", UTC_ZONE),
    )
    assert longest_gap(schedules, START) == timedelta(days=1)


def test_leap_day_schedule_is_warned_about_not_crashed_on() -> None:
    """'0 0 29 2 *' is legal cron (every four years); parse warns about the gap."""
    data = base()
    data["services"]["db"]["schedule"] = "0 0 29 2 *"
    loaded = manifest.parse(data, "test.yaml")
    assert any(w.startswith("services.db: runs can be") for w in loaded.warnings)


def test_environment_variables_are_expanded_with_defaults() -> None:
    """``${NAME}`` and ``${NAME:-default}`` work as in compose files, in values."""
    data = {"a": "${IMAGE:-mysql:8.4}", "b": ["${NET}"], "c": "x-${UNSET:-y}", "d": "${EMPTY}"}
    env = {"NET": "backup-net", "IMAGE": "local/mariadb:11.8", "EMPTY": ""}
    assert manifest.expand_env(data, env) == (
        {"a": "local/mariadb:11.8", "b": ["backup-net"], "c": "x-y", "d": ""},
        [],
    )


def test_an_unset_variable_without_default_is_a_problem_naming_the_key() -> None:
    data = base()
    data["services"]["db"]["mysql"]["host"] = "${DB_HOST}"
    problems = problems_of(data)
    assert problems == [("services.db.mysql.host", "environment variable DB_HOST is not set")]


def test_a_value_cannot_add_structure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable holding YAML (a newline and a key) stays one string value, and that
    value is refused for its line break: no socket, no work_dir problem appears."""
    monkeypatch.setenv("DB_HOST", "mysql\n  socket: /tmp/evil.sock\nwork_dir: /")
    data = base()
    data["services"]["db"]["mysql"]["host"] = "${DB_HOST}"
    assert problems_of(data) == [
        ("services.db.mysql.host", "contains a line break (U+000A) at character 6")
    ]


def test_a_number_from_the_environment_is_a_number() -> None:
    data = base()
    data["services"]["db"]["mysql"]["port"] = "${DB_PORT:-3307}"
    options = manifest.parse(data).service("db").options
    assert isinstance(options, MysqlOptions)
    assert options.port == 3307


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("kind", "type", ("services", "db")),
        ("verification", "drill", ()),
        ("forget_schedule", "retention_schedule", ("maintenance",)),
    ],
)
def test_old_names_are_read_and_reported_as_deprecated(
    old: str, new: str, where: tuple[str, ...]
) -> None:
    data = base()
    values = {
        "kind": "mysql",
        "verification": {"schedule": "0 6 * * 1"},
        "forget_schedule": "0 3 * * *",
    }
    data.setdefault("maintenance", {})
    target = data
    for key in where:
        target = target[key]
    target.pop(new, None)
    target[old] = values[old]
    loaded = manifest.parse(data, "test.yaml")
    path = ".".join((*where, old))
    assert f"{path}: deprecated, write '{new}' instead" in loaded.warnings
    if old == "verification":
        assert loaded.drill is not None and loaded.drill.schedule.cron == "0 6 * * 1"
    if old == "forget_schedule":
        assert loaded.maintenance.retention.cron == "0 3 * * *"


def test_an_old_name_beside_its_new_one_is_a_problem() -> None:
    data = base()
    data["services"]["db"]["kind"] = "mysql"
    assert problems_of(data) == [
        ("services.db.kind", "deprecated name of type; remove one of the two")
    ]


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (datetime(2026, 12, 1, 10, 0, tzinfo=UTC), "incremental"),  # a Tuesday
        (datetime(2026, 12, 6, 10, 0, tzinfo=UTC), "full"),  # a Sunday
        (datetime(2026, 12, 6, 23, 59, tzinfo=UTC), "full"),  # late on Sunday
        (datetime(2026, 12, 7, 0, 30, tzinfo=UTC), "incremental"),  # Monday just after
    ],
)
@pytest.mark.parametrize("order", ["incremental first", "full first"])
def test_an_unscheduled_backup_makes_the_kind_scheduled_that_day(
    day: datetime, expected: str, order: str
) -> None:
    """`backup files` on a Tuesday is incremental, on a Sunday full: whatever the order of
    the schedule's keys in the YAML."""
    schedule = {"incremental": "0 0 * * 1-6", "full": "0 0 * * 0"}
    if order == "full first":
        schedule = dict(reversed(list(schedule.items())))
    data = base()
    data["services"]["docs"] = files_service(schedule=schedule)
    assert manifest.parse(data).service("docs").kind_for(day) == expected


def test_a_day_without_a_run_takes_the_kind_of_the_latest_run() -> None:
    """Full on the 1st, incremental on the 15th: on the 20th the latest run was incremental."""
    data = base()
    data["services"]["docs"] = files_service(
        schedule={"incremental": "0 3 15 * *", "full": "0 3 1 * *"}
    )
    docs = manifest.parse(data).service("docs")
    assert docs.kind_for(datetime(2026, 12, 20, tzinfo=UTC)) == "incremental"
    assert docs.kind_for(datetime(2026, 12, 10, tzinfo=UTC)) == "full"
    assert manifest.parse(base()).service("db").kind_for(datetime(2026, 12, 1, tzinfo=UTC)) == (
        "full"
    )


def per_service(**repository: Any) -> Data:
    data = base()
    data["services"]["docs"] = files_service()
    data["repository"].update(
        url="rest:https://backup:8000/{service}",
        password_file="/run/secrets/restic_password_{service}",
        credentials_file="/run/secrets/rest_{service}",
        cacert="/run/secrets/ca.crt",
        **repository,
    )
    data["drill"] = {
        "schedule": "0 6 * * 1",
        "repository_url": "rest:https://backup:8001/{service}",
    }
    data["maintenance"] = {"repository_url": "/srv/restic/{service}"}
    return data


def test_each_service_has_its_own_repository_password_and_credentials() -> None:
    loaded = manifest.parse(per_service())
    db, docs = loaded.repository_for("db"), loaded.repository_for("docs")
    assert (db.url, db.password_file, db.credentials_file) == (
        "rest:https://backup:8000/db",
        "/run/secrets/restic_password_db",
        "/run/secrets/rest_db",
    )
    assert docs.url == "rest:https://backup:8000/docs" and db.cacert == "/run/secrets/ca.crt"
    assert [names for _, names in loaded.repositories().values()] == [("db",), ("docs",)]


def test_each_role_reaches_the_repositories_its_own_way() -> None:
    loaded = manifest.parse(per_service())
    verifier = loaded.for_role("verifier").repository_for("db")
    assert verifier.url == "rest:https://backup:8001/db"
    assert verifier.credentials_file == "/run/secrets/rest_db"
    direct = loaded.for_role("maintenance").repository_for("db")
    assert (direct.url, direct.credentials_file) == ("/srv/restic/db", None)


def test_a_shared_repository_serves_every_service_once() -> None:
    data = base()
    data["services"]["docs"] = files_service()
    loaded = manifest.parse(data)
    ((repo, names),) = loaded.repositories().values()
    assert repo == loaded.repository and names == ("db", "docs")


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (
            {"drill": {"schedule": "0 6 * * 1", "repository_url": "rest:https://b:8001/all"}},
            "drill.repository_url",
        ),
        ({"maintenance": {"repository_url": "/srv/restic/all"}}, "maintenance.repository_url"),
    ],
)
def test_every_repository_url_agrees_on_one_repository_per_service(change: Data, path: str) -> None:
    data = per_service()
    data.update(change)
    assert problems_of(data) == [(path, "repository.url has {service}; this URL must agree")]


def test_a_per_service_password_needs_per_service_repositories() -> None:
    data = base()
    data["repository"]["password_file"] = "/run/secrets/restic_password_{service}"
    ((path, message),) = problems_of(data)
    assert path == "repository.password_file" and "share its password" in message


@pytest.mark.parametrize(
    ("every", "cron"),
    [("1m", "* * * * *"), ("5m", "*/5 * * * *"), ("60m", "0 * * * *"), ("6h", "0 */6 * * *")],
)
def test_binlog_shipping_becomes_a_cron_schedule(every: str, cron: str) -> None:
    data = base()
    data["services"]["db"]["binlog"] = {"every": every}
    binlog = manifest.parse(data).services["db"].binlog
    assert binlog is not None and binlog.schedule.cron == cron
    assert binlog.rpo == manifest.parse_duration(every)  # the default RPO: the interval


@pytest.mark.parametrize("method", ["logical", "physical", "both"])
def test_the_mysql_method_is_read_and_defaults_to_logical(method: str) -> None:
    assert mysql_options(manifest.parse(base())).method == "logical"
    data = base()
    data["services"]["db"]["mysql"]["method"] = method
    assert mysql_options(manifest.parse(data)).method == method


def test_an_unknown_mysql_method_is_reported_with_its_path() -> None:
    data = base()
    data["services"]["db"]["mysql"]["method"] = "snapshot"
    ((path, _),) = problems_of(data)
    assert path == "services.db.mysql.method"


def test_binlog_with_a_physical_method_alone_is_refused() -> None:
    data = base()
    data["services"]["db"]["binlog"] = {}
    data["services"]["db"]["mysql"]["method"] = "physical"
    ((path, message),) = problems_of(data)
    assert path == "services.db.binlog" and "needs a dump to replay binlogs on" in message
    data["services"]["db"]["mysql"]["method"] = "both"
    assert manifest.parse(data).services["db"].binlog is not None


def mysql_options(loaded: Manifest) -> manifest.MysqlOptions:
    options = loaded.services["db"].options
    assert isinstance(options, manifest.MysqlOptions)
    return options


def test_binlog_defaults_rpo_and_heartbeat_are_read() -> None:
    data = base()
    data["services"]["db"]["binlog"] = {}
    default = manifest.parse(data).services["db"].binlog
    assert default is not None
    assert (default.every, default.rpo, default.drill_target) == (
        timedelta(minutes=5),
        timedelta(minutes=5),
        "end",
    )
    assert default.heartbeat is None and manifest.parse(base()).services["db"].binlog is None
    data["services"]["db"]["binlog"] = {
        "rpo": "10m",
        "drill_target": "random",
        "heartbeat": {"table": "agama.backup_heartbeat", "every": "30s"},
    }
    read = manifest.parse(data).services["db"].binlog
    assert read is not None and read.rpo == timedelta(minutes=10)
    assert read.drill_target == "random" and read.heartbeat is not None
    assert (read.heartbeat.table, read.heartbeat.every) == (
        "agama.backup_heartbeat",
        timedelta(seconds=30),
    )


@pytest.mark.parametrize(
    ("section", "key", "value", "path"),
    [
        ("agent", "state_dir", "/", "agent.state_dir"),
        ("agent", "state_dir", "state", "agent.state_dir"),
        ("drill", "report_file", "/etc/passwd", "drill.report_file"),
        ("drill", "report_file", "report.json", "drill.report_file"),
    ],
)
def test_files_the_agent_replaces_are_in_directories_of_its_own(
    section: str, key: str, value: str, path: str
) -> None:
    data = base()
    data.setdefault(section, {"schedule": "0 6 * * 1"} if section == "drill" else {})[key] = value
    ((where, _),) = problems_of(data)
    assert where == path


# --- repository.size_limit and monitoring ----------------------------------------------


@pytest.mark.parametrize(
    ("given", "size"),
    [(536870912000, 536870912000), ("500GiB", 500 * 2**30), ("2TB", 2 * 10**12), ("7B", 7)],
)
def test_size_limit_is_read_in_bytes(given: int | str, size: int) -> None:
    data = base()
    data["repository"]["size_limit"] = given
    assert manifest.parse(data).size_limit == size


@pytest.mark.parametrize("given", ["500 GiB", "500gb", "0GiB", 0, "1.5TB", "lots"])
def test_a_size_limit_that_is_not_a_size_is_refused(given: int | str) -> None:
    data = base()
    data["repository"]["size_limit"] = given
    (problem,) = problems_of(data)
    assert problem[0] == "repository.size_limit"


def test_monitoring_is_optional_and_read() -> None:
    assert manifest.parse(base()).monitoring.prometheus_url is None
    assert manifest.parse(base()).size_limit is None
    data = base()
    data["monitoring"] = {"prometheus_url": "https://monitoring.example.net:9090"}
    assert manifest.parse(data).monitoring.prometheus_url == "https://monitoring.example.net:9090"


@pytest.mark.parametrize(
    ("monitoring", "path"),
    [
        ({"prometheus_url": "prometheus:9090"}, "monitoring.prometheus_url"),
        ({"prometheus": "http://p:9090"}, "monitoring"),
    ],
)
def test_bad_monitoring_is_refused(monitoring: Data, path: str) -> None:
    data = base()
    data["monitoring"] = monitoring
    (problem,) = problems_of(data)
    assert problem[0] == path


# --- S3 repositories, each role with its own key pair, and the second copy ---------------


def on_s3() -> Data:
    """Per-service buckets on S3: agents, verifier and maintenance with their own key pairs,
    and a copy to a second S3 store."""
    data = base()
    data["services"]["docs"] = files_service()
    data["repository"].update(
        url="s3:https://s3.example.net/agama-{service}",
        credentials_file="/run/secrets/s3_{service}_agent",
        s3={"region": "eu-central-1", "path_style": True},
    )
    data["drill"] = {"schedule": "0 6 * * 1", "credentials_file": "/run/secrets/s3_verifier"}
    data["maintenance"] = {
        "credentials_file": "/run/secrets/s3_maintenance",
        "copy": {
            "url": "rest:https://offsite:8000/{service}",
            "credentials_file": "/run/secrets/rest_copy",
            "schedule": "0 7 * * *",
            "max_age": "3d",
        },
    }
    return data


def test_every_role_opens_the_s3_repositories_with_its_own_key_pair() -> None:
    loaded = manifest.parse(on_s3())
    agent = loaded.repository_for("db")
    assert (agent.url, agent.credentials_file) == (
        "s3:https://s3.example.net/agama-db",
        "/run/secrets/s3_db_agent",
    )
    assert (agent.s3_region, agent.s3_path_style) == ("eu-central-1", True)
    verifier = loaded.for_role("verifier").repository_for("db")
    assert verifier.credentials_file == "/run/secrets/s3_verifier"
    maintenance = loaded.for_role("maintenance").repository_for("docs")
    assert (maintenance.url, maintenance.credentials_file) == (
        "s3:https://s3.example.net/agama-docs",
        "/run/secrets/s3_maintenance",
    )
    assert maintenance.s3_region == "eu-central-1"


def test_the_copy_of_each_repository_goes_to_its_own_destination() -> None:
    loaded = manifest.parse(on_s3())
    copy = loaded.maintenance.copy
    assert copy is not None and copy.max_age == timedelta(days=3)
    assert copy.schedule.cron == "0 7 * * *"
    pairs = [(source.url, target.url, names) for source, target, names in loaded.copies()]
    assert pairs == [
        ("s3:https://s3.example.net/agama-db", "rest:https://offsite:8000/db", ("db",)),
        ("s3:https://s3.example.net/agama-docs", "rest:https://offsite:8000/docs", ("docs",)),
    ]
    source, target, _ = loaded.copies()[0]
    assert source.credentials_file == "/run/secrets/s3_maintenance"  # whoever runs it
    assert target.credentials_file == "/run/secrets/rest_copy"
    assert target.password_file == "/run/secrets/restic_password"  # default: the repository's
    assert (target.s3_region, target.host) == (None, "agama")
    assert manifest.parse(base()).copies() == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["repository"].pop("credentials_file"),
            [("repository.credentials_file", "required for an s3: URL")],
        ),
        (
            lambda d: d["maintenance"].pop("credentials_file"),
            [("maintenance.credentials_file", "retention deletes")],
        ),
        (
            lambda d: d["maintenance"]["copy"].update(url="s3:https://copy.example/c-{service}"),
            [("maintenance.copy.credentials_file", "one set of s3 credentials"),
             ("maintenance.copy.s3", "must equal repository.s3")],
        ),
        (
            lambda d: d["maintenance"]["copy"].update(url="rest:https://offsite:8000/all"),
            [("maintenance.copy.url", "repository.url has {service}; this URL must agree")],
        ),
        (
            lambda d: d["maintenance"]["copy"].update(s3={"region": "x"}),
            [("maintenance.copy.s3", "only for an s3: url")],
        ),
        (
            lambda d: d["maintenance"]["copy"].pop("schedule"),
            [("maintenance.copy.schedule", "is required")],
        ),
        (
            lambda d: d["services"].update(my_db=d["services"].pop("db")),
            [("repository.url", "'agama-my_db' is not an S3 bucket name")],
        ),
    ],
)  # fmt: skip
def test_s3_manifests_that_are_refused(change: Any, expected: Problems) -> None:
    data = on_s3()
    change(data)
    assert_problems(problems_of(data), expected)


def test_s3_options_need_an_s3_url() -> None:
    data = base()
    data["repository"]["s3"] = {"path_style": True}
    assert problems_of(data) == [("repository.s3", "only for s3: repository URLs")]


def test_an_s3_copy_of_a_local_repository_needs_its_key_pair() -> None:
    data = base()
    data["maintenance"] = {"copy": {"url": "s3:https://s3.example/agama", "schedule": "0 7 * * *"}}
    assert_problems(problems_of(data), [("maintenance.copy.credentials_file", "required")])
    data["maintenance"]["copy"]["credentials_file"] = "/run/secrets/s3_copy"
    assert manifest.parse(data).copies()[0][1].credentials_file == "/run/secrets/s3_copy"


def test_a_verifier_with_the_agents_key_pair_is_warned_about() -> None:
    data = on_s3()
    del data["drill"]["credentials_file"]
    (warning,) = [w for w in manifest.parse(data).warnings if w.startswith("drill.")]
    assert "uses the agents' S3 key pair" in warning
    assert not [w for w in manifest.parse(on_s3()).warnings if w.startswith("drill.")]


def test_the_compose_stores_differ_from_compose_yaml_only_where_the_repositories_are() -> None:
    """manifests/compose-s3.yaml (BACKUP_STORE=s3) and compose-s3-copy.yaml (rest+s3) are
    the stack's policy with the repositories elsewhere: nothing else may drift."""
    root = Path(__file__).resolve().parents[2] / "manifests"

    def read(name: str) -> Data:
        data: Data = yaml.safe_load((root / name).read_text())
        return data

    rest, s3, copy = read("compose.yaml"), read("compose-s3.yaml"), read("compose-s3-copy.yaml")
    for variant in (s3, copy):
        assert {
            k: v for k, v in variant.items() if k not in ("repository", "drill", "maintenance")
        } == {k: v for k, v in rest.items() if k not in ("repository", "drill", "maintenance")}
    # The verifier reaches the buckets with its own key pair, not rest-server's endpoint.
    drill = {k: v for k, v in s3["drill"].items() if k != "credentials_file"}
    assert drill == {k: v for k, v in rest["drill"].items() if k != "repository_url"}
    assert copy["drill"] == rest["drill"]
    assert copy["repository"] == rest["repository"]
    assert {k: v for k, v in copy["maintenance"].items() if k != "copy"} == rest["maintenance"]
    loaded = manifest.load(root / "compose-s3.yaml")
    assert loaded.repository_for("mysql").url == "s3:http://s3:7480/agama-mysql"
    assert loaded.for_role("maintenance").repository_for("files").credentials_file == (
        "/run/secrets/s3_maintenance"
    )
    assert [
        target.url for _, target, _ in manifest.load(root / "compose-s3-copy.yaml").copies()
    ] == [f"s3:http://s3:7480/agama-copy-{name}" for name in ("mysql", "grafana", "files")]


def test_the_s3_stack_scrapes_the_store_where_the_rest_stack_scrapes_rest_server() -> None:
    """BACKUP_STORE=s3 runs no rest-server: its Prometheus scrapes the S3 store as the
    backup-server job (else BackupServerDown or BackupComponentAbsent would fire for ever),
    and everything else alike."""
    root = Path(__file__).resolve().parents[2] / "compose"
    rest = yaml.safe_load((root / "prometheus" / "prometheus.yml").read_text())
    s3 = yaml.safe_load((root / "prometheus" / "prometheus-s3.yml").read_text())
    for job in rest["scrape_configs"]:
        if job["job_name"] == "backup-server":  # the stand-in's s3-metrics: plain HTTP
            job["static_configs"] = [{"targets": ["s3:9283"]}]
            del job["scheme"], job["tls_config"]
    assert s3 == rest

    class ComposeLoader(yaml.SafeLoader):
        """YAML with Compose's ``!override`` (replace instead of merge)."""

    def mapping(loader: ComposeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        return loader.construct_mapping(node)

    ComposeLoader.add_constructor("!override", mapping)
    override = yaml.load((root / "s3.yml").read_text(), ComposeLoader)  # noqa: S506
    assert override["configs"]["prometheus"]["file"] == "./prometheus/prometheus-s3.yml"
    assert override["services"]["backup-server"]["profiles"] == ["rest-server"]
    assert list(override["services"]["repository-init"]["depends_on"]) == ["s3-setup"]
