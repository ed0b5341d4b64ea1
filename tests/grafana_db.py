"""A test stand-in for Grafana's state: Grafana's SQLite table layout, not Grafana.

The ``CREATE TABLE`` statements below have the columns, types, defaults and column
order that Grafana's migrations leave in ``grafana.db`` on SQLite (as a
``sqlite3 grafana.db .dump`` of Grafana 11.5 shows them: ``dashboard`` with
``folder_uid`` and ``deleted``, ``data_source`` with ``uid`` and ``api_version``,
``alert_rule`` with ``notification_settings`` and ``metadata``, the nested-folder
``folder`` table, ``migration_log``, ``user`` and ``org``). Only those tables are
created, and rows are written by the helpers here, not by Grafana: the database is
a realistic input for the backup job, it does not show how Grafana itself behaves.

``make_grafana_dirs`` lays out a Grafana-like installation around it: a data
directory with ``grafana.db`` and ``plugins/``, and a configuration directory with
``grafana.ini`` and ``provisioning/``.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

NOW = "2026-01-05 10:00:00"
# Where uids come from; the bench seeds it for the same database in every run.
UIDS = random.Random()

TABLES: dict[str, str] = {
    "migration_log": """CREATE TABLE `migration_log` (
`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL
, `migration_id` TEXT NOT NULL
, `sql` TEXT NOT NULL
, `success` INTEGER NOT NULL
, `error` TEXT NOT NULL
, `timestamp` DATETIME NOT NULL
)""",
    "user": """CREATE TABLE `user` (
`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL
, `version` INTEGER NOT NULL
, `login` TEXT NOT NULL
, `email` TEXT NOT NULL
, `name` TEXT NULL
, `password` TEXT NULL
, `salt` TEXT NULL
, `rands` TEXT NULL
, `company` TEXT NULL
, `org_id` INTEGER NOT NULL
, `is_admin` INTEGER NOT NULL
, `email_verified` INTEGER NULL
, `theme` TEXT NULL
, `created` DATETIME NOT NULL
, `updated` DATETIME NOT NULL
, `help_flags1` INTEGER NOT NULL DEFAULT 0, `last_seen_at` DATETIME NULL,"""
    """ `is_disabled` INTEGER NOT NULL DEFAULT 0, is_service_account BOOLEAN DEFAULT 0,"""
    """ `uid` TEXT NULL)""",
    "org": """CREATE TABLE `org` (
`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL
, `version` INTEGER NOT NULL
, `name` TEXT NOT NULL
, `address1` TEXT NULL
, `address2` TEXT NULL
, `city` TEXT NULL
, `state` TEXT NULL
, `zip_code` TEXT NULL
, `country` TEXT NULL
, `billing_email` TEXT NULL
, `created` DATETIME NOT NULL
, `updated` DATETIME NOT NULL
)""",
    "dashboard": """CREATE TABLE `dashboard` (
`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL
, `version` INTEGER NOT NULL
, `slug` TEXT NOT NULL
, `title` TEXT NOT NULL
, `data` TEXT NOT NULL
, `org_id` INTEGER NOT NULL
, `created` DATETIME NOT NULL
, `updated` DATETIME NOT NULL
, `updated_by` INTEGER NULL, `created_by` INTEGER NULL, `gnet_id` INTEGER NULL,"""
    """ `plugin_id` TEXT NULL, `folder_id` INTEGER NOT NULL DEFAULT 0,"""
    """ `is_folder` INTEGER NOT NULL DEFAULT 0, `has_acl` INTEGER NOT NULL DEFAULT 0,"""
    """ `uid` TEXT NULL, `is_public` INTEGER NOT NULL DEFAULT 0, `deleted` DATETIME NULL,"""
    """ `folder_uid` TEXT NULL)""",
    "data_source": """CREATE TABLE `data_source` (
`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL
, `org_id` INTEGER NOT NULL
, `version` INTEGER NOT NULL
, `type` TEXT NOT NULL
, `name` TEXT NOT NULL
, `access` TEXT NOT NULL
, `url` TEXT NOT NULL
, `password` TEXT NULL
, `user` TEXT NULL
, `database` TEXT NULL
, `basic_auth` INTEGER NOT NULL
, `basic_auth_user` TEXT NULL
, `basic_auth_password` TEXT NULL
, `is_default` INTEGER NOT NULL
, `json_data` TEXT NULL
, `created` DATETIME NOT NULL
, `updated` DATETIME NOT NULL
, `with_credentials` INTEGER NOT NULL DEFAULT 0, `secure_json_data` TEXT NULL,"""
    """ `read_only` INTEGER NULL, `uid` TEXT NOT NULL DEFAULT 0,"""
    """ `is_prunable` INTEGER NULL DEFAULT 0, `api_version` TEXT NULL)""",
    "folder": """CREATE TABLE `folder` (
`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL
, `uid` TEXT NOT NULL
, `org_id` INTEGER NOT NULL
, `title` TEXT NOT NULL
, `description` TEXT NULL
, `parent_uid` TEXT NULL
, `created` DATETIME NOT NULL
, `updated` DATETIME NOT NULL
)""",
    "alert_rule": """CREATE TABLE `alert_rule` (
`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL
, `org_id` INTEGER NOT NULL
, `title` TEXT NOT NULL
, `condition` TEXT NOT NULL
, `data` TEXT NOT NULL
, `updated` DATETIME NOT NULL
, `interval_seconds` INTEGER NOT NULL DEFAULT 60
, `version` INTEGER NOT NULL DEFAULT 0
, `uid` TEXT NOT NULL DEFAULT 0
, `namespace_uid` TEXT NOT NULL
, `rule_group` TEXT NOT NULL
, `no_data_state` TEXT NOT NULL DEFAULT 'NoData'
, `exec_err_state` TEXT NOT NULL DEFAULT 'Alerting'
, `for` INTEGER NOT NULL DEFAULT 0, `annotations` TEXT NULL, `labels` TEXT NULL,"""
    """ `dashboard_uid` TEXT NULL, `panel_id` INTEGER NULL,"""
    """ `rule_group_idx` INTEGER NOT NULL DEFAULT 1, `is_paused` INTEGER NOT NULL DEFAULT 0,"""
    """ `notification_settings` TEXT NULL, `record` TEXT NULL, `metadata` TEXT NULL)""",
}

INDEXES = (
    "CREATE UNIQUE INDEX `UQE_user_login` ON `user` (`login`)",
    "CREATE UNIQUE INDEX `UQE_user_email` ON `user` (`email`)",
    "CREATE INDEX `IDX_dashboard_org_id` ON `dashboard` (`org_id`)",
    "CREATE INDEX `IDX_dashboard_gnet_id` ON `dashboard` (`gnet_id`)",
    "CREATE INDEX `IDX_dashboard_org_id_plugin_id` ON `dashboard` (`org_id`,`plugin_id`)",
    "CREATE UNIQUE INDEX `UQE_dashboard_org_id_uid` ON `dashboard` (`org_id`,`uid`)",
    "CREATE INDEX `IDX_dashboard_title` ON `dashboard` (`title`)",
    "CREATE INDEX `IDX_dashboard_is_folder` ON `dashboard` (`is_folder`)",
    "CREATE INDEX `IDX_dashboard_org_id_folder_id_title` ON `dashboard`"
    " (`org_id`,`folder_id`,`title`)",
    "CREATE INDEX `IDX_data_source_org_id` ON `data_source` (`org_id`)",
    "CREATE UNIQUE INDEX `UQE_data_source_org_id_name` ON `data_source` (`org_id`,`name`)",
    "CREATE UNIQUE INDEX `UQE_folder_org_id_uid` ON `folder` (`org_id`,`uid`)",
    "CREATE UNIQUE INDEX `UQE_alert_rule_org_id_uid` ON `alert_rule` (`org_id`,`uid`)",
    "CREATE INDEX `IDX_alert_rule_org_id_namespace_uid_rule_group` ON `alert_rule`"
    " (`org_id`,`namespace_uid`,`rule_group`)",
)


def new_uid() -> str:
    """A Grafana-style uid: 14 lower-case letters and digits."""
    return "e" + UIDS.randbytes(7).hex()[:13]


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "dashboard"


def connect(path: Path) -> sqlite3.Connection:
    """A connection as a second process (Grafana) would hold it; waits on locks."""
    return sqlite3.connect(path, timeout=30)


def create_database(path: Path, journal_mode: str = "delete") -> None:
    """Create an empty ``grafana.db``: the tables, one org and its admin user."""
    with closing(connect(path)) as db:
        mode = db.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0]
        if mode != journal_mode:
            raise RuntimeError(f"journal_mode {journal_mode} refused, got {mode}")
        with db:
            for name, statement in TABLES.items():
                db.execute(statement)
                db.execute(
                    "INSERT INTO migration_log (migration_id, sql, success, error, timestamp)"
                    " VALUES (?, ?, 1, '', ?)",
                    (f"create {name} table", statement, NOW),
                )
            for statement in INDEXES:
                db.execute(statement)
            db.execute(
                "INSERT INTO org (version, name, address1, address2, city, state, zip_code,"
                " country, billing_email, created, updated)"
                " VALUES (0, 'Main Org.', '', '', '', '', '', '', NULL, ?, ?)",
                (NOW, NOW),
            )
            db.execute(
                "INSERT INTO user (version, login, email, name, password, salt, rands, company,"
                " org_id, is_admin, email_verified, theme, created, updated, uid)"
                " VALUES (0, 'admin', 'admin@localhost', '', ?, 'salt', 'rands', '',"
                " 1, 1, 0, '', ?, ?, ?)",
                ("0" * 100, NOW, NOW, new_uid()),
            )


def add_folder(db: sqlite3.Connection, title: str) -> str:
    """A folder, as Grafana 11 stores it: a ``dashboard`` row with is_folder=1 plus a
    ``folder`` row with the same uid. Returns the uid; the caller commits."""
    uid = new_uid()
    data = {"schemaVersion": 17, "title": title, "uid": uid, "version": 1}
    db.execute(
        "INSERT INTO dashboard (version, slug, title, data, org_id, created, updated,"
        " updated_by, created_by, gnet_id, plugin_id, folder_id, is_folder, has_acl, uid,"
        " is_public) VALUES (1, ?, ?, ?, 1, ?, ?, 1, 1, 0, '', 0, 1, 0, ?, 0)",
        (slugify(title), title, json.dumps(data), NOW, NOW, uid),
    )
    db.execute(
        "INSERT INTO folder (uid, org_id, title, description, parent_uid, created, updated)"
        " VALUES (?, 1, ?, '', NULL, ?, ?)",
        (uid, title, NOW, NOW),
    )
    return uid


def dashboard_json(title: str, uid: str, datasource_uid: str, panels: int) -> str:
    """A dashboard model with ``panels`` time-series panels, like the ones Grafana saves."""
    return json.dumps(
        {
            "annotations": {"list": [{"builtIn": 1, "name": "Annotations & Alerts"}]},
            "editable": True,
            "panels": [
                {
                    "datasource": {"type": "prometheus", "uid": datasource_uid},
                    "gridPos": {"h": 8, "w": 12, "x": 12 * (n % 2), "y": 8 * (n // 2)},
                    "id": n + 1,
                    "targets": [{"expr": f'rate(http_requests_total{{code="{n}"}}[5m])'}],
                    "title": f"{title} — panel {n + 1}",
                    "type": "timeseries",
                }
                for n in range(panels)
            ],
            "schemaVersion": 40,
            "tags": ["backup-test"],
            "time": {"from": "now-6h", "to": "now"},
            "title": title,
            "uid": uid,
            "version": 1,
        },
        ensure_ascii=False,
    )


def add_dashboard(
    db: sqlite3.Connection,
    title: str,
    *,
    folder_uid: str | None = None,
    datasource_uid: str = "",
    panels: int = 6,
) -> str:
    """A dashboard, optionally in a folder. Returns its uid; the caller commits."""
    uid = new_uid()
    folder_id = 0
    if folder_uid is not None:
        folder_id = int(
            db.execute(
                "SELECT id FROM dashboard WHERE uid = ? AND is_folder = 1", (folder_uid,)
            ).fetchone()[0]
        )
    db.execute(
        "INSERT INTO dashboard (version, slug, title, data, org_id, created, updated,"
        " updated_by, created_by, gnet_id, plugin_id, folder_id, is_folder, has_acl, uid,"
        " is_public, deleted, folder_uid)"
        " VALUES (1, ?, ?, ?, 1, ?, ?, 1, 1, 0, '', ?, 0, 0, ?, 0, NULL, ?)",
        (
            slugify(title),
            title,
            dashboard_json(title, uid, datasource_uid, panels),
            NOW,
            NOW,
            folder_id,
            uid,
            folder_uid,
        ),
    )
    return uid


def add_data_source(
    db: sqlite3.Connection,
    name: str,
    *,
    type_: str = "prometheus",
    url: str = "http://prometheus:9090",
    is_default: bool = False,
) -> str:
    """A data source with its JSON settings. Returns its uid; the caller commits."""
    uid = new_uid()
    db.execute(
        "INSERT INTO data_source (org_id, version, type, name, access, url, password, user,"
        " database, basic_auth, basic_auth_user, basic_auth_password, is_default, json_data,"
        " created, updated, with_credentials, secure_json_data, read_only, uid, is_prunable,"
        " api_version) VALUES (1, 1, ?, ?, 'proxy', ?, '', '', '', 0, '', '', ?, ?, ?, ?, 0,"
        " '{}', 0, ?, 0, '')",
        (
            type_,
            name,
            url,
            int(is_default),
            json.dumps({"httpMethod": "POST", "timeInterval": "15s"}),
            NOW,
            NOW,
            uid,
        ),
    )
    return uid


def add_alert_rule(
    db: sqlite3.Connection,
    title: str,
    *,
    folder_uid: str,
    datasource_uid: str,
    rule_group: str = "default",
    dashboard_uid: str | None = None,
) -> str:
    """A Grafana-managed alert rule (query A, threshold C). Returns its uid; the caller
    commits."""
    uid = new_uid()
    data = [
        {
            "refId": "A",
            "relativeTimeRange": {"from": 600, "to": 0},
            "datasourceUid": datasource_uid,
            "model": {"expr": "up == 0", "instant": True, "refId": "A"},
        },
        {
            "refId": "C",
            "relativeTimeRange": {"from": 0, "to": 0},
            "datasourceUid": "__expr__",
            "model": {"expression": "A", "type": "threshold", "refId": "C"},
        },
    ]
    db.execute(
        "INSERT INTO alert_rule (org_id, title, condition, data, updated, interval_seconds,"
        " version, uid, namespace_uid, rule_group, no_data_state, exec_err_state, `for`,"
        " annotations, labels, dashboard_uid, panel_id, rule_group_idx, is_paused,"
        " notification_settings, record, metadata)"
        " VALUES (1, ?, 'C', ?, ?, 60, 1, ?, ?, ?, 'NoData', 'Error', 300000000000, ?, '',"
        " ?, ?, 1, 0, '', '', '')",
        (
            title,
            json.dumps(data),
            NOW,
            uid,
            folder_uid,
            rule_group,
            json.dumps({"summary": f"{title} fired"}),
            dashboard_uid,
            1 if dashboard_uid else None,
        ),
    )
    return uid


@dataclass(frozen=True)
class Contents:
    """What ``populate`` created, for tests that add more of the same."""

    folder_uids: tuple[str, ...]
    datasource_uids: tuple[str, ...]


def populate(
    db: sqlite3.Connection,
    *,
    folders: int = 2,
    dashboards: int = 12,
    data_sources: int = 3,
    alert_rules: int = 4,
    panels: int = 6,
) -> Contents:
    """Folders, dashboards of ``panels`` panels spread over them (and the General
    folder), data sources and alert rules, in one transaction."""
    with db:
        folder_uids = tuple(add_folder(db, f"Team {n} ✓") for n in range(folders))
        datasource_uids = tuple(
            add_data_source(db, f"Prometheus {n}", is_default=n == 0) for n in range(data_sources)
        )
        for n in range(dashboards):
            add_dashboard(
                db,
                f"Service {n} — Übersicht",
                folder_uid=folder_uids[n % folders] if folders and n % 3 else None,
                datasource_uid=datasource_uids[n % data_sources] if data_sources else "",
                panels=panels,
            )
        for n in range(alert_rules):
            add_alert_rule(
                db,
                f"Instance {n} down",
                folder_uid=folder_uids[n % folders],
                datasource_uid=datasource_uids[0],
            )
    return Contents(folder_uids, datasource_uids)


QUERYABLE = frozenset(TABLES)


def read_rows(path: Path, table: str) -> list[tuple[object, ...]]:
    """Every row of ``table``, in id order, through a read-only connection."""
    if table not in QUERYABLE:
        raise ValueError(f"unknown table {table!r}")
    with closing(sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)) as db:
        query = f"SELECT * FROM `{table}` ORDER BY id"
        return [tuple(row) for row in db.execute(query)]


@dataclass(frozen=True)
class GrafanaDirs:
    """A Grafana installation laid out like the package's (/var/lib/grafana, /etc/grafana)."""

    data_dir: Path
    database: Path
    plugins_dir: Path
    config_file: Path
    provisioning_dir: Path


GRAFANA_INI = """\
# grafana.ini for the backup tests
[paths]
data = {data_dir}
plugins = {plugins_dir}
provisioning = {provisioning_dir}

[database]
type = sqlite3
path = grafana.db
wal = {wal}

[security]
admin_user = admin
"""

DATASOURCES_YAML = """\
apiVersion: 1
datasources:
  - name: Prometheus
    type: prometheus
    access: proxy
    url: http://prometheus:9090
    isDefault: true
"""

PLUGIN_JSON = {
    "type": "panel",
    "name": "Some Plugin",
    "id": "some-plugin",
    "info": {"version": "1.2.3", "author": {"name": "Backup tests"}},
    "dependencies": {"grafanaDependency": ">=10.0.0"},
}


def make_grafana_dirs(
    data_dir: Path, config_dir: Path, journal_mode: str = "delete"
) -> GrafanaDirs:
    """``data_dir/grafana.db`` (empty Grafana tables), ``data_dir/plugins/some-plugin``,
    ``config_dir/grafana.ini`` and ``config_dir/provisioning/datasources/ds.yaml``."""
    dirs = GrafanaDirs(
        data_dir=data_dir,
        database=data_dir / "grafana.db",
        plugins_dir=data_dir / "plugins",
        config_file=config_dir / "grafana.ini",
        provisioning_dir=config_dir / "provisioning",
    )
    plugin = dirs.plugins_dir / "some-plugin"
    plugin.mkdir(parents=True)
    (plugin / "plugin.json").write_text(json.dumps(PLUGIN_JSON, indent=2) + "\n")
    (plugin / "module.js").write_bytes(b"define([], function () { return {}; });\n" * 50)
    (dirs.provisioning_dir / "datasources").mkdir(parents=True)
    (dirs.provisioning_dir / "dashboards").mkdir()
    (dirs.provisioning_dir / "datasources" / "ds.yaml").write_text(DATASOURCES_YAML)
    dirs.config_file.write_text(
        GRAFANA_INI.format(
            data_dir=data_dir,
            plugins_dir=dirs.plugins_dir,
            provisioning_dir=dirs.provisioning_dir,
            wal=str(journal_mode == "wal").lower(),
        )
    )
    create_database(dirs.database, journal_mode)
    return dirs
