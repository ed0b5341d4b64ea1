"""The secrets of a deployment: created once in one directory, handed out per machine.

One directory (the compose stack's ``compose/secrets``, or the one ``backup-agent
bundle`` is given) holds every secret of the deployment and the TLS files. What is
missing is created with strong random values and never printed; what exists is kept
(delete a file to rotate it). ``needed_by`` says which files one machine gets: a
sidecar only its own service's repository password and rest-server user, the backup
server the rest-server users, its certificate and key, the verifier and the
maintenance role every repository password and the drill key. The CA key goes to no
machine: it stays here and in the recovery kit.

S3 key pairs (``s3_<user>``, AWS credentials files) are made when the manifest keeps
its repositories or their copy on S3, or when asked (``s3=True``: the compose stack,
whose BACKUP_STORE=s3 and rest+s3 modes use them): one per sidecar
(``s3_<service>_agent``), the verifier, the maintenance role (the buckets' owner) and,
for a copy, its bucket's owner and the appending ``copy`` user.

Files get mode 0640 and group 10001 (the agents' ``backup`` user, which reads them
through bind mounts), the CA key 0600, the directory 0700.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from backup_agent import pki
from backup_agent.inventory import Inventory, Machine

log = logging.getLogger(__name__)

GROUP = 10001  # the backup user's group in the agent and server images
RECORD = "recovery-kit.json"  # when the last recovery kit was exported, and of what
RANDOM_BYTES = 32
PRIVATE = frozenset({pki.CA_KEY})  # mode 0600, to no machine
TLS = (pki.CA_CERT, pki.CA_KEY, pki.SERVER_CERT, pki.SERVER_KEY)


def _random() -> str:
    return secrets.token_hex(RANDOM_BYTES) + "\n"


def _user(name: str) -> Callable[[Path], str]:
    return lambda _: f"{name}:{secrets.token_hex(RANDOM_BYTES)}\n"


def _s3_key_pair(_: Path) -> str:
    """An AWS credentials file: an access key of 20 upper-case hex digits (as AWS's look)
    and a 256-bit secret key."""
    access = secrets.token_hex(10).upper()
    return (
        f"[default]\naws_access_key_id = {access}\n"
        f"aws_secret_access_key = {secrets.token_hex(RANDOM_BYTES)}\n"
    )


def s3_users(inventory: Inventory, s3: bool = False) -> list[str]:
    """The S3 users that get a key pair: none unless the manifest reaches S3 or ``s3``."""
    loaded = inventory.manifest
    copy = loaded.maintenance.copy
    on_s3 = loaded.repository.url.startswith("s3:")
    copy_on_s3 = copy is not None and copy.repository.url.startswith("s3:")
    users: list[str] = []
    if s3 or on_s3:
        users += [f"{name}_agent" for name in loaded.services] + ["verifier", "maintenance"]
    if s3 or copy_on_s3:
        users += ["owner", "copy"]
    return users


def _cnf(user: str, password: Callable[[Path], str]) -> Callable[[Path], str]:
    return lambda directory: f"[client]\nuser={user}\npassword={password(directory)}\n"


def _root_password(directory: Path) -> str:
    return (directory / "mysql_root_password").read_text().strip()


def generated(inventory: Inventory, s3: bool = False) -> dict[str, Callable[[Path], str]]:
    """Every secret file of the deployment with how to make it, in creation order
    (``s3``: the S3 key pairs too, see ``s3_users``)."""
    loaded = inventory.manifest
    made: dict[str, Callable[[Path], str]] = {}
    for service in loaded.services.values():
        made[f"restic_password_{service.name}"] = lambda _: _random()
        made[f"rest_{service.name}"] = _user(service.name)
        if service.type == "mysql":
            made["mysql_root_password"] = lambda _: _random()
            made["mysql_backup.cnf"] = _cnf("backup", lambda _: secrets.token_hex(RANDOM_BYTES))
            # Restores load dumps with DEFINER clauses, routines and events: the admin account.
            made["mysql_restore.cnf"] = _cnf("root", _root_password)
        if service.type == "grafana":
            made["grafana_admin_password"] = lambda _: _random()
    made["rest_verifier"] = _user("verifier")
    made["drill_key"] = lambda _: _random()
    made["dashboard_admin_password"] = lambda _: _random()
    for user in s3_users(inventory, s3):
        made[f"s3_{user}"] = _s3_key_pair
    return made


def catalog(inventory: Inventory, s3: bool = False) -> list[str]:
    """Every file of the secrets directory: secrets, TLS files and the kit record."""
    return [*generated(inventory, s3), *TLS, RECORD]


def needed_by(inventory: Inventory, machine: Machine) -> list[str]:
    """The files ``machine`` gets, in catalog order (never the CA key)."""
    services = list(inventory.manifest.services)
    need = {pki.CA_CERT}
    for service in machine.services:
        need |= {f"restic_password_{service}", f"rest_{service}", f"s3_{service}_agent"}
        if service == "mysql":
            need |= {"mysql_root_password", "mysql_backup.cnf", "mysql_restore.cnf"}
        if service == "grafana":
            need.add("grafana_admin_password")
    every_password = {f"restic_password_{s}" for s in services}
    if "backup-server" in machine.roles:
        need |= every_password | {f"rest_{s}" for s in services}
        need |= {"rest_verifier", "drill_key", pki.SERVER_CERT, pki.SERVER_KEY, RECORD}
        need |= {"s3_maintenance", "s3_copy"}  # the owner's key pair stays here (s3-setup)
    if "verifier" in machine.roles:
        need |= every_password | {"rest_verifier", "drill_key", "s3_verifier"}
    if "monitoring" in machine.roles:
        need.add("dashboard_admin_password")
    return [name for name in catalog(inventory) if name in need and name not in PRIVATE]


def ensure(inventory: Inventory, directory: Path, s3: bool = False) -> list[str]:
    """Create what is missing in ``directory`` (secrets, the CA, the server certificate,
    an empty kit record; ``s3``: the S3 key pairs too); returns the names created.
    Nothing is printed."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    created = []
    for name, make in generated(inventory, s3).items():
        path = directory / name
        if not path.exists():
            write_private(path, make(directory))
            created.append(name)
    if pki.ensure_ca(directory, inventory.project):
        created += [pki.CA_CERT, pki.CA_KEY]
    dns, ips = inventory.tls_names()
    if pki.ensure_server(directory, dns, ips):
        created += [pki.SERVER_CERT, pki.SERVER_KEY]
    if not (directory / RECORD).exists():
        write_private(directory / RECORD, json.dumps({"exported": None}) + "\n")
        created.append(RECORD)
    for name in catalog(inventory, s3):
        share(directory / name)
    return created


def write_private(path: Path, text: str) -> None:
    """Write a new file that nobody else can read until ``share``; atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    temporary.replace(path)


def share(path: Path) -> None:
    """Mode 0640 and group 10001 (the CA key: 0600); a failing chgrp is left to the
    machine's own start script (compose/hosts/up.sh), which runs as root."""
    path.chmod(0o600 if path.name in PRIVATE else 0o640)
    if path.name in PRIVATE or path.stat().st_gid == GROUP:
        return
    try:
        os.chown(path, -1, GROUP)
    except PermissionError:
        log.debug("cannot give %s group %d here", path, GROUP)
