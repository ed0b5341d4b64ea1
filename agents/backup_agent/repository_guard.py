"""Bounded restic runs, and the repository pre-flight a backup does before a dump starts.

restic 0.18 retries nearly every backend error for 15 minutes (hard-coded in
``cmd/restic/global.go``; no flag or environment variable shortens it) and a request
that never gets an answer is only abandoned after ``--stuck-request-timeout`` (5 min by
default), after which it is retried too. So the agent bounds every call itself:

- ``--stuck-request-timeout`` turns a silent server into retry lines quickly;
- a *retry budget*: once restic has retried without a success for that long, stop it;
- a hopeless error (TLS refused, HTTP 400/401/403/404/507) stops it at once;
- an overall deadline for calls whose duration does not depend on the data.

Stopping is SIGTERM (restic cancels its context, retry sleeps end at once, it removes
its lock), then SIGKILL after a grace period: with the server gone, restic would spend
another minute trying to delete its lock. The failure is then named by
``repository_errors``, never restic's "Is there a repository" hint.
"""

from __future__ import annotations

import collections
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from backup_agent import execute
from backup_agent import repository_errors as causes
from backup_agent.errors import CommandError

TICK = 0.2  # seconds between checks of a running restic
KEPT_LINES = 400  # stderr lines kept for classification; the first backend error matters most


@dataclass(frozen=True)
class Limits:
    """How long one restic call may take and how long it may keep retrying."""

    stuck_request: str  # restic --stuck-request-timeout
    retry_budget: float  # seconds of retrying without a success before giving up
    deadline: float | None  # seconds for the whole call; None where data size decides
    grace: float = 10.0  # after SIGTERM, before SIGKILL


# Reachable, credentials, repository, password, lock: answers in under a second when well.
PREFLIGHT = Limits(stuck_request="10s", retry_budget=20, deadline=45)
# Listing and small changes: snapshots, stats, forget, unlock, cat.
QUICK = Limits(stuck_request="30s", retry_budget=60, deadline=300)
# Data moves: backup, restore, dump, check, prune. A server restart fits in the budget.
LONG = Limits(stuck_request="60s", retry_budget=120, deadline=None)


class Watch:
    """Follows restic's stderr: keeps what classification needs, and says when to give up."""

    def __init__(self, retry_budget: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.retry_budget = retry_budget
        self.clock = clock
        self.lines: collections.deque[str] = collections.deque(maxlen=KEPT_LINES)
        self.first: list[str] = []  # the first backend error line, kept even when the deque turns
        self.retrying_since: float | None = None
        self.hopeless: causes.Cause | None = None
        self.signalled = threading.Event()  # restic said "signal ... received, cleaning up"

    def feed(self, line: str) -> None:
        """Take one stderr line (called from the thread that drains restic's stderr)."""
        self.lines.append(line)
        if causes.SIGNALLED.search(line):
            self.signalled.set()
            return
        if causes.RECOVERED.search(line):
            self.retrying_since = None
            return
        cause = causes.line_cause(line)
        if cause is None:
            return
        if not self.first:
            self.first.append(line)
        if self.retrying_since is None:
            self.retrying_since = self.clock()
        if cause.hopeless and self.hopeless is None:
            self.hopeless = cause

    def give_up(self) -> str:
        """Why restic should be stopped now ('' while it may go on)."""
        if self.hopeless is not None:
            return "hopeless"
        since = self.retrying_since
        if since is not None and self.clock() - since > self.retry_budget:
            return "retry budget"
        return ""

    def classification_lines(self) -> list[str]:
        return [*self.first, *self.lines]


class Guard:
    """Bounds one running restic: stops it when ``Watch`` gives up or the deadline passes."""

    def __init__(self, argv: Sequence[str], url: str, limits: Limits) -> None:
        self.verb = verb_of(argv)
        self.url = url
        self.limits = limits
        self.watch = Watch(limits.retry_budget)
        self.started = time.monotonic()
        self.stopped_after: float | None = None

    def due(self) -> bool:
        """True when restic should be stopped now."""
        if self.watch.give_up():
            return True
        deadline = self.limits.deadline
        return deadline is not None and time.monotonic() - self.started > deadline

    def stop(self, process: execute.Process) -> None:
        """SIGTERM now, SIGKILL after the grace period; remember when."""
        if self.stopped_after is None:
            self.stopped_after = time.monotonic() - self.started
        process.stop(self.limits.grace)

    def supervise(self, process: execute.Process) -> threading.Thread:
        """Stop ``process`` from a background thread when due (for streaming callers)."""

        def loop() -> None:
            while process.popen.poll() is None:
                if self.due():
                    self.stop(process)
                    return
                time.sleep(TICK)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    def failure(self, process: execute.Process, returncode: int) -> CommandError:
        """The exception for a failed run: restic's own class, with a named cause if found."""
        error = execute.error_for(
            process.argv, returncode, process.stderr_tail(), error=process.error
        )
        lines = self.watch.classification_lines()
        return named(error, self.verb, returncode, lines, self.url, self.stopped_after)


def named(
    error: CommandError,
    verb: str,
    returncode: int,
    stderr_lines: Sequence[str],
    url: str,
    stopped_after: float | None = None,
) -> CommandError:
    """``error`` with its cause's ``reason`` and one-line message, when a cause is found."""
    cause = causes.classify(verb, returncode, stderr_lines, url, stopped_after=stopped_after)
    if cause is not None:
        error.because(cause.reason)
        error.args = (causes.message(cause, verb, url, stopped_after),)
    return error


def bounded(argv: Sequence[str], limits: Limits) -> list[str]:
    """``argv`` with ``--stuck-request-timeout`` right after the program name."""
    return [argv[0], f"--stuck-request-timeout={limits.stuck_request}", *argv[1:]]


def verb_of(argv: Sequence[str]) -> str:
    return next((arg for arg in argv[1:] if not arg.startswith("-")), "")


def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    url: str,
    limits: Limits,
    error: execute.ErrorFactory,
) -> execute.Result:
    """Run restic to completion within ``limits``; raise a named failure otherwise."""
    argv = bounded(argv, limits)
    guard = Guard(argv, url, limits)
    stdout: list[bytes] = []
    process = execute.Process(
        argv,
        env=env,
        stdin=execute.DEVNULL,
        on_stdout_line=stdout.append,
        on_stderr_line=guard.watch.feed,
        error=error,
    )
    try:
        while True:
            try:
                returncode = process.wait(TICK)
                break
            except subprocess.TimeoutExpired:
                if guard.due():
                    guard.stop(process)
    except BaseException:
        process.stop(limits.grace)  # interrupted: let restic remove its lock
        raise
    if returncode != 0 or guard.stopped_after is not None:
        raise guard.failure(process, returncode)
    return execute.Result(b"".join(stdout), "\n".join(guard.watch.lines))
