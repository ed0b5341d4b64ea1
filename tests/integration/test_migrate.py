"""``backup-agent migrate``: one shared repository into one repository per service,
with real restic. What the trust rule trusted before is trusted after, records name
their copies, a forged drill record stays forged, and a second run copies nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backup_agent import cli, manifest, restic
from backup_agent.errors import EXIT_OK
from backup_agent.snapshots import Judgement, Trust, drill_signature, judge
from tests.conftest import files_spec, need, service_spec
from tests.forge import forge

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
KEY = b"drill key of the test deployment, 32+"


def write_manifest(tmp_path: Path) -> Path:
    """Three services, each with its own repository below tmp_path/new."""
    import yaml

    for name in ("db", "grafana", "docs"):
        (tmp_path / f"password_{name}").write_text(f"new password of {name}\n")
    (tmp_path / "drill_key").write_bytes(KEY)
    data: dict[str, Any] = {
        "version": 1,
        "work_dir": str(tmp_path / "work"),
        "agent": {"state_dir": str(tmp_path / "state"), "metrics_port": 0},
        "repository": {
            "url": str(tmp_path / "new" / "{service}"),
            "password_file": str(tmp_path / "password_{service}"),
            "host": "agama",
        },
        "services": {
            "db": service_spec("mysql", {"defaults_file": "/nonexistent.cnf"}),
            "grafana": service_spec("grafana", {"data_dir": "/var/lib/grafana"}),
            "docs": files_spec(["/srv/docs"]),
        },
        "retention": {"keep_within": "3w", "max_age": "31d"},
        "drill": {"schedule": "0 6 * * 1", "key_file": str(tmp_path / "drill_key")},
    }
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def shared_repository(tmp_path: Path) -> restic.Repository:
    """The old layout: every service in one repository, with a dump, its record, a
    signed drill record and a forged one, files of two kinds, and Grafana."""
    password = tmp_path / "old_password"
    password.write_text("the old shared password\n")
    old = restic.Repository(
        str(tmp_path / "old"), str(password), "agama", cache_dir=str(tmp_path / "c")
    )
    restic.init(old)

    def at(hours: float, tags: dict[str, str], content: bytes) -> str:
        return forge(old, NOW - timedelta(hours=hours), tags, content)

    dump = at(50, {"service": "db", "kind": "full"}, b"-- dump 1")
    at(50, {"service": "db", "kind": "meta", "of": dump}, b'{"sha256": "x"}')
    signature = drill_signature(KEY, "db", dump)
    at(40, {"service": "db", "kind": "drill", "of": dump, "mac": signature}, b"drill ok")
    at(39, {"service": "db", "kind": "drill", "of": dump, "mac": "0" * 64}, b"forged")
    newer = at(26, {"service": "db", "kind": "full"}, b"-- dump 2")
    at(26, {"service": "db", "kind": "meta", "of": newer}, b'{"sha256": "y"}')
    at(30, {"service": "docs", "kind": "full"}, b"files, all of them")
    at(6, {"service": "docs", "kind": "incremental"}, b"files, changed")
    at(20, {"service": "grafana", "kind": "full"}, b"grafana.db")
    return old


def summary(judged: Judgement) -> dict[str, Any]:
    """A judgement by snapshot time and kind (ids differ between the repositories)."""

    def key(snapshots: Sequence[restic.Snapshot]) -> list[tuple[str, str | None]]:
        return [(s.time.isoformat(), s.tag("kind")) for s in snapshots]

    by_id = {s.id: s for s in judged.trusted}
    return {
        "trusted": key(judged.trusted),
        "untrusted": sorted((s.time.isoformat(), why) for s, why in judged.untrusted),
        "records": sorted(by_id[of].time.isoformat() for of in judged.records),
        "drilled": sorted(by_id[of].time.isoformat() for of in judged.drilled),
    }


def test_migration_keeps_what_was_trusted_and_runs_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need("restic")
    path = write_manifest(tmp_path)
    old = shared_repository(tmp_path)
    loaded = manifest.load(path).for_role("maintenance")
    trust = Trust.of(loaded)
    listed = restic.snapshots(old)
    before = {name: summary(judge(listed, s, trust)) for name, s in loaded.services.items()}
    assert before["db"]["drilled"] and before["db"]["untrusted"]  # one signed, one forged

    argv = [
        "-m",
        str(path),
        "migrate",
        "--from",
        old.url,
        "--from-password-file",
        old.password_file,
    ]
    assert cli.main([*argv, "--dry-run"]) == EXIT_OK
    assert "db: would copy 6, already there 0" in capsys.readouterr().out
    assert not (tmp_path / "new").exists()

    assert cli.main(argv) == EXIT_OK
    out = capsys.readouterr().out
    assert "db: copied 6, already there 0, records re-pointed 4" in out  # 2 meta, 2 drill
    assert "docs: copied 2, already there 0, records re-pointed 0" in out
    for name, service in loaded.services.items():
        repo = loaded.repository_for(name)
        assert repo.url == str(tmp_path / "new" / name)
        after = summary(judge(restic.snapshots(repo), service, trust))
        assert after == before[name], name
        assert {s.tag("service") for s in restic.snapshots(repo)} == {name}

    assert cli.main(argv) == EXIT_OK
    assert "db: copied 0, already there 6, records re-pointed 0" in capsys.readouterr().out
    assert len(restic.snapshots(loaded.repository_for("db"))) == 6
