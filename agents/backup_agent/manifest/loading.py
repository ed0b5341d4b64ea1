"""Read a manifest: YAML -> deprecated keys -> environment references -> JSON Schema.

Every problem is collected with its path (``services.mysql.schedule``) and raised at
once as one ``ManifestError``; the cross-field checks and the dataclasses are built
by ``manifest.checks``.

A manifest is input an attacker may shape (an environment variable, a copied file),
so reading it is bounded: aliases are expanded at most ``MAX_NODES`` nodes deep (an
"alias bomb" is refused, not walked), and ``${NAME}`` references are replaced after
parsing, inside scalar values only, so that no value can add keys or structure.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

import jsonschema
import yaml

from backup_agent.errors import ManifestError
from backup_agent.manifest.checks import build
from backup_agent.manifest.model import Manifest

Problems = list[tuple[str, str]]

# Old keys still read, with the key that replaced them (reported by ``validate``).
RENAMED_TOP = {"verification": "drill"}
RENAMED_SERVICE = {"kind": "type"}
RENAMED_MAINTENANCE = {"forget_schedule": "retention_schedule"}
MAX_NODES = 100_000  # YAML nodes after alias expansion; a real manifest has hundreds
MAX_BYTES = 1 << 20


@cache
def schema(name: str = "manifest") -> dict[str, Any]:
    """A published JSON Schema (agents/backup_agent/schema/NAME.schema.json): the
    manifest's, or the inventory's."""
    text = resources.files("backup_agent").joinpath(f"schema/{name}.schema.json").read_text()
    result: dict[str, Any] = json.loads(text)
    return result


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Manifest:
    """Read and validate a manifest file; raises ``ManifestError`` listing every problem."""
    return parse(read_document(path), str(path), environ)


def read_document(path: str | Path) -> Any:
    """The YAML document of a file, read within ``MAX_BYTES`` and ``MAX_NODES``."""
    source = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(MAX_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ManifestError(source, [("(file)", reason or str(exc))]) from exc
    if len(text) > MAX_BYTES:
        raise ManifestError(source, [("(file)", f"larger than {MAX_BYTES} bytes")])
    return read_yaml(text, source)


def read_yaml(text: str, source: str) -> Any:
    """Parse YAML safely, refusing documents that expand into too many nodes."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None and _count_nodes(node, MAX_NODES) > MAX_NODES:
            raise ManifestError(
                source, [("(yaml)", f"expands to more than {MAX_NODES} nodes (aliases?)")]
            )
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(source, [("(yaml)", " ".join(str(exc).split()))]) from exc
    except RecursionError as exc:
        raise ManifestError(source, [("(yaml)", "nested too deeply")]) from exc


def _count_nodes(root: yaml.Node, limit: int) -> int:
    """Nodes of the document as loading would expand them (aliases counted each time)."""
    count = 0
    stack: list[yaml.Node] = [root]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += [key, value]
    return count


def parse(
    data: Any, source: str = "<manifest>", environ: Mapping[str, str] | None = None
) -> Manifest:
    """Validate already-loaded YAML data and build the ``Manifest``.

    Schema problems and cross-field problems are reported together; a section with
    a schema problem is not checked further, so each mistake is reported once.
    """
    if not isinstance(data, dict):
        found = "empty" if data is None else f"a {type(data).__name__}"
        raise ManifestError(source, [("(top)", f"must be a mapping, the manifest is {found}")])
    data, warnings, problems = upgrade(data)
    data, unset = expand_env(data, os.environ if environ is None else environ)
    problems += unset
    problems += schema_problems(data)
    manifest, checked, more_warnings = build(data, source, skip={p for p, _ in problems})
    problems += checked
    if problems or manifest is None:
        raise ManifestError(source, problems or [("(top)", "the manifest is empty")])
    return replace(manifest, warnings=tuple(warnings + more_warnings))


def upgrade(data: dict[str, Any]) -> tuple[dict[str, Any], list[str], Problems]:
    """Rename deprecated keys to their replacements; say so for each, and refuse a
    mapping that has both the old and the new key."""
    warnings: list[str] = []
    problems: Problems = []

    def rename(mapping: Any, renamed: Mapping[str, str], path: str) -> Any:
        if not isinstance(mapping, dict):
            return mapping
        result = dict(mapping)
        for old, new in renamed.items():
            if old not in result:
                continue
            where = f"{path}{old}"
            if new in result:
                problems.append((where, f"deprecated name of {new}; remove one of the two"))
                del result[old]
                continue
            warnings.append(f"{where}: deprecated, write '{new}' instead")
            result[new] = result.pop(old)
        return result

    data = rename(data, RENAMED_TOP, "")
    if isinstance(data.get("services"), dict):
        data["services"] = {
            name: rename(spec, RENAMED_SERVICE, f"services.{name}.")
            for name, spec in data["services"].items()
        }
    data["maintenance"] = rename(data.get("maintenance"), RENAMED_MAINTENANCE, "maintenance.")
    if data["maintenance"] is None:
        del data["maintenance"]
    return data, warnings, problems


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(data: Any, environ: Mapping[str, str], path: str = "") -> tuple[Any, Problems]:
    """Replace ``${NAME}`` and ``${NAME:-default}`` (as in compose files) in string
    values, after parsing: a value cannot add keys or structure whatever it holds. A
    name that is unset (or empty) without a default is a problem naming the key."""
    problems: Problems = []

    def value(text: str, where: str) -> str | int:
        def one(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = environ.get(name)
            if found or (found is not None and default is None):
                return found
            if default is not None:
                return default
            problems.append((where, f"environment variable {name} is not set"))
            return ""

        result = _ENV.sub(one, text)
        # A value that is one reference to a number is a number (``port: ${PORT}``).
        if result != text and _ENV.fullmatch(text) and re.fullmatch(r"[0-9]{1,9}", result):
            return int(result)
        return result

    def walk(node: Any, where: str) -> Any:
        if isinstance(node, str):
            return value(node, where or "(top)")
        if isinstance(node, list):
            return [walk(item, f"{where}.{index}") for index, item in enumerate(node)]
        if isinstance(node, dict):
            prefix = f"{where}." if where else ""
            return {key: walk(item, f"{prefix}{key}") for key, item in node.items()}
        return node

    return walk(data, path), problems


def schema_problems(data: Any, name: str = "manifest") -> Problems:
    """Every violation of schema ``name`` as (dotted path, message), in document order."""
    validator = jsonschema.Draft202012Validator(schema(name))
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


def _describe(error: jsonschema.ValidationError) -> Problems:
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
        return [(path, f"must be {expected}, not {_short(error.instance)}")]
    if error.validator == "pattern" and "[smhdw]" in str(error.validator_value):
        return [(path, f"{_short(error.instance)} is not a duration like 30m, 2h, 1d or 3w")]
    message = " ".join(error.message.split())
    if error.validator == "additionalProperties":
        message = message.replace("Additional properties are not allowed", "unknown key(s)")
    return [(path, _clip(message))]


def _short(value: Any) -> str:
    """A value quoted for a message, clipped: hostile values can be huge."""
    return _clip(repr(value))


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
