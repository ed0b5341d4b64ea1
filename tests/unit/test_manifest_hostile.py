"""Hostile manifests (issue 10): whatever the file or the environment holds,
``backup-agent validate`` exits 2, prints the ``PATH: N problem(s)`` block on stderr
with one ``  path: message`` line per problem, nothing on stdout, no traceback, and
deletes nothing.

The inputs are generated with hypothesis from the shipped manifests (every node
replaced by a value of another type, every key by one that cannot be valid, strings
with control characters, durations, ports, directories, cron expressions and time
zones that must be refused, ``${NAME}`` references) and from scratch (alias bombs,
deep nesting, duplicate keys, tags, invalid UTF-8, binary junk). Each input is built
to be invalid, so each must give exit code 2. ``derandomize`` and no example
database keep CI deterministic; the budget keeps the file to a few seconds.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from backup_agent import cli, manifest
from backup_agent.errors import EXIT_OK, EXIT_USAGE, ManifestError
from backup_agent.manifest.loading import MAX_NODES

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("agama.yaml", "minimal.yaml")
ENV_PREFIX = "BACKUP_AGENT_HOSTILE_"  # variables these tests set, and only for one call
# A problem line: two spaces, a path without spaces at its ends, ": ", a message.
LINE = re.compile(r"  \S(?:.*\S)?: \S.*")

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # explaining traces: minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Path_ = tuple[Any, ...]  # keys and indexes from the document's root to one node


# --- the sandbox and the promise -----------------------------------------------------


@dataclass(frozen=True)
class Sandbox:
    """work_dir and drill.scratch_dir for the manifests, each holding a canary file:
    after every input, both directories and their canaries must still be there."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.yaml"

    @property
    def directories(self) -> tuple[Path, ...]:
        return (self.root / "work", self.root / "work" / "drill", self.root / "keep")

    def assert_intact(self) -> None:
        for directory in self.directories:
            assert (directory / "canary").read_text() == "still here", directory


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    box = Sandbox(tmp_path_factory.mktemp("hostile"))
    for directory in box.directories:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "canary").write_text("still here")
    return box


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in os.environ for the duration of one call, then exactly as before."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                del os.environ[name]
            else:
                os.environ[name] = old


