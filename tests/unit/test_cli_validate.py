"""``backup-agent validate``: exit codes and what it prints."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from backup_agent import cli
from backup_agent.errors import EXIT_OK, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "manifests" / "minimal.yaml"


@pytest.fixture(autouse=True)
def restore_process_state() -> Iterator[None]:
    """cli.main installs a SIGTERM handler and replaces the root log handlers; undo both."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    sigterm = signal.getsignal(signal.SIGTERM)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    signal.signal(signal.SIGTERM, sigterm)


def write(tmp_path: Path, data: object) -> Path:
    """Write ``data`` as a YAML manifest and return its path."""
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def weekly_mysql(**changes: object) -> dict[str, object]:
    """A valid manifest with a weekly MySQL service (so it warns: gap 1w > rpo 1d)."""
    data: dict[str, object] = {
        "version": 1,
        "repository": {"url": "/srv/repo", "password_file": "/run/secrets/pw", "host": "h1"},
        "services": {
            "db": {
                "type": "mysql",
                "schedule": "0 22 * * 1",
                "rpo": "1d",
                "rto": {"target": "30m", "limit": "2h"},
                "mysql": {"defaults_file": "/run/secrets/db.cnf"},
            }
        },
        "retention": {"keep_within": "3w", "max_age": "31d"},
    }
    data.update(changes)
    return data


def test_good_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    """A valid manifest exits 0 and names its services."""
    assert cli.main(["validate", str(MINIMAL)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out == f"{MINIMAL}: ok: documents (files)\n"
    assert err == ""


def test_manifest_option_is_the_default_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a file argument, validate checks --manifest."""
    path = write(tmp_path, weekly_mysql())
    assert cli.main(["--manifest", str(path), "validate"]) == EXIT_OK
    assert capsys.readouterr().out == f"{path}: ok: db (mysql)\n"


def test_warnings_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Warnings do not fail validation; they are printed on stderr."""
    path = write(tmp_path, weekly_mysql())
    assert cli.main(["validate", str(path)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out.endswith(": ok: db (mysql)\n")
    assert err.startswith("warning: services.db: runs can be 1w apart, longer than rpo 1d")


def test_bad_manifest_lists_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2, and stderr has one line per problem, each with its path."""
    data = weekly_mysql(timezone="Mars/Olympus", retention={"keep_within": "3w"})
    services = data["services"]
    assert isinstance(services, dict)
    services["db"]["rpo"] = "soon"
    services["db"]["grafana"] = {}
    path = write(tmp_path, data)
    assert cli.main(["validate", str(path)]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == f"{path}: 4 problem(s)"
    assert sorted(line.split(":")[0].strip() for line in lines[1:]) == [
        "retention.max_age",
        "services.db.grafana",
        "services.db.rpo",
        "timezone",
    ]
    assert "  retention.max_age: is required" in lines
    assert "  timezone: unknown time zone 'Mars/Olympus'" in lines
    assert "  services.db.grafana: only allowed for type grafana" in lines
    assert any(line.startswith("  services.db.rpo: 'soon' is not a duration") for line in lines)


def test_yaml_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Unparseable YAML is a usage error too, reported at '(yaml)'."""
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nservices:\n  db: {type: mysql\n", encoding="utf-8")
    assert cli.main(["validate", str(path)]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}: 1 problem(s)\n  (yaml): ")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A manifest that does not exist: exit 2, '(file)' problem."""
    path = tmp_path / "nope.yaml"
    assert cli.main(["validate", str(path)]) == EXIT_USAGE
    assert f"{path}: 1 problem(s)\n  (file): No such file or directory" in capsys.readouterr().err
