"""The one error family for expected failures, and the exit codes they map to.

Anything derived from ``BackupError`` is reported by the CLI as one clear line
(see ``cli.main``); anything else is a bug and gets a traceback.
"""

from __future__ import annotations

import signal

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class BackupError(Exception):
    """An expected failure: bad input, a failing tool, a refused operation.

    ``reason`` names the cause for the failure metric's label (``backup_failures_total``):
    the repository's causes (``repository_errors``), ``dump_failed``, ``timeout``,
    ``empty``, or ``failed`` when nothing more specific is known.
    """

    exit_code = EXIT_FAILED
    reason = "failed"

    def because(self, reason: str) -> BackupError:
        """This error, labelled with ``reason``."""
        self.reason = reason
        return self


class ManifestError(BackupError):
    """The manifest is invalid; carries every problem found, each with its path."""

    exit_code = EXIT_USAGE

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s)"]
        lines += [f"  {path}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


class UsageError(BackupError):
    """The command line asks for something that cannot be done as asked."""

    exit_code = EXIT_USAGE


class CommandError(BackupError):
    """An external command failed. Shows the (masked) command, exit code and stderr tail."""

    def __init__(self, command: str, returncode: int, stderr_tail: str, what: str = "") -> None:
        self.command = command
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        how = what or describe_returncode(returncode)
        detail = f": {stderr_tail}" if stderr_tail else ""
        super().__init__(f"{command!s} {how}{detail}")


class Interrupted(BackupError):
    """The run was stopped by SIGTERM or SIGINT."""

    exit_code = EXIT_INTERRUPTED
    reason = "interrupted"


def describe_returncode(returncode: int) -> str:
    """Say how a process ended, naming the signal when it was killed."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"failed with exit code {returncode}"