def validate(path: Path, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``backup-agent validate PATH`` in-process: exit code, stdout, stderr.

    An exception escaping ``cli.main`` (a traceback) fails the test where it happens.
    The log handlers and the SIGTERM handler main installs are put back afterwards.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    sigterm = signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    try:
        with (
            environment(env or {}),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            code = cli.main(["validate", str(path)])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        signal.signal(signal.SIGTERM, sigterm)
    return code, out.getvalue(), err.getvalue()


def assert_refused(box: Sandbox, env: Mapping[str, str] | None = None) -> list[str]:
    """The promise for an invalid manifest; returns the problem lines."""
    code, out, err = validate(box.manifest, env)
    assert (code, out) == (EXIT_USAGE, ""), err
    assert "Traceback" not in err
    head, *lines = err.splitlines()
    assert head == f"{box.manifest}: {len(lines)} problem(s)", err
    assert lines, err
    for line in lines:
        assert LINE.fullmatch(line), line
        assert line.isprintable() and len(line) <= 700, line
    with environment(env or {}), pytest.raises(ManifestError) as caught:
        manifest.load(box.manifest)
    assert [f"  {path}: {message}" for path, message in caught.value.problems] == lines
    box.assert_intact()
    return lines


def write_data(box: Sandbox, data: Any, *, escape: bool = False) -> None:
    """Dump ``data`` as YAML into the sandbox's manifest (with ``escape``, every
    non-ASCII character as an escape sequence; otherwise as UTF-8 where that reads
    back as the same data)."""
    text = yaml.safe_dump(data, allow_unicode=not escape, sort_keys=False, width=1 << 20)
    if not escape and yaml.safe_load(text) != data:  # raw U+0085 reads as a line break
        text = yaml.safe_dump(data, sort_keys=False, width=1 << 20)
    box.manifest.write_text(text, encoding="utf-8", errors="surrogatepass")


# --- the shipped manifests, their nodes and keys -----------------------------------


@cache
def text_of(name: str) -> str:
    return (ROOT / "manifests" / name).read_text()


def shipped(name: str, box: Sandbox) -> dict[str, Any]:
    """A shipped manifest, with its directories pointed into the sandbox."""
    data: dict[str, Any] = yaml.safe_load(text_of(name))
    data["work_dir"] = str(box.root / "work")
    if "drill" in data:
        data["drill"]["scratch_dir"] = str(box.root / "work" / "drill")
    return data


def nodes(node: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """Every node of a document with its path, the root first."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from nodes(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from nodes(value, (*path, index))


def with_value(data: Any, path: Path_, value: Any) -> Any:
    """A copy of ``data`` with ``value`` at ``path`` (the root when empty), creating
    mappings on the way."""
    if not path:
        return value
    result = copy.deepcopy(data)
    parent = result
    for step in path[:-1]:
        parent = parent.setdefault(step, {})
    parent[path[-1]] = value
    return result


def renamed(data: Any, path: Path_, key: Any) -> Any:
    """A copy of ``data`` with the last key of ``path`` renamed to ``key``."""
    result = copy.deepcopy(data)
    parent = result
    for step in path[:-1]:
        parent = parent[step]
    parent[key] = parent.pop(path[-1])
    return result


def shipped_nodes(
    box: Sandbox, *, last: set[str] | None = None, strings: bool = False
) -> list[tuple[str, Path_]]:
    """(manifest, path) of every node of the shipped manifests (whose last key is in
    ``last``, or that are strings, when asked)."""
    return [
        (name, path)
        for name in SHIPPED
        for path, node in nodes(shipped(name, box))
        if (last is None or (path and path[-1] in last)) and (not strings or isinstance(node, str))
    ]


def kind(value: Any) -> str:
    """The YAML/JSON type of a value (bool and int apart, as the schema has them)."""
    return "bool" if isinstance(value, bool) else type(value).__name__


# --- hostile values -------------------------------------------------------------------

FORBIDDEN = ["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\u202e", "\u2066", "\ud800"]
huge_ints = st.integers(min_value=10**18, max_value=10**1000) | st.integers(max_value=-(10**18))
scalars = (
    st.integers()
    | huge_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
    | st.text(max_size=30)
    | st.dates(min_value=date(1, 1, 1))
    | st.binary(max_size=10)
)
any_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers() | st.none(), inner, max_size=4)
    ),
    max_leaves=12,
)


def strings_with(chars: list[str], around: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Strings no value may be: one of ``chars`` somewhere in ``around`` text, or
    longer than MAX_STRING."""
    return st.builds(
        lambda before, char, after: before + char + after,
        around,
        st.sampled_from(chars),
        around,
    ) | st.integers(min_value=4097, max_value=20_000).map(lambda n: "/" * n)


bad_strings = strings_with(FORBIDDEN, st.text(max_size=20))
# The environment cannot hold NUL or "\ud800"; an invalid UTF-8 byte arrives as "\udcff".
bad_environment = strings_with(
    [*(c for c in FORBIDDEN if c not in "\x00\ud800"), "\udcff"],
    st.text(st.characters(exclude_characters="\x00"), max_size=20),
)
# Keys that are valid nowhere: not strings, or not a service name (and unknown anywhere).
bad_keys = (
    st.integers()
    | st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.text(max_size=10).map(lambda text: f"Bad {text}")
    | bad_strings
    | st.just("a" * 64)
)


@given(data=st.data(), escape=st.booleans())
@SETTINGS
def test_any_node_of_another_type(sandbox: Sandbox, data: st.DataObject, escape: bool) -> None:
    """Any node of a shipped manifest (the whole document too, and the optional
    sections it leaves out) replaced by a value of another type: ints, huge ints,
    floats, bools, None, lists, mappings, text, dates, bytes."""
    sections = [(name, (key,)) for name in SHIPPED for key in ("agent", "maintenance", "drill")]
    name, path = data.draw(st.sampled_from(shipped_nodes(sandbox) + sections), label="node")
    original = shipped(name, sandbox)
    node = dict(nodes(original)).get(path, {})  # the optional sections are mappings
    value = data.draw(any_values.filter(lambda v: kind(v) != kind(node)), label="value")
    write_data(sandbox, with_value(original, path, value), escape=escape)
    assert_refused(sandbox)


@given(data=st.data(), escape=st.booleans())
@SETTINGS
def test_any_string_with_control_characters_or_huge(
    sandbox: Sandbox, data: st.DataObject, escape: bool
) -> None:
    """Any string of a shipped manifest holding a NUL byte, a line break, an escape,
    a bidi override or an unpaired surrogate, or longer than 4096 characters."""
    name, path = data.draw(st.sampled_from(shipped_nodes(sandbox, strings=True)))
    value = data.draw(bad_strings, label="value")
    write_data(sandbox, with_value(shipped(name, sandbox), path, value), escape=escape)
    lines = assert_refused(sandbox)
    assert any(line.startswith(f"  {'.'.join(map(str, path))}: ") for line in lines), lines


@given(data=st.data())
@SETTINGS
def test_any_key_renamed_to_one_valid_nowhere(sandbox: Sandbox, data: st.DataObject) -> None:
    """Any key renamed to a non-string, a name with capitals or spaces, a string with
    control characters or a service name longer than 63 characters."""
    keyed = [(n, p) for n, p in shipped_nodes(sandbox) if p and isinstance(p[-1], str)]
    name, path = data.draw(st.sampled_from(keyed), label="key")
    key = data.draw(bad_keys, label="new key")
    write_data(sandbox, renamed(shipped(name, sandbox), path, key), escape=True)
    assert_refused(sandbox)


@given(data=st.data())
@SETTINGS
def test_environment_references_that_cannot_be_valid(sandbox: Sandbox, data: st.DataObject) -> None:
    """``${NAME}`` in any string: unset without a default, or set to a value with a
    line break (YAML that would add keys), control characters or a megabyte."""
    name, path = data.draw(st.sampled_from(shipped_nodes(sandbox, strings=True)))
    variable = f"{ENV_PREFIX}{data.draw(st.integers(0, 9))}"
    template = data.draw(st.sampled_from(["${%s}", "x-${%s}-y", "${%s:-}${%s}"]))
    value = template.replace("%s", variable)
    hostile = data.draw(
        st.none() | bad_environment | st.just("mysql\n  socket: /tmp/evil.sock\nwork_dir: /")
    )
    env = {} if hostile is None else {variable: hostile}
    assert variable not in os.environ
    write_data(sandbox, with_value(shipped(name, sandbox), path, value))
    lines = assert_refused(sandbox, env)
    assert any(line.startswith(f"  {'.'.join(map(str, path))}: ") for line in lines), lines


DANGEROUS = [
    "/",
    "//",
    "/home",
    "/home/",
    "/etc",
    "/./etc",
    "/etc/.",
    "//etc//",
    "/var/tmp",
    "/var/tmp/",
    "/tmp",
    "/usr",
    "/root",
    "/proc",
    "..",
    "../..",
    "/srv/../etc",
    "/srv/..",
    "relative/dir",
    "./work",
    "~/backup",
    "",
]


@given(data=st.data())
@SETTINGS
def test_dangerous_directories(sandbox: Sandbox, data: st.DataObject) -> None:
    """work_dir and drill.scratch_dir: the agent removes what it creates below them,
    so a system directory, a relative path or one with '..' is refused."""
    name, path = data.draw(
        st.sampled_from(shipped_nodes(sandbox, last={"work_dir", "scratch_dir"}))
    )
    value = data.draw(st.sampled_from(DANGEROUS))
    write_data(sandbox, with_value(shipped(name, sandbox), path, value))
    assert assert_refused(sandbox) == [
        f"  {'.'.join(path)}: "
        + (
            f"{value} is a system directory; use a directory of its own"
            if value.startswith("/") and ".." not in value.split("/")
            else "must be an absolute path without '..'"
        )
    ]


# Values of the right type that must still be refused, by the key they are set at.
TOO_LONG = st.from_regex(r"[1-9][0-9]{10,30}[smhdw]", fullmatch=True)  # > 100 years
OUT_OF_RANGE = {
    "port": st.integers(65536, 10**20) | st.integers(-(10**20), 0),
    "metrics_port": st.integers(65536, 10**20) | st.integers(-(10**20), -1),
    "read_data_subsets": st.integers(101, 10**20) | st.integers(-(10**20), 0),
    "file_sample": st.integers(-(10**20), 0),
}
DURATIONS = ("rpo", "target", "limit", "keep_within", "max_age", "expected_duration")
CRONS = ("schedule", "incremental", "full", "retention_schedule", "check_schedule")
# Five cron fields, one of them out of range: minute, hour, day, month, weekday.
CRON_LIMITS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
# Keys the shipped manifests leave out, so that their defaults apply.
ABSENT = [
    ("agama.yaml", ("maintenance", "read_data_subsets")),
    ("agama.yaml", ("maintenance", "retention_schedule")),
    ("agama.yaml", ("maintenance", "check_schedule")),
    ("agama.yaml", ("agent", "metrics_port")),
    ("agama.yaml", ("drill", "file_sample")),
    ("agama.yaml", ("drill", "timezone")),
    ("agama.yaml", ("drill", "mysql", "port")),
    ("agama.yaml", ("services", "mysql", "timezone")),
    ("agama.yaml", ("services", "mysql", "expected_duration")),
    ("minimal.yaml", ("timezone",)),
]


@st.composite
def bad_crons(draw: st.DrawFn) -> str:
    """A cron expression that must be refused: one field out of range, too few
    fields, or a date that never comes."""
    fields = ["0", "0", "*", "*", "*"]
    choice = draw(st.integers(0, 2))
    if choice == 0:
        index = draw(st.integers(0, 4))
        low, high = CRON_LIMITS[index]
        fields[index] = str(draw(st.integers(high + 1, 10**30) | st.integers(max_value=low - 1)))
    elif choice == 1:
        fields = fields[: draw(st.integers(0, 3))] or ["every night"]
    else:
        fields[2:4] = draw(st.sampled_from([["30", "2"], ["31", "4"], ["31", "6"], ["31", "11"]]))
    return " ".join(fields)


bad_zones = st.sampled_from(["Mars/Olympus", "/UTC", "UTC/", "../UTC", "Europe", "", "."]) | (
    st.text(max_size=10).map(lambda text: f"Nowhere/{text}")
)


@given(data=st.data())
@SETTINGS
def test_values_of_the_right_type_that_cannot_be_used(
    sandbox: Sandbox, data: st.DataObject
) -> None:
    """Durations too long for any date arithmetic (99999999999w), ports and counts out
    of range, cron expressions that never fire, time zones that do not exist: at the
    keys the shipped manifests set and at those they leave to defaults."""
    keys = (*DURATIONS, *OUT_OF_RANGE, *CRONS, "timezone")
    choices = shipped_nodes(sandbox, last=set(keys)) + ABSENT
    name, path = data.draw(st.sampled_from(choices), label="node")
    key = path[-1]
    if key in DURATIONS:
        value: Any = data.draw(TOO_LONG)
    elif key in OUT_OF_RANGE:
        value = data.draw(OUT_OF_RANGE[key])
    elif key == "timezone":
        value = data.draw(bad_zones)
    else:  # also a files schedule (a mapping) given one cron expression
        value = data.draw(bad_crons())
    write_data(sandbox, with_value(shipped(name, sandbox), path, value))
    lines = assert_refused(sandbox)
    assert any(line.startswith(f"  {'.'.join(path)}: ") for line in lines), lines


# --- hostile files ------------------------------------------------------------------


@given(width=st.integers(2, 12), depth=st.integers(1, 12))
@SETTINGS
def test_alias_bombs(sandbox: Sandbox, width: int, depth: int) -> None:
    """Billion laughs: each level a list of ``width`` aliases of the level below.
    Documents that would expand beyond MAX_NODES are refused; the others are simply
    not manifests."""
    lines = ["l0: &l0 [lol]"]
    for level in range(1, depth + 1):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    sandbox.manifest.write_text("\n".join(lines) + "\n")
    problems = assert_refused(sandbox)
    if width**depth > MAX_NODES:
        assert problems == [f"  (yaml): expands to more than {MAX_NODES} nodes (aliases?)"]


@given(
    depth=st.integers(33, 3000),  # block styles stop at 400: 3000 levels are 9 MB
    style=st.sampled_from(["[", "{a: ", "- ", "a:\n"]),
    where=st.sampled_from(["top", "exclude"]),
)
@SETTINGS
def test_deep_nesting(sandbox: Sandbox, depth: int, style: str, where: str) -> None:
    """Nesting deeper than any manifest needs, in flow or block style, at the top or
    inside a value: refused before anything walks it recursively."""
    if style in ("[", "{a: "):
        closing = {"[": "]", "{a: ": "}"}[style]
        nested = style * depth + "x" + closing * depth
    else:  # block style: each level indented one more step
        nested = "\n" + "".join("  " * (i + 1) + style for i in range(min(depth, 400))) + "x"
    text = text_of("minimal.yaml")
    if where == "top":
        text = f"deep: {nested}\n{text}"
    else:
        text = text.replace('exclude: ["*.tmp"]', f"exclude: {nested}")
    sandbox.manifest.write_text(text)
    assert_refused(sandbox)


@given(data=st.data())
@SETTINGS
def test_duplicate_keys(sandbox: Sandbox, data: st.DataObject) -> None:
    """A key written twice in one mapping (YAML keeps the last silently): refused,
    naming the key and both lines."""
    text = text_of(data.draw(st.sampled_from(SHIPPED)))
    lines = text.splitlines()
    keyed = [i for i, line in enumerate(lines) if re.match(r"\s*[a-z_]+:", line)]
    index = data.draw(st.sampled_from(keyed))
    lines.insert(index + 1, lines[index])  # the same key again, right below
    sandbox.manifest.write_text("\n".join(lines) + "\n")
    problems = assert_refused(sandbox)
    key = lines[index].split(":")[0].strip()
    assert any(
        line.endswith(f"{key}: key written twice (lines {index + 1} and {index + 2})")
        for line in problems
    ), problems


TAGGED = [
    "!!python/object:os.system {}",
    "!!python/object/apply:os.system ['true']",
    "!!python/name:os.system",
    "!custom value",
    "!!int abc",
    "!!float abc",
    "!!bool maybe",
    "!!timestamp yesterday",
    "2024-13-45",
    "2024-02-30T25:00:00",
    "!!binary aGVsbG8=",
    "!!set {a, b}",
    "!!omap [a]",
    "!!str [1]",
    "*undefined",
    "&a [*a]",
]


@given(data=st.data())
@SETTINGS
def test_tags_and_values_yaml_cannot_build(sandbox: Sandbox, data: st.DataObject) -> None:
    """Tags that build objects (refused by the safe loader), unknown tags, and values
    PyYAML's constructors fail on (a 13th month): one '(yaml)' or typed problem."""
    text = text_of("minimal.yaml")
    tagged = data.draw(st.sampled_from(TAGGED))
    if data.draw(st.booleans()):
        text = text.replace("host: myhost", f"host: {tagged}")
    else:
        text = f"{tagged}\n" if data.draw(st.booleans()) else text + f"extra: {tagged}\n"
    sandbox.manifest.write_text(text)
    assert_refused(sandbox)


def test_a_python_tag_is_one_clean_line(sandbox: Sandbox) -> None:
    sandbox.manifest.write_text("!!python/object/apply:os.system ['rm -rf /']\n")
    assert assert_refused(sandbox) == [
        "  (yaml): line 1, column 1: the tag '!!python/object/apply:os.system' is not "
        "allowed: plain YAML data only"
    ]


@given(data=st.data())
@SETTINGS
def test_invalid_utf8_and_binary_junk(sandbox: Sandbox, data: st.DataObject) -> None:
    """Bytes that are not UTF-8 anywhere in a shipped manifest, or random bytes."""
    if data.draw(st.booleans()):
        text = (ROOT / "manifests" / data.draw(st.sampled_from(SHIPPED))).read_bytes()
        at = data.draw(st.integers(0, len(text)))
        junk = data.draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88"]))
        sandbox.manifest.write_bytes(text[:at] + junk + text[at:])
        assert assert_refused(sandbox) == ["  (file): not UTF-8 text"]
    else:
        sandbox.manifest.write_bytes(data.draw(st.binary(max_size=200)))
        assert_refused(sandbox)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "(top): must be a mapping, the manifest is empty"),
        (b"   \n\n", "(top): must be a mapping, the manifest is empty"),
        (b"# only a comment\n", "(top): must be a mapping, the manifest is empty"),
        (b"---\n...\n", "(top): must be a mapping, the manifest is empty"),
        (b"- a list\n", "(top): must be a mapping, the manifest is a list"),
        (b"just text\n", "(top): must be a mapping, the manifest is a str"),
        (b"\x00\x01\x02", "(yaml): character 1: special characters are not allowed (U+0000)"),
        (b"version: 1\n" + b"#" * (1 << 20), "(file): larger than 1048576 bytes"),
        (b"port: " + b"1" * 5000 + b"\n", "port: longer than 4096 characters"),
    ],
    ids=["empty", "blank", "comment", "no-document", "list", "text", "nul", "big", "long-int"],
)
def test_empty_and_odd_files(sandbox: Sandbox, content: bytes, expected: str) -> None:
    sandbox.manifest.write_bytes(content)
    assert assert_refused(sandbox) == [f"  {expected}"]


