"""The inventory: machines, roles, services and ports, validated against its manifest
with every problem at once, each with its path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from backup_agent import cli, inventory, manifest
from backup_agent.errors import EXIT_OK, EXIT_USAGE, ManifestError

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "manifests" / "inventory.yaml"
COMPOSE_MANIFEST = ROOT / "manifests" / "compose.yaml"
SCHEMA = ROOT / "agents" / "backup_agent" / "schema" / "inventory.schema.json"


def machines(**changes: Any) -> dict[str, Any]:
    """The four machines of the reference deployment, changed as told."""
    found: dict[str, Any] = {
        "db": {"address": "10.0.0.11", "roles": ["app"], "services": ["mysql", "files"]},
        "web": {"address": "10.0.0.12", "roles": ["app"], "services": ["grafana"]},
        "backup": {"address": "10.0.0.20", "roles": ["backup-server"]},
        "watch": {"address": "10.0.0.30", "roles": ["verifier", "monitoring"]},
    }
    found.update(changes)
    return found


def write(tmp_path: Path, data: dict[str, Any], manifest_data: Any = None) -> Path:
    """An inventory (and, when given, its own manifest) in ``tmp_path``."""
    target = COMPOSE_MANIFEST
    if manifest_data is not None:
        target = tmp_path / "manifest.yaml"
        target.write_text(yaml.safe_dump(manifest_data))
    path = tmp_path / "inventory.yaml"
    path.write_text(
        yaml.safe_dump({"version": 1, "manifest": str(target), **data}, sort_keys=False)
    )
    return path


def problems(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(ManifestError) as caught:
        inventory.load(path)
    return caught.value.problems


def compose_manifest(**changes: Any) -> dict[str, Any]:
    """manifests/compose.yaml as data, its sections changed as told."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE_MANIFEST.read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        if value is None:
            data[section].pop(key)
        else:
            data[section][key] = value
    return data


def test_the_reference_inventory_is_valid() -> None:
    loaded = inventory.load(REFERENCE)
    assert set(loaded.machines) == {"db", "grafana", "backup", "verify"}
    assert loaded.running("backup-server").name == "backup"
    assert loaded.machine("db").services == ("mysql", "files")
    assert loaded.manifest.source == str(REFERENCE.parent / "compose.yaml")


def test_every_key_of_the_schema_has_a_description_and_examples() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)

    def walk(node: Any, path: str) -> None:
        for key, child in node.get("properties", {}).items():
            assert child.get("description"), f"{path}{key}: no description"
            leaf = "properties" not in child and "$ref" not in child
            assert "examples" in child or not leaf, f"{path}{key}: no examples"
            walk(child, f"{path}{key}.")

    walk(schema, "")
    walk(schema["$defs"]["machine"], "machines.*.")


def test_metrics_ports_count_up_per_machine_unless_the_inventory_says() -> None:
    loaded = inventory.load(REFERENCE)
    assert loaded.machine("db").metrics_ports == {"mysql": 9464, "files": 9465}
    assert loaded.machine("verify").metrics_ports == {"verifier": 9464}


def test_chosen_metrics_ports_and_addresses(tmp_path: Path) -> None:
    db = {**machines()["db"], "metrics_address": "192.168.5.11"}
    path = write(tmp_path, {"machines": machines(db=db), "ports": {"metrics": {"mysql": 9465}}})
    loaded = inventory.load(path)
    assert loaded.machine("db").metrics_ports == {"mysql": 9465, "files": 9464}
    assert loaded.machine("db").metrics_address == "192.168.5.11"
    assert loaded.machine("web").metrics_address == "10.0.0.12"


def test_every_problem_at_once_with_its_path(tmp_path: Path) -> None:
    data = {
        "machines": {
            "db": {"address": "db.example.org", "roles": ["app"], "services": ["mysql", "orders"]},
            "web": {
                "address": "10.0.0.12",
                "roles": ["app", "monitoring"],
                "services": ["grafana"],
                "names": ["backup-server"],
            },
            "backup": {"address": "10.0.0.20", "roles": ["backup-server"]},
            "b2": {"address": "10.0.0.20", "roles": ["backup-server"], "services": ["files"]},
        },
        "ports": {"metrics": {"grafana": 3000, "nope": 1}},
    }
    found = problems(write(tmp_path, data))
    assert found == [
        ("machines.db.address", "'db.example.org' is not an IP address (DNS names go in names)"),
        ("machines.web.names.0", "'backup-server' is reserved"),
        ("machines.b2.services", "only a machine with role app runs services"),
        ("machines.b2.roles", "backup-server runs on backup already: one machine"),
        ("machines", "no machine has role verifier"),
        (
            "machines.db.services.1",
            "'orders' is not a service of the manifest (mysql, grafana, files)",
        ),
        ("machines.b2.address", "10.0.0.20 is backup's address too"),
        ("machines.web", "10.0.0.12:3000 is published 2 times (grafana metrics, grafana)"),
        ("ports.metrics.nope", "no such agent (have: files, grafana, maintenance, mysql, orders)"),
    ]


