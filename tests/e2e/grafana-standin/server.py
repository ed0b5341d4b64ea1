"""TEST STAND-IN for Grafana, not Grafana: keeps a real SQLite ``grafana.db`` with
Grafana's table layout (``tests/grafana_db.py``) and serves three endpoints of
Grafana's HTTP API, so the air-gapped stack and the end-to-end test have a Grafana
state to back up and restore:

- ``GET /api/health``            no authentication, like Grafana
- ``GET /api/search``            dashboards (``?query=`` filters titles), basic auth
- ``POST /api/dashboards/db``    save a dashboard ``{"dashboard": {...}, "overwrite": b}``

Everything else is 404. At start it creates ``grafana.db`` (mode 0640, like Grafana)
when missing and loads the provisioned data sources and dashboards, so the stack's
provisioning files are in the database as with Grafana. The admin password comes from
``GF_SECURITY_ADMIN_PASSWORD__FILE`` (or ``GF_SECURITY_ADMIN_PASSWORD``, default
``admin``), as with Grafana's image.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import signal
import sqlite3
import sys
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from tests import grafana_db

DATA_DIR = Path(os.environ.get("GF_PATHS_DATA", "/var/lib/grafana"))
DATABASE = DATA_DIR / "grafana.db"
PROVISIONING = Path(os.environ.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning"))
PORT = int(os.environ.get("GF_SERVER_HTTP_PORT", "3000"))
VERSION = "11.5.2-standin"
Json = dict[str, Any]


def admin_credentials() -> tuple[str, str]:
    user = os.environ.get("GF_SECURITY_ADMIN_USER", "admin")
    password_file = os.environ.get("GF_SECURITY_ADMIN_PASSWORD__FILE")
    if password_file:
        return user, Path(password_file).read_text(encoding="utf-8").strip()
    return user, os.environ.get("GF_SECURITY_ADMIN_PASSWORD", "admin")


def save_dashboard(db: sqlite3.Connection, model: Json, overwrite: bool) -> Json:
    """Insert or (with ``overwrite``) replace a dashboard by uid; Grafana's answer."""
    title = str(model.get("title") or "").strip()
    if not title:
        raise ValueError("Dashboard title cannot be empty")
    uid = str(model.get("uid") or grafana_db.new_uid())
    model = {**model, "uid": uid, "title": title, "id": None}
    row = db.execute(
        "SELECT id, version FROM dashboard WHERE org_id = 1 AND uid = ?", (uid,)
    ).fetchone()
    slug = grafana_db.slugify(title)
    with db:
        if row is None:
            version = 1
            cursor = db.execute(
                "INSERT INTO dashboard (version, slug, title, data, org_id, created, updated,"
                " updated_by, created_by, gnet_id, plugin_id, folder_id, is_folder, has_acl,"
                " uid, is_public) VALUES (1, ?, ?, ?, 1, datetime('now'), datetime('now'),"
                " 1, 1, 0, '', 0, 0, 0, ?, 0)",
                (slug, title, json.dumps({**model, "version": version}), uid),
            )
            ident = int(cursor.lastrowid or 0)
        elif overwrite:
            ident, version = int(row[0]), int(row[1]) + 1
            db.execute(
                "UPDATE dashboard SET version = ?, slug = ?, title = ?, data = ?,"
                " updated = datetime('now') WHERE id = ?",
                (version, slug, title, json.dumps({**model, "version": version}), ident),
            )
        else:
            raise FileExistsError("A dashboard with the same uid already exists")
    return {
        "id": ident,
        "uid": uid,
        "url": f"/d/{uid}/{slug}",
        "status": "success",
        "version": version,
        "slug": slug,
    }


def search(db: sqlite3.Connection, query: str) -> list[Json]:
    rows = db.execute(
        "SELECT id, uid, title, slug, data FROM dashboard"
        " WHERE is_folder = 0 AND title LIKE ? ORDER BY title",
        (f"%{query}%",),
    ).fetchall()
    return [
        {
            "id": ident,
            "uid": uid,
            "title": title,
            "uri": f"db/{slug}",
            "url": f"/d/{uid}/{slug}",
            "slug": "",
            "type": "dash-db",
            "tags": json.loads(data).get("tags", []),
            "isStarred": False,
        }
        for ident, uid, title, slug, data in rows
    ]


def provision(db: sqlite3.Connection) -> None:
    """Data sources and file-provisioned dashboards, like Grafana does at start."""
    for path in sorted((PROVISIONING / "datasources").glob("*.y*ml")):
        for source in (yaml.safe_load(path.read_text()) or {}).get("datasources", []):
            if not db.execute(
                "SELECT 1 FROM data_source WHERE name = ?", (source["name"],)
            ).fetchone():
                with db:
                    grafana_db.add_data_source(
                        db,
                        source["name"],
                        type_=source.get("type", "prometheus"),
                        url=source.get("url", ""),
                        is_default=bool(source.get("isDefault")),
                    )
    for path in sorted((PROVISIONING / "dashboards").glob("*.y*ml")):
        for provider in (yaml.safe_load(path.read_text()) or {}).get("providers", []):
            folder = Path(provider.get("options", {}).get("path", ""))
            for dashboard in sorted(folder.glob("*.json")) if folder.is_dir() else ():
                save_dashboard(db, json.loads(dashboard.read_text()), overwrite=True)


class Handler(BaseHTTPRequestHandler):
    server_version = "grafana-standin"

    def reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:]).decode()
        except ValueError:
            return False
        user, password = admin_credentials()
        return hmac.compare_digest(given.encode(), f"{user}:{password}".encode())

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/api/health":
            self.reply(200, {"commit": "standin", "database": "ok", "version": VERSION})
        elif url.path == "/api/search":
            if not self.authorized():
                self.reply(401, {"message": "Unauthorized"})
                return
            query = parse_qs(url.query).get("query", [""])[0]
            with closing(grafana_db.connect(DATABASE)) as db:
                self.reply(200, search(db, query))
        else:
            self.reply(404, {"message": "Not found"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/api/dashboards/db":
            self.reply(404, {"message": "Not found"})
            return
        if not self.authorized():
            self.reply(401, {"message": "Unauthorized"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            with closing(grafana_db.connect(DATABASE)) as db:
                self.reply(200, save_dashboard(db, body["dashboard"], bool(body.get("overwrite"))))
        except FileExistsError as exc:
            self.reply(412, {"message": str(exc), "status": "name-exists"})
        except (ValueError, KeyError, TypeError) as exc:
            self.reply(400, {"message": f"bad request: {exc}"})

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"grafana-standin: {self.address_string()} {format % args}\n")


def stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, stop)  # PID 1 ignores SIGTERM unless handled
    os.umask(0o027)  # grafana.db mode 0640, like Grafana's
    if not DATABASE.exists():
        grafana_db.create_database(DATABASE)
    with closing(grafana_db.connect(DATABASE)) as db:
        provision(db)
    print(f"grafana-standin: TEST STAND-IN (not Grafana) serving {DATABASE} on :{PORT}")
    sys.stdout.flush()
    ThreadingHTTPServer(("", PORT), Handler).serve_forever()


if __name__ == "__main__":
    main()
