"""The deployment's secrets, each machine's bundle and the recovery kit, for real:
openssl makes the CA and the certificate, docker compose reads every bundle."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from backup_agent import bundle, cli, inventory, kit, pki, secret_store
from backup_agent.errors import EXIT_OK, BackupError
from tests.conftest import need

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "manifests" / "inventory.yaml"
COMPOSE = ROOT / "compose"


@pytest.fixture
def deployment() -> inventory.Inventory:
    need("openssl")
    return inventory.load(REFERENCE)


def test_secrets_are_made_once_private_and_for_the_backup_user(
    deployment: inventory.Inventory, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    created = secret_store.ensure(deployment, secrets)
    assert created == secret_store.catalog(deployment)
    assert secrets.stat().st_mode & 0o777 == 0o700
    for name in created:
        mode = (secrets / name).stat().st_mode & 0o777
        assert mode == (0o600 if name == pki.CA_KEY else 0o640), name
    values = {name: (secrets / name).read_bytes() for name in created}
    assert len({values[f"restic_password_{s}"] for s in ("mysql", "grafana", "files")}) == 3
    assert values["rest_files"].startswith(b"files:")
    root_password = values["mysql_root_password"].decode().strip()
    assert f"password={root_password}" in values["mysql_restore.cnf"].decode()
    assert json.loads(values[secret_store.RECORD]) == {"exported": None}
    assert secret_store.ensure(deployment, secrets) == []  # kept, not made again
    assert {name: (secrets / name).read_bytes() for name in created} == values
    assert pki.names(secrets / pki.SERVER_CERT) == (
        {"backup-server", "backup-server-verifier", "backup", "backup.example.org"},
        {"10.0.0.20"},
    )


def test_every_bundle_is_a_compose_project_that_runs_alone(
    deployment: inventory.Inventory, tmp_path: Path
) -> None:
    """Each machine's directory: its role files only, its secrets only (never the CA
    key), and `docker compose config` there sees just that machine's services."""
    need("docker")
    secrets = tmp_path / "secrets"
    expected = {
        "db": {"mysql", "mysql-agent", "files-agent"},
        "grafana": {"grafana", "grafana-agent"},
        "backup": {"repository-init", "backup-server", "backup-server-verifier", "maintenance"},
        "verify": {"verifier", "prometheus", "alertmanager", "dashboard"},
    }
    for name, services in expected.items():
        output = tmp_path / "bundles" / name
        bundle.write(deployment, name, secrets, COMPOSE, output, airgap=True)
        assert sorted(p.name for p in (output / "compose" / "secrets").iterdir()) == sorted(
            secret_store.needed_by(deployment, deployment.machine(name))
        )
        assert not list(output.rglob(pki.CA_KEY))
        env = {**os.environ, "DOCKER_GID": "999"}
        result = subprocess.run(
            ["docker", "compose", "config", "--format", "json"],
            cwd=output, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        config = json.loads(result.stdout)
        assert set(config["services"]) == services, name
        assert config["name"] == f"agama-{name}"
        for service in config["services"].values():
            for port in service.get("ports", []):
                assert port["host_ip"] == deployment.machine(name).address
    backup = json.loads(
        subprocess.run(
            ["docker", "compose", "config", "--format", "json"],
            cwd=tmp_path / "bundles" / "backup",
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    hosts = backup["services"]["maintenance"]["extra_hosts"]
    assert "verify=10.0.0.30" in hosts or hosts.get("verify") == "10.0.0.30"
    published = {p["published"] for p in backup["services"]["backup-server"]["ports"]}
    assert published == {"8000"}
    monitoring = yaml.safe_load(
        (tmp_path / "bundles" / "verify" / "compose" / "prometheus" / "prometheus.yml").read_text()
    )
    assert monitoring == bundle.prometheus_config(deployment, deployment.machine("verify"))


def test_a_bundle_replaces_only_an_earlier_bundle(
    deployment: inventory.Inventory, tmp_path: Path
) -> None:
    output = tmp_path / "db"
    output.mkdir()
    (output / "precious").write_text("mine")
    with pytest.raises(BackupError, match="is not a bundle"):
        bundle.write(deployment, "db", tmp_path / "secrets", COMPOSE, output)
    (output / "precious").unlink()
    bundle.write(deployment, "db", tmp_path / "secrets", COMPOSE, output)
    bundle.write(deployment, "db", tmp_path / "secrets", COMPOSE, output)
    assert (output / "up.sh").is_file()


def test_the_kit_holds_everything_and_unpacks_into_a_working_deployment(
    deployment: inventory.Inventory, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secret_store.ensure(deployment, secrets)
    text = kit.export(deployment, secrets, tmp_path / "kit.yaml")
    assert (tmp_path / "kit.yaml").read_text() == text
    assert (tmp_path / "kit.yaml").stat().st_mode & 0o777 == 0o600
    assert "Keep it OFF every machine" in text
    restored = tmp_path / "restored"
    written = kit.unpack(tmp_path / "kit.yaml", restored)
    assert {"inventory.yaml", "compose.yaml", "secrets/ca.key"} <= set(written)
    for name in secret_store.catalog(deployment):  # the export's record too
        assert (restored / "secrets" / name).read_bytes() == (secrets / name).read_bytes()
    # From the kit alone: the same machines, and a bundle whose secrets are the old ones.
    again = inventory.load(restored / "inventory.yaml")
    assert set(again.machines) == set(deployment.machines)
    assert secret_store.ensure(again, restored / "secrets") == []  # the record came along
    out = bundle.write(again, "db", restored / "secrets", COMPOSE, tmp_path / "db")
    assert (out / "compose" / "secrets" / "restic_password_mysql").read_bytes() == (
        secrets / "restic_password_mysql"
    ).read_bytes()


def test_the_kit_never_goes_beside_the_secrets_or_into_a_backup(
    deployment: inventory.Inventory, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secret_store.ensure(deployment, secrets)
    with pytest.raises(BackupError, match="keep the kit off the machines"):
        kit.export(deployment, secrets, secrets / "kit.yaml")
    with pytest.raises(BackupError, match="keep the kit off the machines"):
        kit.export(deployment, secrets, Path("/home/backup/backup/kit.yaml"))
    (tmp_path / "kit.yaml").write_text("an older kit")
    with pytest.raises(BackupError, match="exists"):
        kit.export(deployment, secrets, tmp_path / "kit.yaml")
    (secrets / "drill_key").unlink()
    with pytest.raises(BackupError, match="lacks drill_key"):
        kit.export(deployment, secrets, tmp_path / "new-kit.yaml", force=True)


def test_a_kit_cannot_write_outside_its_directory(tmp_path: Path) -> None:
    hostile = {"kit": 1, "manifest_file": "m.yaml", "manifest": "x", "secrets": {"../x": "y"}}
    (tmp_path / "kit.yaml").write_text(yaml.safe_dump(hostile))
    with pytest.raises(BackupError, match="is not a file name"):
        kit.unpack(tmp_path / "kit.yaml", tmp_path / "out")
    assert not (tmp_path / "x").exists() and not (tmp_path / "out").exists()


def test_the_record_says_never_current_or_which_secret_changed(
    deployment: inventory.Inventory, tmp_path: Path
) -> None:
    """What the maintenance role publishes: no kit, a current kit, a changed secret,
    one the last kit does not know, and a record replaced in place."""
    secrets = tmp_path / "secrets"
    secret_store.ensure(deployment, secrets)
    held = kit.held_by([str(secrets / "restic_password_mysql"), str(secrets / "drill_key")])
    watch = kit.Watch(str(secrets / secret_store.RECORD), held)
    assert watch.status() == kit.Status(0.0, False)
    kit.export(deployment, secrets, tmp_path / "kit.yaml")
    exported = watch.status()
    assert exported.current and exported.exported > 0
    record_inode = (secrets / secret_store.RECORD).stat().st_ino
    (secrets / "drill_key").write_text("a new drill key, never exported\n")
    assert watch.status() == kit.Status(exported.exported, False, ("drill_key",))
    kit.export(deployment, secrets, tmp_path / "kit.yaml", force=True)
    assert (secrets / secret_store.RECORD).stat().st_ino == record_inode  # bind mounts see it
    assert watch.status().current
    (secrets / "restic_password_orders").write_text("a service added later\n")
    watch = kit.Watch(
        str(secrets / secret_store.RECORD),
        {**held, "restic_password_orders": str(secrets / "restic_password_orders")},
    )
    assert watch.status().changed == ("restic_password_orders",)


def test_make_recovery_kit_for_the_compose_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    need("openssl")
    manifest = str(ROOT / "manifests" / "compose.yaml")
    assert cli.main(["-m", manifest, "secrets", "--dir", str(tmp_path / "s")]) == EXIT_OK
    argv = ["-m", manifest, "recovery-kit", "export", "--secrets", str(tmp_path / "s")]
    assert cli.main([*argv, "--output", "-"]) == EXIT_OK
    printed = capsys.readouterr().out
    assert "cp DIR/secrets/* compose/secrets/ && make up" in printed
    data = yaml.safe_load(printed)
    assert "inventory" not in data and "ca.key" in data["secrets"]
