"""The published JSON Schema: valid Draft 2020-12, documented, and matching the manifests."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from backup_agent import manifest
from backup_agent.manifest import model
from backup_agent.manifest.model import parse_duration

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "agents" / "backup_agent" / "schema" / "manifest.schema.json"
# manifests/inventory.yaml is the reference inventory (tests/unit/test_inventory.py).
MANIFESTS = sorted(p for p in (ROOT / "manifests").glob("*.yaml") if p.name != "inventory.yaml")


def load_schema() -> dict[str, Any]:
    """The schema file, read from disk (not through the module's cache)."""
    result: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return result


def resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` such as ``#/$defs/mysql``."""
    ref = node.get("$ref")
    if ref is None:
        return node
    assert isinstance(ref, str) and ref.startswith("#/"), ref
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    assert isinstance(target, dict)
    return target


def declared_properties(
    root: dict[str, Any], node: Any, path: str = "#"
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property declaration: under ``properties`` of any schema, including the
    ``then`` branches of ``allOf`` conditions (kind-specific schedule shapes)."""
    if not isinstance(node, dict):
        return
    for name, sub in (node.get("properties") or {}).items():
        where = f"{path}/properties/{name}"
        yield where, sub
        yield from declared_properties(root, sub, where)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from declared_properties(root, node[key], f"{path}/{key}")
    for index, sub in enumerate(node.get("oneOf") or ()):
        yield from declared_properties(root, sub, f"{path}/oneOf/{index}")
    for index, sub in enumerate(node.get("allOf") or ()):
        yield from declared_properties(root, sub.get("then"), f"{path}/allOf/{index}/then")
    for name, sub in (node.get("$defs") or {}).items():
        yield from declared_properties(root, sub, f"{path}/$defs/{name}")


def test_schema_is_valid_draft_2020_12() -> None:
    """The schema itself passes the Draft 2020-12 meta-schema."""
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_module_serves_the_file() -> None:
    """manifest.schema() is exactly the file in the repository."""
    assert manifest.schema() == load_schema()


def test_walk_finds_the_nested_properties() -> None:
    """The walk reaches nested declarations (so the description check really covers them)."""
    found = {path for path, _ in declared_properties(load_schema(), load_schema())}
    assert "#/properties/repository/properties/host" in found
    assert "#/$defs/service/properties/rto/properties/limit" in found
    assert "#/$defs/service/allOf/4/then/properties/schedule/properties/incremental" in found
    assert "#/$defs/mysql/properties/defaults_file" in found
    assert "#/$defs/files/properties/paths" in found
    assert len(found) > 40


def test_every_property_has_a_description() -> None:
    """Editors show descriptions on hover: every property must have one (via $ref too)."""
    schema = load_schema()
    missing = [
        path
        for path, sub in declared_properties(schema, schema)
        if not str(resolve(schema, sub).get("description", "")).strip()
    ]
    assert missing == []


def test_examples_are_valid() -> None:
    """Each ``examples`` entry validates against the property it illustrates."""
    schema = load_schema()
    checked = 0
    for path, sub in declared_properties(schema, schema):
        target = resolve(schema, sub)
        for example in target.get("examples", ()):
            errors = list(jsonschema.Draft202012Validator(target).iter_errors(example))
            assert errors == [], (path, example)
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_shipped_manifests_validate(path: Path) -> None:
    """manifests/*.yaml satisfy the schema as published."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(load_schema()).validate(data)


def test_shipped_manifests_exist() -> None:
    """The parametrised test above really has manifests to check."""
    assert {p.name for p in MANIFESTS} >= {"agama.yaml", "minimal.yaml"}


def schema_defaults(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``default`` of the schema, by dotted path (``$defs.mysql.port``)."""
    if not isinstance(node, dict):
        return
    if "default" in node:
        yield path, node["default"]
    for name, sub in (node.get("properties") or {}).items():
        yield from schema_defaults(sub, f"{path}.{name}" if path else name)
    for name, sub in (node.get("$defs") or {}).items():
        yield from schema_defaults(sub, f"$defs.{name}")


def field_default(cls: type, name: str) -> Any:
    """The default a dataclass gives ``name``."""
    (found,) = [f for f in dataclasses.fields(cls) if f.name == name]
    return found.default


# Where each documented default lives in the code (manifest/model.py).
CODE_DEFAULTS: dict[str, Any] = {
    "timezone": model.DEFAULT_TIMEZONE,
    "work_dir": model.DEFAULT_WORK_DIR,
    "repository.clock_skew": field_default(model.Manifest, "clock_skew"),
    "drill.file_sample": field_default(model.Drill, "file_sample"),
    "drill.max_age": field_default(model.Drill, "max_age"),
    "drill.mysql.memory": field_default(model.DrillServer, "memory"),
    "drill.mysql.cpus": field_default(model.DrillServer, "cpus"),
    "drill.mysql.pids_limit": field_default(model.DrillServer, "pids_limit"),
    "drill.mysql.port": field_default(model.DrillServer, "port"),
    "agent.state_dir": field_default(model.Agent, "state_dir"),
    "agent.metrics_port": field_default(model.Agent, "metrics_port"),
    "agent.metrics_address": field_default(model.Agent, "metrics_address"),
    "maintenance.retention_schedule": model.DEFAULT_RETENTION_SCHEDULE,
    "maintenance.check_schedule": model.DEFAULT_CHECK_SCHEDULE,
    "maintenance.read_data_subsets": field_default(model.Maintenance, "read_data_subsets"),
    "maintenance.deadline": field_default(model.Maintenance, "deadline"),
    "maintenance.copy.max_age": field_default(model.Copy, "max_age"),
    "$defs.service.expected_duration": field_default(model.Service, "expected_duration"),
    "$defs.mysql.host": field_default(model.MysqlOptions, "host"),
    "$defs.mysql.port": field_default(model.MysqlOptions, "port"),
    "$defs.mysql.client": field_default(model.MysqlOptions, "client"),
    "$defs.mysql.allow_empty": field_default(model.MysqlOptions, "allow_empty"),
    "$defs.mysql.method": field_default(model.MysqlOptions, "method"),
    "$defs.binlog.every": field_default(model.Binlog, "every"),
    "$defs.binlog.drill_target": field_default(model.Binlog, "drill_target"),
    "$defs.heartbeat.every": field_default(model.Heartbeat, "every"),
    "$defs.files.allow_empty": field_default(model.FilesOptions, "allow_empty"),
    "$defs.grafana.data_dir": field_default(model.GrafanaOptions, "data_dir"),
    "$defs.grafana.config_file": field_default(model.GrafanaOptions, "config_file"),
    "$defs.grafana.provisioning_dir": field_default(model.GrafanaOptions, "provisioning_dir"),
}


def test_documented_defaults_are_the_code_defaults() -> None:
    """Defaults live in the dataclasses; the schema documents them. A default added to
    either side without the other, or changed on one side only, fails here."""
    documented = dict(schema_defaults(load_schema()))
    assert documented.keys() == CODE_DEFAULTS.keys()
    for path, value in documented.items():
        code = CODE_DEFAULTS[path]
        if isinstance(code, timedelta):
            value = parse_duration(value)
        assert value == code, f"{path}: schema says {value!r}, the code {code!r}"


def test_a_manifest_without_optional_keys_gets_the_code_defaults() -> None:
    """What the loader fills in is what the dataclasses say (no third copy)."""
    minimal = manifest.load(ROOT / "manifests" / "minimal.yaml")
    assert minimal.agent == model.Agent()
    assert minimal.work_dir == model.DEFAULT_WORK_DIR
    assert minimal.maintenance.retention.cron == model.DEFAULT_RETENTION_SCHEDULE
    assert minimal.maintenance.check.cron == model.DEFAULT_CHECK_SCHEDULE
    assert minimal.maintenance.read_data_subsets == field_default(
        model.Maintenance, "read_data_subsets"
    )
    service = next(iter(minimal.services.values()))
    assert service.expected_duration == field_default(model.Service, "expected_duration")
