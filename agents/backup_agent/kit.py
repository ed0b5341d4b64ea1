"""The recovery kit: what a person needs when a machine is gone, in one file kept off
every machine.

``export`` writes every secret of the deployment (repository passwords, the drill key,
the CA certificate and key, rest-server users, the database and Grafana passwords),
the inventory, the manifest and a short runbook into one YAML file, readable on paper,
and records the export beside the secrets: when, and a salted fingerprint (PBKDF2) of
each secret. ``unpack`` turns a kit back into a secrets directory, an inventory and a
manifest, from which ``bundle`` rebuilds any machine.

The backup server's maintenance role holds the record (``maintenance.recovery_kit_file``)
and compares the secrets it holds with it (``Watch``): no kit ever exported, or a
secret changed since the last one, becomes a metric and an alert. Without the kit,
losing the machine that holds the secrets makes every backup unreadable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from backup_agent import __version__, secret_store
from backup_agent.errors import BackupError
from backup_agent.inventory import Inventory
from backup_agent.manifest import FilesOptions
from backup_agent.manifest.loading import read_document

KIT_FORMAT = 1
ITERATIONS = 100_000  # PBKDF2-SHA256: a record does not give away a weak password
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MANIFEST_KEY = re.compile(r"^manifest:.*$", re.MULTILINE)

RUNBOOK = """\
# backup-agent RECOVERY KIT of {project}, exported {exported}
#
# Keep it OFF every machine of the deployment (a safe, a password manager, paper) and
# never in a backup it unlocks: whoever holds it can read every backup.
#
# When a machine is gone (README: "Disaster recovery runbook"), on a machine with
# backup-agent {version} and the project's compose files:
#   backup-agent recovery-kit unpack THIS-FILE --to DIR
{steps}"""
MACHINES = """\
#   backup-agent bundle MACHINE --inventory DIR/inventory.yaml --secrets DIR/secrets \\
#     --output BUNDLE          then copy BUNDLE to the new machine, and there:
#   ./up.sh mysql; docker compose run --rm mysql-restore restore mysql; ./up.sh
#   ./up.sh grafana; docker compose stop grafana;
#     docker compose run --rm grafana-restore restore grafana --force; ./up.sh
#   ./up.sh files-agent; docker compose run --rm files-restore          (files)
#   The backup server: its bundle, ./up.sh (with the old repository volume if it
#   survived), then on each application machine
#     docker compose exec SERVICE-agent backup-agent backup SERVICE
#   and a drill on the verifier: docker compose exec verifier backup-agent drill
"""
ONE_MACHINE = """\
#   cp DIR/secrets/* compose/secrets/ && make up          (the compose stack)
#   scripts/compose.sh run --rm mysql-restore restore mysql
#   make drill
"""


@dataclass(frozen=True)
class Status:
    """What the record says about the secrets a role holds."""

    exported: float  # Unix time of the last export; 0 if none
    current: bool  # every held secret is in the last kit, unchanged
    changed: tuple[str, ...] = ()  # held secrets missing from it or changed since


def fingerprint(content: bytes, salt: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", content, salt, ITERATIONS).hex()


def export(
    inventory: Inventory,
    secrets_dir: Path,
    output: Path | None,
    *,
    single: bool = False,
    force: bool = False,
    now: datetime | None = None,
) -> str:
    """Write the kit to ``output`` (None: return it only, to print), record the export
    in ``secrets_dir``, and return the kit's text."""
    now = now or datetime.now(UTC)
    names = [n for n in secret_store.catalog(inventory) if n != secret_store.RECORD]
    missing = [n for n in names if not (secrets_dir / n).is_file()]
    if missing:
        raise BackupError(
            f"{secrets_dir} lacks {', '.join(missing)}: run backup-agent secrets first"
        )
    if output is not None:
        _refuse_place(inventory, secrets_dir, output, force)
    values = {n: (secrets_dir / n).read_text(encoding="utf-8") for n in names}
    inventory_file = "inventory.yaml"
    data: dict[str, Any] = {
        "kit": KIT_FORMAT,
        "project": inventory.project,
        "exported": now.isoformat(timespec="seconds"),
        "backup_agent": __version__,
        "manifest_file": inventory.manifest_file.name,
        "manifest": inventory.manifest_file.read_text(encoding="utf-8"),
        "secrets": values,
    }
    salt = secrets.token_bytes(16)
    record = {
        "exported": now.timestamp(),
        "exported_at": data["exported"],
        "salt": salt.hex(),
        "iterations": ITERATIONS,
        "fingerprints": {n: fingerprint(v.encode(), salt) for n, v in values.items()},
    }
    # A backup server rebuilt from the kit knows the kit is current.
    data["record"] = json.dumps(record, indent=1) + "\n"
    if not single:
        data["inventory_file"] = inventory_file
        data["inventory"] = Path(inventory.source).read_text(encoding="utf-8")
    header = RUNBOOK.format(
        project=inventory.project,
        exported=data["exported"],
        version=__version__,
        steps=ONE_MACHINE if single else MACHINES,
    )
    text = header + yaml.dump(data, Dumper=_Literal, sort_keys=False, allow_unicode=True)
    if output is not None:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    write_in_place(secrets_dir / secret_store.RECORD, data["record"])
    return text