def test_a_directory_and_a_missing_file(sandbox: Sandbox) -> None:
    for path, reason in [(sandbox.root / "keep", "Is a directory"), (sandbox.root / "no", "No")]:
        code, out, err = validate(path)
        assert (code, out) == (EXIT_USAGE, "")
        assert err.startswith(f"{path}: 1 problem(s)\n  (file): {reason}")
    sandbox.assert_intact()


@given(data=st.data())
@SETTINGS
def test_any_splice_of_text_is_ok_or_refused(sandbox: Sandbox, data: st.DataObject) -> None:
    """Random text spliced anywhere into a shipped manifest may leave it valid (in a
    comment, say); whatever it does, the result is the ok line or the refusal block."""
    text = text_of(data.draw(st.sampled_from(SHIPPED)))
    at = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 20))
    insert = data.draw(st.text(st.sampled_from(":-[]{}&*!|>'\"%@`#,? \n\tx1\\"), max_size=12))
    sandbox.manifest.write_text(text[:at] + insert + text[at + cut :])
    code, out, _ = validate(sandbox.manifest)
    if code == EXIT_OK:
        assert out.startswith(f"{sandbox.manifest}: ok: ")
    else:
        assert_refused(sandbox)


# --- what the fuzzing found, one example each --------------------------------------

