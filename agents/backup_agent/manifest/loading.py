"""Read a manifest: YAML -> deprecated keys -> environment references -> JSON Schema.

Every problem is collected with its path (``services.mysql.schedule``) and raised at
once as one ``ManifestError``; the cross-field checks and the dataclasses are built
by ``manifest.checks``.

A manifest is input an attacker may shape (an environment variable, a copied file),
so reading it is bounded and strict: at most ``MAX_BYTES`` of UTF-8 text, plain YAML
only (no tags that build objects), at most ``MAX_NODES`` nodes after alias expansion
(an "alias bomb" is refused, not walked) and ``MAX_DEPTH`` levels, no key written twice
in one mapping, and strings of printable text up to ``MAX_STRING`` characters.
``${NAME}`` references are replaced after parsing, inside string values only, so that
no value can add keys or structure. Every problem comes out as one line with its path,
whatever the input held (control characters are escaped, long values clipped).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

import jsonschema
import yaml

from backup_agent.errors import ManifestError
from backup_agent.manifest.checks import build
from backup_agent.manifest.model import Manifest, parse_duration

Problems = list[tuple[str, str]]

# Old keys still read, with the key that replaced them (reported by ``validate``).
RENAMED_TOP = {"verification": "drill"}
RENAMED_SERVICE = {"kind": "type"}
RENAMED_MAINTENANCE = {"forget_schedule": "retention_schedule"}
MAX_NODES = 100_000  # YAML nodes after alias expansion; a real manifest has hundreds
MAX_DEPTH = 32  # nesting levels; a real manifest has six
MAX_BYTES = 1 << 20
MAX_STRING = 4096  # characters in one value or key (PATH_MAX); also keeps ints far from
# Python's 4300-digit conversion limit
MULTILINE = frozenset({"sql"})  # keys whose values may hold line breaks and tabs
# Never in a value: C0/C1 controls and line separators (NUL ends a path, a line break
# forges a log line), bidirectional overrides (text shown in another order than it is
# read) and unpaired surrogates (not encodable, from a "\ud800" escape).
_OTHERS = r"\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_FORBIDDEN = re.compile(rf"[\x00-\x1f{_OTHERS}]")
_FORBIDDEN_MULTILINE = re.compile(rf"[\x00-\x08\x0b-\x1f{_OTHERS}]")


@cache
def schema() -> dict[str, Any]:
    """The published JSON Schema (agents/backup_agent/schema/manifest.schema.json)."""
    text = resources.files("backup_agent").joinpath("schema/manifest.schema.json").read_text()
    result: dict[str, Any] = json.loads(text)
    return result


def load(path: str | Path, environ: Mapping[str, str] | None = None) -> Manifest:
    """Read and validate a manifest file; raises ``ManifestError`` listing every problem."""
    source = str(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(MAX_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise error(source, [("(file)", reason or str(exc))]) from exc
    if len(text) > MAX_BYTES:
        raise error(source, [("(file)", f"larger than {MAX_BYTES} bytes")])
    return parse(read_yaml(text, source), source, environ)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, stopping at ``MAX_DEPTH`` levels while it reads (its
    composer recurses, and its scanner slows down quadratically with flow nesting:
    a megabyte of ``[`` took over a second to reach Python's recursion limit), and with
    every failure to build a value reported as a YAML error at the value's position
    (``2024-13-45``, ``!!int abc`` and ``!!bool x`` raise ValueError, KeyError or
    AttributeError from PyYAML's constructors)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", mark
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {_short(node.value)} as {_tag(node.tag)}", node.start_mark
            ) from exc


def read_yaml(text: str, source: str) -> Any:
    """Parse YAML safely: one document of plain data, checked for size, depth and
    duplicate keys before any value is built."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
        problems = [] if node is None else _node_problems(node)
        if problems:
            raise error(source, problems)
        return None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise error(source, [("(yaml)", _yaml_message(exc))]) from exc
    finally:
        if loader is not None:
            loader.dispose()


def _yaml_message(exc: yaml.YAMLError) -> str:
    """PyYAML's error as one line: where, then what (without its source snippet)."""
    if isinstance(exc, yaml.reader.ReaderError):
        return f"character {exc.position + 1}: {exc.reason} (U+{exc.character:04X})"
    if not isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(str(exc).split())
    problem = exc.problem or exc.context or "invalid YAML"
    if problem.startswith("could not determine a constructor for the tag"):
        problem = f"the tag {_tag(problem.rsplit(' ', 1)[-1])} is not allowed: plain YAML data only"
    elif exc.context and exc.problem:
        joined = problem.startswith("but ")
        problem = f"{exc.context}, {problem}" if joined else f"{problem} ({exc.context})"
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return f"{where}{problem}"


def _tag(tag: str) -> str:
    """A YAML tag as written: ``!!int`` for ``tag:yaml.org,2002:int``."""
    return tag.replace("tag:yaml.org,2002:", "!!")


