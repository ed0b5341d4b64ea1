"""Grafana job: an online, consistent copy of Grafana's state.

``grafana.db`` is copied with SQLite's backup API while Grafana runs (the source is
opened read-only, so a wrong path fails instead of creating an empty database), the
copy must pass ``PRAGMA integrity_check``, and the counts of dashboards, folders,
data sources and alert rules are recorded beside it in ``backup-meta.json`` for the
restore drill to compare. ``grafana.ini``, provisioning and plugins are backed up in
place when present.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

from backup_agent import restic, snapshots
from backup_agent.errors import BackupError
from backup_agent.jobs.base import (
    BackupResult,
    RestoreRequest,
    RestoreResult,
    scratch_directory,
)
from backup_agent.manifest import GrafanaOptions, Manifest, Service

DATABASE_NAME = "grafana.db"
META_NAME = "backup-meta.json"
# Object counts recorded at backup time; None when the table does not exist.
COUNT_QUERIES = {
    "dashboards": ("dashboard", "SELECT COUNT(*) FROM dashboard WHERE is_folder = 0"),
    "folders": ("dashboard", "SELECT COUNT(*) FROM dashboard WHERE is_folder = 1"),
    "data_sources": ("data_source", "SELECT COUNT(*) FROM data_source"),
    "alert_rules": ("alert_rule", "SELECT COUNT(*) FROM alert_rule"),
}
REQUIRED_TABLES = ("dashboard", "data_source")


def backup(manifest: Manifest, service: Service, kind: str) -> BackupResult:
    """Copy, check and count grafana.db, then snapshot it with Grafana's config files."""
    options = service.options
    assert isinstance(options, GrafanaOptions)
    if kind != "full":
        raise BackupError(f"{service.name}: a Grafana backup is always full, not {kind!r}")
    Path(manifest.work_dir).mkdir(parents=True, mode=0o700, exist_ok=True)
    # A directory of this run's own: only what the agent created is ever removed.
    staging = Path(tempfile.mkdtemp(prefix=f"{service.name}-", dir=manifest.work_dir))
    try:
        copy = staging / DATABASE_NAME
        online_copy(options.database, copy)
        check_integrity(copy, options.database)
        meta = {
            "database": options.database,
            "staging": str(staging),
            "bytes": copy.stat().st_size,
            "sha256": file_sha256(copy),
            "counts": count_objects(copy),
        }
        (staging / META_NAME).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        extras = [options.config_file, options.provisioning_dir, options.plugins_dir]
        paths = [str(staging), *(p for p in extras if p and Path(p).exists())]
        summary = restic.backup(
            manifest.repository_for(service.name), paths, snapshots.tags(service, kind)
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return BackupResult.of_summary(service, kind, summary, {**meta, "paths": paths})


def online_copy(source: str, target: Path) -> None:
    """Copy a live SQLite database with the backup API, opening the source read-only."""
    uri = f"file:{quote(source)}?mode=ro"
    try:
        with (
            closing(sqlite3.connect(uri, uri=True)) as src,
            closing(sqlite3.connect(target)) as dst,
        ):
            src.backup(dst)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy Grafana database {source}: {exc}") from exc


def check_integrity(path: Path, source: str = "") -> None:
    """Fail unless ``PRAGMA integrity_check`` says ok and the tables Grafana needs exist.

    ``source`` names the database in messages (the configured file, not the copy).
    """
    name = source or str(path)
    try:
        with closing(sqlite3.connect(path)) as db:
            result = [row[0] for row in db.execute("PRAGMA integrity_check")]
            tables = _table_names(db)
    except sqlite3.Error as exc:
        raise BackupError(f"{name} cannot be checked: {exc}") from exc
    if result != ["ok"]:
        raise BackupError(f"{name} fails integrity_check: {'; '.join(result[:5])}")
    absent = [t for t in REQUIRED_TABLES if t not in tables]
    if absent:
        raise BackupError(f"{name} is not a Grafana database (no table {', '.join(absent)})")


def count_objects(path: Path) -> dict[str, int | None]:
    """Counts of Grafana objects, the figures the restore drill compares."""
    with closing(sqlite3.connect(path)) as db:
        tables = _table_names(db)
        return {
            name: db.execute(query).fetchone()[0] if table in tables else None
            for name, (table, query) in COUNT_QUERIES.items()
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def restore(manifest: Manifest, service: Service, request: RestoreRequest) -> RestoreResult:
    """Restore grafana.db (verified) and the backed-up config into a data directory.

    grafana.db is proven against the backup's record (SHA-256, integrity_check,
    object counts) before it is moved into place; grafana.ini, provisioning and
    plugins land beside it under their own base names.
    """
    options = service.options
    assert isinstance(options, GrafanaOptions)
    target = Path(request.target or options.data_dir)
    snapshot = snapshots.select(manifest, service, request.snapshot)
    names = [
        DATABASE_NAME,
        *(
            Path(p).name
            for p in (options.config_file, options.provisioning_dir, options.plugins_dir)
        ),
    ]
    existing = [name for name in names if (target / name).exists()]
    if existing and not request.force:
        raise BackupError(
            f"{target} already holds {', '.join(existing)}: stop Grafana first and use "
            "--force to replace them"
        )
    if request.dry_run:
        return RestoreResult(
            service.name, snapshot.id, str(target), 0, ["dry run: nothing written"]
        )
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".restore-") as scratch:
        restic.restore(manifest.repository_for(service.name), snapshot.id, scratch, verify=True)
        restored = {p: Path(scratch + p) for p in snapshot.paths if clean_path(p)}
        # restic sorts a snapshot's paths: find the staged copy by its metadata file.
        staging = next((p for p in restored.values() if (p / META_NAME).is_file()), None)
        if staging is None:
            raise BackupError(
                f"snapshot {snapshot.short_id} holds no {META_NAME}: not a Grafana backup"
            )
        meta = json.loads((staging / META_NAME).read_text(encoding="utf-8"))
        verified = verify_database(staging / DATABASE_NAME, meta)
        # Only the names this service backs up are replaced in the target: a snapshot
        # is hostile input, and its paths must not choose what is removed there.
        extras = (options.config_file, options.provisioning_dir, options.plugins_dir)
        ours = {Path(p).name for p in extras}
        skipped = []
        for path in snapshot.paths:
            where = restored.get(path)
            if where is None or (where != staging and Path(path).name not in ours):
                skipped.append(path)
            elif where != staging:
                _replace(where, target / Path(path).name)
        if skipped:
            verified.append(f"not restored (not this service's paths): {', '.join(skipped)}")
        _replace(staging / DATABASE_NAME, target / DATABASE_NAME)
    return RestoreResult(service.name, snapshot.id, str(target), int(meta["bytes"]), verified)


def clean_path(path: str) -> bool:
    """Whether a snapshot path is one a real backup has: absolute, not '/', without
    '.', '..' or empty parts (restic writes them clean; a forged snapshot may not)."""
    return path.startswith("/") and path != "/" and posixpath.normpath(path) == path


def drill(manifest: Manifest, service: Service) -> RestoreResult:
    """Drill: restore the newest snapshot to a scratch directory and prove grafana.db."""
    with scratch_directory(manifest, service) as scratch:
        return restore(manifest, service, RestoreRequest(target=str(scratch)))


def verify_database(path: Path, meta: dict[str, object]) -> list[str]:
    """Prove a restored grafana.db equals the one backed up; raise on any difference."""
    digest = file_sha256(path)
    if digest != meta["sha256"]:
        raise BackupError(f"restored {path.name} has SHA-256 {digest}, recorded {meta['sha256']}")
    check_integrity(path)
    counts = count_objects(path)
    if counts != meta["counts"]:
        raise BackupError(f"restored {path.name} has counts {counts}, recorded {meta['counts']}")
    return [f"SHA-256 {digest[:16]}... matches", "integrity_check ok", f"counts match {counts}"]


def _replace(source: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    source.rename(target)


def _table_names(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
