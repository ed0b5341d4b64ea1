"""Before a dump: can we connect, which databases, and does the user hold what the
dump needs? Missing privileges are named, because some omissions are silent:
without ``SELECT ON mysql.proc`` (MariaDB) or ``SHOW_ROUTINE`` (MySQL 8),
routines simply vanish from the dump.
"""

from __future__ import annotations

from dataclasses import dataclass

import pymysql

from backup_agent.errors import BackupError
from backup_agent.jobs.mysql.client import connect, family_of
from backup_agent.manifest import SYSTEM_DATABASES, MysqlOptions

# What the dump of one database needs, granted globally or on the database.
REQUIRED_PRIVILEGES = ("SELECT", "SHOW VIEW", "TRIGGER", "EVENT")
# Reading routine definitions needs more than database-level grants.
ROUTINE_PRIVILEGE = {"mariadb": "SELECT ON mysql.proc", "mysql": "SHOW_ROUTINE"}
# What a dump that records its binlog position needs besides (global privileges).
# MariaDB's dump reads the position inside its consistent snapshot: nothing more.
# Oracle's mysqldump 8 with --source-data takes FLUSH TABLES WITH READ LOCK for a
# moment (RELOAD) and reads the position (REPLICATION CLIENT).
POSITION_PRIVILEGES = {"mariadb": (), "mysql": ("RELOAD", "REPLICATION CLIENT")}


@dataclass(frozen=True)
class ServerInfo:
    """What the pre-flight check learned about the server."""

    version: str
    family: str  # "mariadb" or "mysql"
    databases: tuple[str, ...]
    non_innodb: tuple[str, ...]  # "db.table (ENGINE)"
    log_bin: bool = False  # binary logging on: the dump records its binlog position


def preflight(options: MysqlOptions) -> ServerInfo:
    """Check connectivity, the databases and the privileges a dump needs, before dumping."""
    with connect(options) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION(), CURRENT_USER(), @@log_bin")
        version, current_user, log_bin = cur.fetchone() or ("", "", 0)
        cur.execute("SHOW DATABASES")
        present = [row[0] for row in cur.fetchall()]
        databases = list(options.databases) or [d for d in present if d not in SYSTEM_DATABASES]
        missing_dbs = [d for d in databases if d not in present]
        if missing_dbs:
            raise BackupError(f"database(s) not found or not visible: {', '.join(missing_dbs)}")
        if not databases:
            raise BackupError("no user databases to dump")
        user, _, host = str(current_user).rpartition("@")
        grantee = f"'{user}'@'{host}'"
        family = family_of(str(version))
        missing = {db: missing_privileges(cur, grantee, db) for db in databases}
        missing = {db: privs for db, privs in missing.items() if privs}
        if not can_read_routines(cur, grantee):
            missing["routines"] = [ROUTINE_PRIVILEGE[family]]
        if log_bin:
            lacking = missing_global(cur, grantee, POSITION_PRIVILEGES[family])
            if lacking:
                missing["binlog position"] = lacking
        if missing:
            detail = "; ".join(f"{db}: {', '.join(privs)}" for db, privs in missing.items())
            raise BackupError(f"MySQL user {grantee} lacks privileges for the dump ({detail})")
        cur.execute(
            "SELECT TABLE_SCHEMA, TABLE_NAME, ENGINE FROM information_schema.TABLES"
            " WHERE TABLE_TYPE = 'BASE TABLE' AND ENGINE <> 'InnoDB'"
            " AND TABLE_SCHEMA IN %s ORDER BY 1, 2",
            (databases,),
        )
        non_innodb = tuple(f"{db}.{table} ({engine})" for db, table, engine in cur.fetchall())
        if not options.allow_empty:
            require_tables(cur, databases)
    return ServerInfo(str(version), family, tuple(databases), non_innodb, bool(log_bin))


def require_tables(cur: pymysql.cursors.Cursor, databases: list[str]) -> None:
    """Refuse to dump databases without a single table: a dump of nothing is not a
    backup (a wrong server, a dropped schema) unless ``allow_empty`` says it is."""
    cur.execute(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA IN %s",
        (databases,),
    )
    if not (cur.fetchone() or (0,))[0]:
        raise BackupError(
            f"database(s) {', '.join(databases)} hold no table (mysql.allow_empty permits it)"
        ).because("empty")


def missing_privileges(cur: pymysql.cursors.Cursor, grantee: str, database: str) -> list[str]:
    """Privileges from ``REQUIRED_PRIVILEGES`` held neither globally nor on ``database``."""
    cur.execute(
        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = %s"
        " UNION SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES"
        " WHERE GRANTEE = %s AND %s LIKE TABLE_SCHEMA",
        (grantee, grantee, database),
    )
    held = {row[0] for row in cur.fetchall()}
    return [p for p in REQUIRED_PRIVILEGES if p not in held]


def missing_global(
    cur: pymysql.cursors.Cursor, grantee: str, privileges: tuple[str, ...]
) -> list[str]:
    """Those of ``privileges`` (global ones) the user does not hold."""
    if not privileges:
        return []
    cur.execute(
        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = %s",
        (grantee,),
    )
    held = {row[0] for row in cur.fetchall()}
    return [p for p in privileges if p not in held]


def can_read_routines(cur: pymysql.cursors.Cursor, grantee: str) -> bool:
    """Whether the dump will see routine bodies; without it routines vanish silently."""
    cur.execute(
        "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = %s"
        " UNION SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES"
        " WHERE GRANTEE = %s AND TABLE_SCHEMA = 'mysql'"
        " UNION SELECT PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES"
        " WHERE GRANTEE = %s AND TABLE_SCHEMA = 'mysql' AND TABLE_NAME = 'proc'",
        (grantee, grantee, grantee),
    )
    held = {row[0] for row in cur.fetchall()}
    return bool(held & {"SELECT", "SHOW_ROUTINE", "SHOW CREATE ROUTINE"})