def _node_problems(root: yaml.Node) -> Problems:
    """The document's size and depth as loading would expand it (an alias counts
    its whole anchor each time it is used), then over-long scalars and keys written
    twice. Sizes are summed once per node, so a bomb is measured, not walked."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are being measured
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in size:
            continue
        children = _children(node)
        if not ready:
            if any(id(child) in open_ for child in children):  # &a [*a]
                return [("(yaml)", "an alias refers to a node that contains it")]
            open_.add(id(node))
            stack.append((node, True))
            stack += [(child, False) for child in children if id(child) not in size]
            continue
        open_.discard(id(node))
        size[id(node)] = 1 + sum(size[id(child)] for child in children)
        height[id(node)] = 1 + max((height[id(child)] for child in children), default=0)
        if size[id(node)] > MAX_NODES:
            return [("(yaml)", f"expands to more than {MAX_NODES} nodes (aliases?)")]
        if height[id(node)] > MAX_DEPTH:  # deeper text is refused while reading
            return [("(yaml)", f"nested more than {MAX_DEPTH} levels deep (aliases?)")]
    return _scalar_and_key_problems(root)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _scalar_and_key_problems(root: yaml.Node) -> Problems:
    """Scalars longer than ``MAX_STRING`` and duplicate keys, each node checked once
    with the path it is first reached by."""
    problems: Problems = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        prefix = f"{path}." if path else ""
        if isinstance(node, yaml.ScalarNode) and len(node.value) > MAX_STRING:
            problems.append((path or "(top)", f"longer than {MAX_STRING} characters"))
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, f"{prefix}{i}") for i, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            problems += _duplicates(node, path)
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                stack += [(key, f"{prefix}{name}"), (value, f"{prefix}{name}")]
    return sorted(problems)


def _duplicates(node: yaml.MappingNode, path: str) -> Problems:
    """Keys written more than once in one mapping: YAML would keep the last silently,
    so a reader could see one value and the agent use another."""
    first: dict[tuple[str, str], int] = {}
    problems: Problems = []
    prefix = f"{path}." if path else ""
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        line = key.start_mark.line + 1
        seen = first.get((key.tag, key.value))
        if seen is None:
            first[(key.tag, key.value)] = line
        else:
            where = f"line {line}" if seen == line else f"lines {seen} and {line}"
            problems.append((f"{prefix}{key.value}", f"key written twice ({where})"))
    return problems


def parse(
    data: Any, source: str = "<manifest>", environ: Mapping[str, str] | None = None
) -> Manifest:
    """Validate already-loaded YAML data and build the ``Manifest``.

    Schema problems and cross-field problems are reported together; a section with
    a schema problem is not checked further, so each mistake is reported once.
    """
    if not isinstance(data, dict):
        found = "empty" if data is None else f"a {type(data).__name__}"
        raise error(source, [("(top)", f"must be a mapping, the manifest is {found}")])
    data, warnings, problems = upgrade(data)
    data, unset = expand_env(data, os.environ if environ is None else environ)
    problems += unset
    problems += value_problems(data)
    reported = {path for path, _ in problems}
    problems += [p for p in schema_problems(data) if not _within(p[0], reported)]
    manifest, checked, more_warnings = build(data, source, skip={p for p, _ in problems})
    problems += checked
    if problems or manifest is None:
        raise error(source, problems or [("(top)", "the manifest is empty")])
    return replace(manifest, warnings=tuple(warnings + more_warnings))


def error(source: str, problems: Problems) -> ManifestError:
    """The ``ManifestError`` for ``problems``: the first problem at each path, each on
    one printable line (keys and values may hold line breaks, escapes or megabytes)."""
    first: dict[str, str] = {}
    for path, message in problems:
        first.setdefault(_printable(path, 200), _printable(message, 400))
    return ManifestError(_printable(source, 300), list(first.items()))


def _within(path: str, paths: set[str]) -> bool:
    """Whether ``path`` is one of ``paths`` or below one of them."""
    return any(path == p or path.startswith(f"{p}.") for p in paths)


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
    if "maintenance" in data:  # an explicit null stays, for the schema to refuse
        data["maintenance"] = rename(data["maintenance"], RENAMED_MAINTENANCE, "maintenance.")
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


def value_problems(data: Any, path: str = "") -> Problems:
    """Strings that no value of the manifest may be: longer than ``MAX_STRING`` or
    holding control characters (line breaks and tabs only in ``MULTILINE`` keys).
    Checked after ``${NAME}`` expansion, so the environment is held to the same rules."""
    problems: Problems = []
    stack: list[tuple[Any, str]] = [(data, path)]
    while stack:
        node, where = stack.pop()
        prefix = f"{where}." if where else ""
        if isinstance(node, dict):
            stack += [(value, f"{prefix}{key}") for key, value in node.items()]
        elif isinstance(node, list):
            stack += [(value, f"{prefix}{index}") for index, value in enumerate(node)]
        elif isinstance(node, str):
            problem = _string_problem(node, where.rsplit(".", 1)[-1] in MULTILINE)
            if problem:
                problems.append((where or "(top)", problem))
    return sorted(problems)


def _string_problem(text: str, multiline: bool) -> str | None:
    if len(text) > MAX_STRING:
        return f"is {len(text)} characters long, more than {MAX_STRING}"
    found = (_FORBIDDEN_MULTILINE if multiline else _FORBIDDEN).search(text)
    if found is None:
        return None
    char = found.group()
    return f"contains {_name(char)} (U+{ord(char):04X}) at character {found.start() + 1}"


def _name(char: str) -> str:
    if char in "\n\r\x85\u2028\u2029":
        return "a line break"
    if char in "\t\x00":
        return "a tab" if char == "\t" else "a NUL byte"
    if "\ud800" <= char <= "\udfff":
        return "an unpaired surrogate"
    return "a control character" if char <= "\x9f" else "a bidirectional-text control character"


_TYPE_NAMES = {
    "object": "a mapping",
    "string": "a string",
    "array": "a list",
    "integer": "a whole number",
}
_DURATION = "^[1-9][0-9]*[smhdw]$"  # the schema's pattern for every duration


def _pattern(
    validator: Any, pattern: str, instance: Any, spec: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """The schema's ``pattern``, and for durations also their length: ``99999999999w``
    has the shape of a duration but no date arithmetic could use it."""
    yield from _PLAIN.VALIDATORS["pattern"](validator, pattern, instance, spec)
    if pattern == _DURATION and isinstance(instance, str) and re.search(pattern, instance):
        try:
            parse_duration(instance)
        except ValueError as exc:
            yield jsonschema.ValidationError(str(exc))


_PLAIN = jsonschema.Draft202012Validator
_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    _PLAIN,
    validators={"pattern": _pattern},
    # A whole number is an int: 3306.0 would reach a command line as "3306.0".
    type_checker=_PLAIN.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


def schema_problems(data: Any) -> Problems:
    """Every JSON Schema violation as (dotted path, message), in document order."""
    validator = _Validator(schema())
    problems: Problems = []
    for found in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.path]):
        problems += [p for p in _describe(found) if p not in problems]
    return problems


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
    value, expected = _short(error.instance), error.validator_value
    if error.schema_path and list(error.schema_path)[-2:-1] == ["propertyNames"]:
        rule = {
            "type": "must be a string",
            "pattern": f"does not match {expected!r}",
            "maxLength": f"is longer than {expected} characters",
        }
        return [(path, f"name {value} {rule.get(str(error.validator), error.message)}")]
    if error.validator == "type":
        wanted = _TYPE_NAMES.get(str(expected), str(expected))
        if error.instance is None:
            return [(path, f"must be {wanted}, not empty")]
        if expected == "string" and isinstance(error.instance, int | float | date):
            # YAML read 123, 1e3, yes or 2024-01-01 as another type than a string.
            shown = error.instance.isoformat() if isinstance(error.instance, date) else value
            return [(path, f"must be a string, not {shown} (write it in quotes)")]
        return [(path, f"must be {wanted}, not {value}")]
    if error.validator == "pattern" and expected == _DURATION:
        if isinstance(error.instance, str) and re.search(_DURATION, error.instance):
            return [(path, error.message)]  # the right shape, but too long
        return [(path, f"{value} is not a duration like 30m, 2h, 1d or 3w")]
    messages = {
        "pattern": f"{value} does not match {expected!r}",
        "enum": f"{value} is not one of {expected!r}",
        "maximum": f"{value} is greater than the maximum of {expected}",
        "minimum": f"{value} is less than the minimum of {expected}",
        "uniqueItems": "has repeated items",
    }
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = cast(dict[str, Any], error.schema).get("properties", {})
        extra = [_short(key) for key in error.instance if key not in known]
        verb = "was" if len(extra) == 1 else "were"
        listed = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
        return [(path, f"unknown key(s) ({listed} {verb} unexpected)")]
    message = messages.get(str(error.validator)) or " ".join(error.message.split())
    return [(path, _clip(message))]


def _short(value: Any) -> str:
    """A value quoted for a message, clipped: hostile values can be huge."""
    # No need to quote a megabyte to clip it to a line.
    if isinstance(value, str | bytes | list) and len(value) > 200:
        value = value[:200]
    elif isinstance(value, dict) and len(value) > 20:
        value = dict(list(value.items())[:20])
    return _clip(repr(value))


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _printable(text: str, limit: int) -> str:
    """``text`` on one line of printable characters (others escaped), clipped."""
    if text.isprintable():
        return _clip(text, limit)
    escaped = (c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return _clip("".join(escaped)[: limit + 1], limit)
