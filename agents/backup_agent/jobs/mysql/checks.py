"""What a drill proves on the restored server: every table of the dump with its
recorded row count, and the manifest's sanity queries."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pymysql

from backup_agent.errors import BackupError
from backup_agent.jobs.mysql.client import connect, quote, where
from backup_agent.manifest import MysqlOptions

log = logging.getLogger(__name__)


def check_tables(
    cur: pymysql.cursors.Cursor, meta: Mapping[str, Any], allow_empty: bool = False
) -> list[str]:
    """Every table of the dump exists and holds the rows counted in the dump; a dump of
    no table at all is a failed drill unless ``allow_empty``."""
    tables: dict[str, dict[str, int]] = meta.get("tables") or {}
    expected = {(db, table): n for db, counts in tables.items() for table, n in counts.items()}
    total, wrong = compare_counts(cur, expected, "dump had")
    if wrong:
        raise BackupError(f"restored tables differ from the dump: {'; '.join(wrong[:10])}")
    if total == 0 and not allow_empty:
        raise BackupError("the dump restored no table (mysql.allow_empty permits it)")
    return [f"{total} tables present with the row counts of the dump"]


def compare_counts(
    cur: pymysql.cursors.Cursor, expected: Mapping[tuple[str, str], int], wording: str
) -> tuple[int, list[str]]:
    """Counts each ``(database, table)``'s rows against ``expected``: how many tables
    were counted, and a line for each that differs or cannot be counted."""
    counts, wrong = count_rows(cur, expected)
    for (database, table), found in counts.items():
        if found != expected[(database, table)]:
            wrong.append(
                f"{database}.{table}: {found} rows, {wording} {expected[(database, table)]}"
            )
    return len(counts), wrong


def count_rows(
    cur: pymysql.cursors.Cursor, tables: Iterable[tuple[str, str]]
) -> tuple[dict[tuple[str, str], int], list[str]]:
    """The rows of each ``(database, table)``, and a line for each that cannot be counted."""
    counts: dict[tuple[str, str], int] = {}
    wrong = []
    for database, table in tables:
        try:
            cur.execute(f"SELECT COUNT(*) FROM {quote(database)}.{quote(table)}")  # noqa: S608
        except pymysql.err.MySQLError as exc:
            wrong.append(f"{database}.{table}: {exc.args[-1]}")
            continue
        counts[(database, table)] = int((cur.fetchone() or (0,))[0])
    return counts, wrong


def check_sanity(
    cur: pymysql.cursors.Cursor,
    queries: tuple[tuple[str, str], ...],
    moment: datetime,
    rpo: timedelta,
) -> list[str]:
    """Run the manifest's sanity queries; each must return one truthy value.
    ``{snapshot_time}`` is ``moment`` (the snapshot's time, or the point a
    point-in-time restore reached) and ``{rpo_seconds}`` the RPO that applies to it."""
    when = moment.astimezone(UTC).strftime("'%Y-%m-%d %H:%M:%S'")
    passed = []
    for name, sql in queries:
        statement = sql.replace("{snapshot_time}", when)
        statement = statement.replace("{rpo_seconds}", str(int(rpo.total_seconds())))
        try:
            cur.execute(statement)
            row = cur.fetchone()
        except pymysql.err.MySQLError as exc:
            raise BackupError(f"sanity query {name!r} failed: {exc.args[-1]}") from exc
        if not row or not row[0]:
            raise BackupError(f"sanity query {name!r} returned {row[0] if row else 'no row'!r}")
        passed.append(f"sanity query {name!r} holds")
    return passed


@contextmanager
def dropped_after(target: MysqlOptions, databases: list[str], shared: bool) -> Iterator[None]:
    """Drop what a drill loaded into a ``shared`` scratch server when the block ends. A
    drop that fails after the drill itself failed is logged, so that the drill's own
    error is the one reported."""
    try:
        yield
    except BaseException:
        if shared:
            try:
                drop_databases(target, databases)
            except (BackupError, pymysql.err.MySQLError, OSError) as exc:
                log.warning("could not drop the drill's databases at %s: %s", where(target), exc)
        raise
    if shared:
        drop_databases(target, databases)


def drop_databases(target: MysqlOptions, databases: list[str]) -> None:
    """Remove what a drill loaded into a shared scratch server."""
    with connect(target) as conn, conn.cursor() as cur:
        for database in databases:
            cur.execute(f"DROP DATABASE IF EXISTS {quote(database)}")