def unpack(kit: Path, target: Path) -> list[str]:
    """Write a kit's secrets, manifest and inventory below ``target`` (new or empty);
    returns the files written."""
    data = read_document(kit)
    if not isinstance(data, dict) or data.get("kit") != KIT_FORMAT:
        raise BackupError(f"{kit}: not a backup-agent recovery kit (format {KIT_FORMAT})")
    files: dict[Any, Any] = {data.get("manifest_file"): data.get("manifest")}
    if "inventory" in data:
        # The manifest lies beside the unpacked inventory, whatever path it had.
        text = _MANIFEST_KEY.sub(f"manifest: {data.get('manifest_file')}", str(data["inventory"]))
        files[data.get("inventory_file")] = text
    stored = data.get("secrets")
    if not isinstance(stored, dict):
        raise BackupError(f"{kit}: no secrets in it")
    stored = {**stored, secret_store.RECORD: data.get("record", "")}
    for name, value in [*files.items(), *stored.items()]:
        if not (isinstance(name, str) and _NAME.match(name) and isinstance(value, str)):
            raise BackupError(f"{kit}: {str(name)[:60]!r} is not a file name with text")
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty: unpack into a new directory")
    secrets_dir = target / "secrets"
    secrets_dir.mkdir(parents=True, mode=0o700)
    target.chmod(0o700)
    written = []
    for name, value in files.items():
        (target / name).write_text(value, encoding="utf-8")
        written.append(name)
    for name, value in stored.items():
        secret_store.write_private(secrets_dir / name, value)
        secret_store.share(secrets_dir / name)
        written.append(f"secrets/{name}")
    return written


class Watch:
    """The kit status of the secrets a role holds, recomputed only when a file changed."""

    def __init__(self, record: str, held: Mapping[str, str]) -> None:
        self.record = record
        self.held = dict(held)
        self._key: tuple[object, ...] | None = None
        self._status = Status(0.0, False)

    def status(self) -> Status:
        key = tuple(_signature(p) for p in (self.record, *self.held.values()))
        if key != self._key:
            self._status = status(Path(self.record), {n: Path(p) for n, p in self.held.items()})
            self._key = key
        return self._status


def status(record: Path, held: Mapping[str, Path]) -> Status:
    """Compare the held secrets (by file name) with the record of the last export."""
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Status(0.0, False)
    exported = data.get("exported") if isinstance(data, dict) else None
    if not isinstance(exported, int | float) or exported <= 0:
        return Status(0.0, False)
    salt = bytes.fromhex(str(data.get("salt", "")))
    known = data.get("fingerprints", {})
    changed = []
    for name, path in sorted(held.items()):
        try:
            current = fingerprint(path.read_bytes(), salt)
        except OSError:
            continue  # not held after all
        if not hmac.compare_digest(str(known.get(name, "")), current):
            changed.append(name)
    return Status(float(exported), not changed, tuple(changed))


def held_by(paths: Sequence[str | None]) -> dict[str, str]:
    """The secrets a role holds, by file name (the name they have in the kit)."""
    return {Path(p).name: p for p in paths if p}


def write_in_place(path: Path, text: str) -> None:
    """Overwrite a file keeping its inode: a container that bind-mounts it sees the change."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    secret_store.share(path)


def _refuse_place(inventory: Inventory, secrets_dir: Path, output: Path, force: bool) -> None:
    """Never beside the secrets, never where a backup would take it along."""
    where = output.resolve()
    backed_up = [
        Path(p)
        for service in inventory.manifest.services.values()
        if isinstance(service.options, FilesOptions)
        for p in service.options.paths
    ] + [Path(m.env["FILES_PATH"]) for m in inventory.machines.values() if "FILES_PATH" in m.env]
    for place in (secrets_dir, *backed_up):
        if where.is_relative_to(place.resolve()):
            raise BackupError(f"{output} is inside {place}: keep the kit off the machines")
    if output.exists() and not force:
        raise BackupError(f"{output} exists (--force replaces it)")


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class _Literal(yaml.SafeDumper):
    """Multi-line text (PEM, option files, YAML) as literal blocks, readable on paper."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Literal.add_representer(str, _text)
