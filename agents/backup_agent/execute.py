"""The only module that runs external commands.

Commands are argv lists (never ``shell=True``). Every command is logged before it
runs, with secrets masked; a failure raises ``CommandError`` with the masked command,
the exit code (or signal) and the tail of stderr. Secrets travel in files or in the
environment, never on the command line; ``register_secret`` adds values that must
also be masked should they ever appear in a command or in a tool's stderr.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from backup_agent import repository_errors as causes
from backup_agent.errors import BackupError, CommandError

log = logging.getLogger(__name__)

# Builds the exception for a failed command: (command, exit code, stderr tail, what).
ErrorFactory = Callable[[str, int, str, str], CommandError]

STDERR_TAIL_LINES = 20
# Causes a job stopped at its deadline keeps: what the repository did before it ran out.
REPOSITORY_CAUSES = frozenset(set(causes.REASONS) - {causes.DUMP_FAILED, causes.TIMEOUT})
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):[^@/\s]+@", re.I)
_secrets: set[str] = set()
_SETPRIV = shutil.which("setpriv")  # util-linux: children die with the agent (``_spawn``)


def register_secret(value: str) -> None:
    """Remember a secret so that it is masked wherever this module prints text."""
    if value:
        _secrets.add(value)


def mask(text: str) -> str:
    """Hide URL passwords and registered secrets in ``text``."""
    text = _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def display(argv: Sequence[str]) -> str:
    """The command as a shell-quoted string, safe to log."""
    return mask(shlex.join(argv))


@dataclass(frozen=True)
class Result:
    """Output of a finished command."""

    stdout: bytes
    stderr: str


class Deadline:
    """A job's deadline: every command started inside ``with Deadline(...)`` (in any
    thread) is stopped when it passes, SIGTERM then SIGKILL, and the job's error then
    says it ran out of time (reason ``timeout``) instead of how its commands broke;
    unless restic had already named the repository's failure (a server gone while it
    retried): that cause stays, with the deadline beside it.

    One job runs at a time per agent, so the active deadline is process-wide.
    """

    active: Deadline | None = None
    GRACE = 10.0

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds, self.what = seconds, what
        self.expired = threading.Event()
        self._children: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        Deadline.active = self
        self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self._timer.cancel()
        Deadline.active = None
        if self.expired.is_set() and exc is not None and not isinstance(exc, KeyboardInterrupt):
            seconds = int(self.seconds)
            reason = getattr(exc, "reason", "")
            if reason in REPOSITORY_CAUSES:
                # The repository had failed already (restic was retrying): that is the cause.
                raise BackupError(
                    f"{exc} ({self.what} stopped at its deadline of {seconds} s)"
                ).because(reason) from exc
            raise BackupError(
                f"{self.what} ran past its deadline of {seconds} s and was stopped"
            ).because("timeout") from exc

    def adopt(self, popen: subprocess.Popen[bytes]) -> None:
        """Stop ``popen`` at the deadline (at once if it has passed)."""
        with self._lock:
            self._children.append(popen)
        if self.expired.is_set():
            _kill_later(popen, self.GRACE)

    def _expire(self) -> None:
        self.expired.set()
        log.warning(
            "%s passed its deadline of %d s: stopping its commands", self.what, self.seconds
        )
        with self._lock:
            children = list(self._children)
        for popen in children:
            _kill_later(popen, self.GRACE)


def _kill_later(popen: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM now, SIGKILL after ``grace`` seconds, without waiting here."""
    threading.Thread(target=terminate, args=(popen, grace), daemon=True).start()