FOUND = [
    # (change to manifests/minimal.yaml, expected problem lines)
    (
        "host: myhost",
        "host: 123",
        ["repository.host: must be a string, not 123 (write it in quotes)"],
    ),
    ("host: myhost", "host:", ["repository.host: must be a string, not empty"]),
    (
        "rpo: 1d",
        "rpo: 99999999999w",
        ["services.documents.rpo: '99999999999w' is longer than 100 years"],
    ),
    ("version: 1", "version: 1.0", ["version: must be a whole number, not 1.0"]),
    (
        "version: 1",
        "version: 1\nagent: {metrics_port: 9464.0}",
        ["agent.metrics_port: must be a whole number, not 9464.0"],
    ),
    (
        "host: myhost",
        "host: 2024-13-45",
        ["(yaml): line 8, column 9: cannot read '2024-13-45' as !!timestamp"],
    ),
    (
        "host: myhost",
        "host: !!bool maybe",
        ["(yaml): line 8, column 9: cannot read 'maybe' as !!bool"],
    ),
    ("version: 1", "version: 1\nmaintenance:", ["maintenance: must be a mapping, not empty"]),
    (
        "  documents:",
        "  1: {}\n  documents:",
        [
            "services: name 1 must be a string",
            "services.1.type: is required",
            "services.1.schedule: is required",
            "services.1.rpo: is required",
            "services.1.rto: is required",
        ],
    ),
    (
        "  documents:",
        "  " + "d" * 64 + ":",
        ["services: name '" + "d" * 64 + "' is longer than 63 characters"],
    ),
    (
        "host: myhost",
        "host: ${BACKUP_AGENT_HOSTILE_UNSET}",
        ["repository.host: environment variable BACKUP_AGENT_HOSTILE_UNSET is not set"],
    ),
    (
        "host: myhost",
        'host: "my\\u202ehost"',
        [
            "repository.host: contains a bidirectional-text control character (U+202E) "
            "at character 3"
        ],
    ),
    ("host: myhost", "host: &h [*h]", ["(yaml): an alias refers to a node that contains it"]),
    (
        "version: 1",
        "version: 1\nwork_dir: /home/",
        ["work_dir: /home/ is a system directory; use a directory of its own"],
    ),
    (
        "version: 1",
        "version: 1\nwork_dir: 5",
        ["work_dir: must be a string, not 5 (write it in quotes)"],
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), FOUND, ids=[f[1][:30] for f in FOUND])
def test_found_by_fuzzing(sandbox: Sandbox, old: str, new: str, expected: list[str]) -> None:
    """Each was a traceback, a second message for one mistake, an unclear message or
    an accepted manifest before issue 10."""
    text = text_of("minimal.yaml")
    assert old in text
    sandbox.manifest.write_text(text.replace(old, new, 1))
    assert assert_refused(sandbox) == [f"  {line}" for line in expected]
