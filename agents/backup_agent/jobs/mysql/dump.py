"""The logical dump: its command line, and streaming it into restic safely.

The dump tool's stdout is pumped through this process into ``restic backup
--stdin``. restic only saves a snapshot when its stdin reaches end-of-file, and the
pump only lets that happen after the dump tool exited 0, wrote something, and ended
with its ``-- Dump completed`` trailer; otherwise restic is stopped first and no
snapshot exists.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

from backup_agent import execute, restic
from backup_agent.errors import BackupError
from backup_agent.jobs.mysql.client import FAMILIES, connection_args, require_program
from backup_agent.jobs.mysql.preflight import ServerInfo
from backup_agent.jobs.mysql.pump import Pumped, Scanner, pump
from backup_agent.manifest import MysqlOptions
from backup_agent.repository_errors import DUMP_FAILED

TRAILER = re.compile(rb"-- Dump completed(?: on [^\n]*)?\n?\Z")
COMMON_FLAGS = (
    "--single-transaction",
    "--quick",
    "--routines",
    "--events",
    "--triggers",
    "--hex-blob",
    "--default-character-set=utf8mb4",
    "--no-tablespaces",
)


def dump_command(options: MysqlOptions, info: ServerInfo) -> list[str]:
    """argv of the dump tool; credentials come only from ``--defaults-file``."""
    family = info.family if options.client == "auto" else options.client
    tools = FAMILIES[family]
    program = require_program(options.dump_program or tools.dump, family)
    if family == "mysql" and "MariaDB" in execute.run([program, "--version"]).stdout.decode():
        # Debian's mysqldump is MariaDB's: it rejects MySQL 8 flags (--set-gtid-purged).
        raise BackupError(
            f"the server is MySQL ({info.version}) but {program} is MariaDB's dump tool: "
            "install Oracle's mysqldump 8.x (dump_program), or set client: mariadb"
        )
    argv = [program, *connection_args(options), *COMMON_FLAGS, *tools.dump_flags]
    if info.log_bin:  # the position a point-in-time restore replays binlogs from
        argv += tools.position_flags
    return [*argv, "--databases", *info.databases]


def stream_dump(
    argv: list[str],
    repo: restic.Repository,
    filename: str,
    tags: dict[str, str],
    scanner: Scanner,
    on_complete: Callable[[], None] | None = None,
) -> tuple[restic.BackupSummary, Pumped]:
    """Pump the dump into restic; only a complete dump, whose scan found no client
    command, is allowed to become a snapshot. (``runs.run_backup`` proved the repository
    usable before, so that no dump and its open transaction wait on a dead server.)"""

    def truncated(_: execute.Process, stats: Pumped) -> str | None:
        if TRAILER.search(stats.tail):
            return None
        shown = execute.display(argv)
        return f"{shown} output ends without '-- Dump completed': the dump is truncated"

    return stream_command(argv, repo, filename, tags, scanner, truncated, on_complete)


def stream_command(
    argv: list[str],
    repo: restic.Repository,
    filename: str,
    tags: dict[str, str],
    scanner: Scanner,
    incomplete: Callable[[execute.Process, Pumped], str | None],
    on_complete: Callable[[], None] | None = None,
) -> tuple[restic.BackupSummary, Pumped]:
    """Pump a backup program's stdout into restic. The snapshot is only saved when the
    program exited 0, wrote something, the scanner accepted all of it and
    ``incomplete`` (given the finished program and what it wrote) has no objection.
    ``on_complete`` runs then, while restic saves the snapshot."""
    upload = restic.StdinBackup(repo, filename, tags)
    producer = execute.Process(argv, stdout=execute.PIPE)
    finished = False
    try:
        assert producer.popen.stdout is not None
        try:
            stats = pump(producer.popen.stdout, upload.stdin, scanner)
        except BrokenPipeError:
            raise upload.failure() from None
        except BackupError as refused:  # a program that died explains a truncated stream
            if _exited(producer) not in (0, None):
                raise _failure(producer) from refused
            raise
        try:
            producer.check()
        except BackupError as exc:
            raise exc.because(DUMP_FAILED) from None
        if stats.size == 0:
            raise BackupError(f"{execute.display(argv)} exited 0 but wrote nothing").because(
                DUMP_FAILED
            )
        why = incomplete(producer, stats)
        if why is not None:
            raise BackupError(why).because(DUMP_FAILED)
        if on_complete is not None:
            on_complete()
        summary = upload.finish()
        finished = True
        return summary, stats
    finally:
        if not finished:
            upload.abort()
            producer.stop()


def _exited(process: execute.Process, grace: float = 2.0) -> int | None:
    """The exit code of a program whose output ended, or None if it still runs."""
    try:
        return process.wait(grace)
    except subprocess.TimeoutExpired:
        return None


def _failure(process: execute.Process) -> BackupError:
    """The error of a program that exited non-zero."""
    try:
        process.check()
    except BackupError as exc:
        return exc.because(DUMP_FAILED)
    return BackupError(f"{execute.display(process.argv)} failed").because(DUMP_FAILED)
