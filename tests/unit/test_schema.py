"""The published JSON Schema: valid Draft 2020-12, documented, and matching the manifests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from backup_agent import manifest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "agents" / "backup_agent" / "schema" / "manifest.schema.json"
MANIFESTS = sorted((ROOT / "manifests").glob("*.yaml"))


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