def _spawn(argv: Sequence[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start ``argv`` so that it dies with the agent, under the active deadline.

    A child outliving a killed agent (SIGKILL, the OOM killer) would be harmful:
    ``restic backup --stdin`` would read the end of its input and save the partial
    stream as a snapshot. ``setpriv --pdeathsig KILL`` (util-linux) has the kernel
    SIGKILL the child when the thread that started it ends, so every command is started
    from a thread that waits for it (the main thread, or a worker that outlives it).
    """
    env = options.get("env") or os.environ
    program = shutil.which(argv[0], path=env.get("PATH", os.defpath))
    if program is None:  # as Popen would say, not as setpriv would
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
    wrapper = [_SETPRIV, "--pdeathsig", "KILL", "--"] if _SETPRIV else []
    popen = subprocess.Popen([*wrapper, program, *argv[1:]], **options)
    if Deadline.active is not None:
        Deadline.active.adopt(popen)
    return popen


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input_data: bytes | None = None,
    cwd: str | None = None,
    ok_codes: frozenset[int] = frozenset({0}),
    error: ErrorFactory = CommandError,
) -> Result:
    """Run a command to completion, capturing its output; a failure raises what
    ``error`` builds (a program's own error types, such as restic's)."""
    log.debug("running %s", display(argv))
    proc = _spawn(
        argv,
        stdin=subprocess.PIPE if input_data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_environ(env),
        cwd=cwd,
    )
    try:
        out, err = proc.communicate(input_data)
    except BaseException:
        # Interrupted (SIGTERM): let the child clean up (restic removes its lock).
        terminate(proc)
        raise
    stderr = err.decode(errors="replace")
    if proc.returncode not in ok_codes:
        raise error_for(argv, proc.returncode, _tail(stderr.splitlines()), error=error)
    return Result(out, stderr)


def terminate(popen: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``grace`` seconds."""
    if popen.poll() is not None:
        return
    popen.terminate()
    try:
        popen.wait(grace)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


class Process:
    """A started command whose stderr (and optionally stdout lines) are drained by threads.

    Draining in threads keeps a chatty child from blocking on a full pipe while the
    caller streams data through its stdin or stdout.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: int | IO[bytes] | None = None,
        stdout: int | IO[bytes] | None = None,
        on_stdout_line: Callable[[bytes], None] | None = None,
        on_stderr_line: Callable[[str], None] | None = None,
        cwd: str | None = None,
        error: ErrorFactory = CommandError,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.argv = list(argv)
        self.error = error
        self._on_stderr_line = on_stderr_line
        log.debug("starting %s", display(argv))
        if on_stdout_line is not None:
            stdout = subprocess.PIPE
        self.popen = _spawn(
            self.argv,
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=_environ(env),
            cwd=cwd,
            pass_fds=pass_fds,
        )
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._threads = [self._drain(self.popen.stderr, self._keep_stderr)]
        if on_stdout_line is not None:
            self._threads.append(self._drain(self.popen.stdout, on_stdout_line))

    def _keep_stderr(self, line: bytes) -> None:
        text = line.decode(errors="replace").rstrip("\n")
        self._stderr.append(text)
        if self._on_stderr_line is not None:
            self._on_stderr_line(text)

    @staticmethod
    def _drain(pipe: IO[bytes] | None, handle: Callable[[bytes], None]) -> threading.Thread:
        assert pipe is not None

        def pump() -> None:
            with pipe:
                for line in pipe:
                    handle(line)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        return thread

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process and its output threads; return the exit code."""
        code = self.popen.wait(timeout)
        for thread in self._threads:
            thread.join()
        return code

    def stderr_tail(self) -> str:
        return _tail(list(self._stderr))

    def stop(self, grace: float = 20.0) -> None:
        """Ask the process to stop (SIGTERM), killing it if it does not within ``grace``."""
        terminate(self.popen, grace)

    def check(self, what: str = "") -> None:
        """Wait, and raise ``CommandError`` unless the process exited 0."""
        code = self.wait()
        if code != 0:
            raise error_for(self.argv, code, self.stderr_tail(), what, self.error)


def error_for(
    argv: Sequence[str],
    returncode: int,
    stderr_tail: str,
    what: str = "",
    error: ErrorFactory = CommandError,
) -> CommandError:
    """The exception for a failed command, with the command and its stderr masked."""
    return error(display(argv), returncode, mask(stderr_tail), what)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _tail(lines: Sequence[str]) -> str:
    cleaned = (_ANSI.sub("", line).strip() for line in lines[-STDERR_TAIL_LINES:])
    kept = [line for line in cleaned if line]
    return " | ".join(kept[-5:])


def _environ(extra: Mapping[str, str] | None) -> dict[str, str] | None:
    if extra is None:
        return None
    merged = dict(os.environ)
    merged.update(extra)
    return merged


PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
