"""The README names the test behind each promise: every test it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# `tests/dir/file.py` or `tests/dir/file.py::test_name`, then any `::other_name` after it.
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+)?)`((?:,\s*`::\w+`)*)")


def named_tests(text: str) -> list[tuple[str, str]]:
    """(file, test name or "") for every test reference in ``text``."""
    found = []
    for match in REFERENCE.finditer(text):
        names = [match.group(2), *re.findall(r"`::(\w+)`", match.group(3))]
        found += [(match.group(1), name.removeprefix("::")) for name in names]
    return found


def test_the_parser_reads_files_tests_and_continuations() -> None:
    text = "`tests/unit/a.py::test_one`, `::test_two` and `tests/e2e/b.py`"
    assert named_tests(text) == [
        ("tests/unit/a.py", "test_one"),
        ("tests/unit/a.py", "test_two"),
        ("tests/e2e/b.py", ""),
    ]


def test_every_test_the_readme_names_exists() -> None:
    named = named_tests((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(named) > 50  # the promise tables and the threat model
    missing = [
        f"{path}::{name}" if name else path
        for path, name in named
        if not (ROOT / path).is_file()
        or (name and f"def {name}(" not in (ROOT / path).read_text(encoding="utf-8"))
    ]
    assert missing == []
