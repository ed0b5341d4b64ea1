"""The heartbeat: a one-row table the MySQL agent updates with the server's UTC time
every interval, with its own least-privilege user (INSERT, UPDATE on that table),
like pt-heartbeat. The update travels through the binary log like any write, so a
point-in-time restore recovers the heartbeat of its moment, which a drill checks.

It runs in a thread of its own beside the scheduler, so that a long dump never holds
it back; a failed update is logged and retried at the next beat.
"""

from __future__ import annotations

import logging
import threading
import time

import pymysql

from backup_agent.errors import BackupError
from backup_agent.jobs.mysql.client import connect, quote
from backup_agent.manifest import Heartbeat, MysqlOptions

log = logging.getLogger(__name__)


def beat(options: MysqlOptions, heartbeat: Heartbeat) -> None:
    """Set the heartbeat row to the server's time now."""
    database, _, table = heartbeat.table.partition(".")
    statement = (
        f"INSERT INTO {quote(database)}.{quote(table)} (id, ts) VALUES (1, UTC_TIMESTAMP(6))"  # noqa: S608
        " ON DUPLICATE KEY UPDATE ts = VALUES(ts)"
    )
    with connect(options) as conn, conn.cursor() as cur:
        cur.execute(statement)
        conn.commit()


class Beating(threading.Thread):
    """Beats every ``heartbeat.every`` until ``stop`` is set, on a fixed rhythm."""

    def __init__(self, service: str, options: MysqlOptions, heartbeat: Heartbeat) -> None:
        super().__init__(name=f"heartbeat-{service}", daemon=True)
        self.service, self.options, self.heartbeat = service, options, heartbeat
        self.stop = threading.Event()

    def run(self) -> None:
        every = self.heartbeat.every.total_seconds()
        start = time.monotonic()
        failing = False
        while not self.stop.is_set():
            try:
                beat(self.options, self.heartbeat)
                if failing:
                    log.info("heartbeat %s updated again", self.heartbeat.table)
                failing = False
            except (BackupError, pymysql.err.MySQLError) as exc:
                if not failing:
                    log.warning("heartbeat %s not updated: %s", self.heartbeat.table, exc)
                failing = True
            elapsed = time.monotonic() - start
            self.stop.wait(every - elapsed % every)