def test_schema_problems_come_with_their_paths(tmp_path: Path) -> None:
    data = {"machines": machines(backup={"address": "10.0.0.20", "roles": ["sideways"]})}
    data["ports"] = {"rest": 0}
    found = dict(problems(write(tmp_path, data)))
    assert "is not one of" in found["machines.backup.roles.0"]
    assert "less than the minimum" in found["ports.rest"]


def test_every_service_runs_on_exactly_one_machine(tmp_path: Path) -> None:
    web = {"address": "10.0.0.12", "roles": ["app"], "services": ["grafana", "mysql"]}
    db = {"address": "10.0.0.11", "roles": ["app"], "services": ["mysql"]}
    found = problems(write(tmp_path, {"machines": machines(db=db, web=web)}))
    assert found == [
        ("machines.web.services.1", "mysql runs on db already"),
        ("machines", "service files runs on no machine"),
    ]


def test_the_manifests_problems_are_reported_with_the_inventorys(tmp_path: Path) -> None:
    broken = compose_manifest(retention__max_age="1w")
    data = {"machines": machines(), "ports": {"rest": 99999}}
    found = problems(write(tmp_path, data, broken))
    assert [path for path, _ in found] == ["ports.rest", "manifest"]
    assert "retention.max_age: 1w is shorter than keep_within 3w" in found[1][1]


@pytest.mark.parametrize(
    ("changes", "wanted"),
    [
        (
            {"repository__url": "rest:http://backup-server:8000/{service}"},
            "repository.url: rest:http://backup-server:8000/{service} must be rest:https://",
        ),
        (
            {"repository__url": "rest:https://elsewhere:8000/{service}"},
            "repository.url: host elsewhere is not the backup server",
        ),
        (
            {"repository__url": "rest:https://backup:9000/{service}"},
            "port 9000 is not the inventory's 8000",
        ),
        (
            {"drill__repository_url": None},
            "drill.repository_url: required (the verifier's endpoint)",
        ),
        (
            {"drill__repository_url": "rest:https://10.0.0.20:8000/{service}"},
            "drill.repository_url: port 8000 is not the inventory's 8001",
        ),
        ({"repository__cacert": None}, "repository.cacert: required"),
        (
            {"maintenance__repository_url": None},
            "maintenance.repository_url: required (the repositories on disk)",
        ),
    ],
)
def test_the_manifest_must_reach_each_service_repository_over_tls(
    tmp_path: Path, changes: dict[str, Any], wanted: str
) -> None:
    found = problems(write(tmp_path, {"machines": machines()}, compose_manifest(**changes)))
    assert len(found) == 1 and found[0][0] == "manifest", found
    assert wanted in found[0][1]


def test_one_shared_repository_is_refused_for_several_machines(tmp_path: Path) -> None:
    shared = compose_manifest(
        repository__url="rest:https://backup-server:8000/agama",
        repository__password_file="/run/secrets/restic_password",
        drill__repository_url="rest:https://backup-server-verifier:8001/agama",
        maintenance__repository_url="/srv/restic/agama",
    )
    found = [why for _, why in problems(write(tmp_path, {"machines": machines()}, shared))]
    assert any("the path must be /{service}" in why for why in found), found
    assert any("repository.password_file: must name {service}" in why for why in found), found


def test_the_compose_stack_is_one_machine_with_every_role() -> None:
    stack = inventory.Inventory.single(manifest.load(COMPOSE_MANIFEST))
    (machine,) = stack.machines.values()
    assert machine.roles == inventory.ROLES
    assert machine.services == ("mysql", "grafana", "files")
    assert stack.tls_names() == (
        ("backup-server", "backup-server-verifier", "localhost"),
        ("127.0.0.1",),
    )


def test_validate_names_the_machines(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(REFERENCE)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "db (app); grafana (app); backup (backup-server); verify (verifier, monitoring)" in out


def test_validate_reports_an_invalid_inventory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path, {"machines": machines(watch={"address": "10.0.0.30", "roles": ["verifier"]})}
    )
    assert cli.main(["validate", str(path)]) == EXIT_USAGE
    assert "machines: no machine has role monitoring" in capsys.readouterr().err
