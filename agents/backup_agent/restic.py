"""restic, driven over subprocess: one function per subcommand, JSON in, typed results out.

Every call passes ``--json`` where restic offers it and gets the repository, its
password file and the rest-server credentials through the environment, never argv.
restic's documented exit codes (doc/075_scripting.rst) become named exceptions.
Snapshots are always written with the manifest's fixed ``--host`` and tagged
``service=NAME`` and ``kind=KIND`` so that ``latest`` and retention never mix services.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from backup_agent import execute, inifile, repository_errors, sealed
from backup_agent import repository_guard as guard
from backup_agent.errors import BackupError, CommandError

RESTIC = "restic"
MIN_VERSION = (0, 17, 0)
RETRY_LOCK = "2m"
ABORT_ACK_WAIT = 5.0  # seconds restic gets to acknowledge SIGTERM before stdin is closed


# --- errors -----------------------------------------------------------------------------


class ResticError(CommandError):
    """restic failed (exit code 1, or anything undocumented); ``reason`` becomes a
    ``repository_errors`` label once the cause is known."""

    reason = "restic_failed"


class BackupIncomplete(ResticError):
    """Exit 3: the snapshot was made, but some source files could not be read."""


class RepositoryNotFound(ResticError):
    """Exit 10: there is no repository at the configured location."""


class RepositoryLocked(ResticError):
    """Exit 11: the repository is locked by another process."""


class WrongPassword(ResticError):
    """Exit 12: the repository password is wrong."""


class ResticInterrupted(ResticError):
    """Exit 130: restic was interrupted (SIGINT/SIGTERM)."""


class ResticTooOld(BackupError):
    """The installed restic lacks features this agent relies on."""


EXIT_CODES: dict[int, type[ResticError]] = {
    3: BackupIncomplete,
    10: RepositoryNotFound,
    11: RepositoryLocked,
    12: WrongPassword,
    130: ResticInterrupted,
}


def error(command: str, returncode: int, stderr_tail: str, what: str) -> CommandError:
    """The named exception for a failed restic command (an ``execute.ErrorFactory``)."""
    return EXIT_CODES.get(returncode, ResticError)(
        command, returncode, _readable(stderr_tail), what
    )


def _readable(stderr_tail: str) -> str:
    """Replace restic's JSON lines in a stderr tail by their message, on one line (a
    message may span several: ``check`` explains damaged packs in a paragraph)."""
    parts = []
    for part in stderr_tail.split(" | "):
        if part.startswith("{"):
            with contextlib.suppress(ValueError):
                part = repository_errors.one_line(str(json.loads(part).get("message", part)))
        parts.append(part)
    return " | ".join(part for part in parts if part)


# --- repository and results -------------------------------------------------------------


@dataclass(frozen=True)
class Repository:
    """Where snapshots go and how to open the repository.

    ``credentials_file`` is, for rest-server, one line ``user:password``; for S3
    (``s3:`` URLs), an AWS shared credentials file whose ``[default]`` profile holds
    ``aws_access_key_id`` and ``aws_secret_access_key``. ``s3_region`` and
    ``s3_path_style`` (bucket in the path, as Ceph RGW and MinIO serve it; False: in
    the host name, as AWS prefers; None: restic decides) only apply to S3.
    """

    url: str
    password_file: str
    host: str
    credentials_file: str | None = None
    cache_dir: str | None = None
    cacert: str | None = None  # CA certificate that signed the backup server's certificate
    s3_region: str | None = None
    s3_path_style: bool | None = None

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3:")

    def env(self) -> dict[str, str]:
        """Environment for restic; secrets stay in files or here, never in argv.

        rest-server credentials can only reach restic through its environment (or the
        URL, which also ends up there): they are read from their file for each call.
        An S3 key pair stays in its file, which restic reads itself; the key variables
        restic would prefer to it are blanked, so the file the manifest names counts.
        """
        env = {"RESTIC_REPOSITORY": self.url, "RESTIC_PASSWORD_FILE": self.password_file}
        if self.cacert:
            if not os.access(self.cacert, os.R_OK):
                raise BackupError(
                    f"backup server {repository_errors.server_of(self.url)}: cannot read the CA "
                    f"certificate {self.cacert} that must have signed its TLS certificate"
                ).because(repository_errors.REFUSED)
            env["RESTIC_CACERT"] = self.cacert
        if self.credentials_file and self.is_s3:
            read_s3_credentials(self.credentials_file)
            env.update(dict.fromkeys(S3_KEY_VARIABLES, ""))
            env["AWS_SHARED_CREDENTIALS_FILE"] = self.credentials_file
            env["AWS_PROFILE"] = S3_PROFILE
        elif self.credentials_file:
            user, password = read_credentials(self.credentials_file)
            env["RESTIC_REST_USERNAME"] = user
            env["RESTIC_REST_PASSWORD"] = password
        if self.cache_dir:
            env["RESTIC_CACHE_DIR"] = self.cache_dir
        return env

    def options(self) -> list[str]:
        """restic's options for this repository (S3 region and bucket lookup), each one
        argument, so that the verb stays the first argument without a dash."""
        if not self.is_s3:
            return []
        options = []
        if self.s3_region:
            options.append(f"--option=s3.region={self.s3_region}")
        if self.s3_path_style is not None:
            lookup = "path" if self.s3_path_style else "dns"
            options.append(f"--option=s3.bucket-lookup={lookup}")
        return options

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` (restic's) with this repository's options after the program name."""
        return [argv[0], *self.options(), *argv[1:]]


# Variables restic (minio-go) reads before the credentials file; blanked for S3.
S3_KEY_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "AWS_SESSION_TOKEN",
    "MINIO_ACCESS_KEY",
    "MINIO_SECRET_KEY",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "RESTIC_AWS_ASSUME_ROLE_ARN",
)
S3_PROFILE = "default"


def read_credentials(path: str) -> tuple[str, str]:
    """Read ``user:password`` from a secret file and register the password for masking."""
    try:
        with open(path, encoding="utf-8") as handle:
            line = handle.readline().strip()
    except OSError as exc:
        raise BackupError(f"cannot read rest-server credentials {path}: {exc.strerror}") from exc
    user, sep, password = line.partition(":")
    if not sep or not user or not password:
        raise BackupError(f"{path}: expected one line 'user:password'")
    execute.register_secret(password)
    return user, password


def read_s3_credentials(path: str) -> tuple[str, str]:
    """Check an AWS credentials file before restic reads it; returns the key pair.

    Its ``[default]`` profile must hold a key pair and nothing restic would run or
    follow: ``credential_process`` would make restic execute a program, so it is refused.
    The secret key is registered for masking.
    """
    parser = inifile.read(
        path, "an AWS credentials file", configparser.ConfigParser(interpolation=None)
    )
    if not parser.has_section(S3_PROFILE):
        raise BackupError(f"{path}: no [{S3_PROFILE}] profile (an AWS credentials file)")
    profile = parser[S3_PROFILE]
    if "credential_process" in profile:
        raise BackupError(f"{path}: credential_process is refused (restic would run it)")
    key = profile.get("aws_access_key_id", "").strip()
    secret = profile.get("aws_secret_access_key", "").strip()
    if not key or not secret:
        raise BackupError(
            f"{path}: [{S3_PROFILE}] needs aws_access_key_id and aws_secret_access_key"
        )
    execute.register_secret(secret)
    return key, secret


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: datetime
    hostname: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]
    summary: Mapping[str, Any] = field(default_factory=dict, compare=False)
    original: str | None = None  # in a copy (restic copy): the id of the snapshot copied

    def tag(self, key: str) -> str | None:
        """Value of a ``key=value`` tag, or None."""
        prefix = f"{key}="
        return next((t[len(prefix) :] for t in self.tags if t.startswith(prefix)), None)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Snapshot:
        return cls(
            id=data["id"],
            short_id=data.get("short_id") or data["id"][:8],
            time=parse_time(data["time"]),
            hostname=data.get("hostname", ""),
            paths=tuple(data.get("paths") or ()),
            tags=tuple(data.get("tags") or ()),
            summary=data.get("summary") or {},
            original=data.get("original") or None,
        )


@dataclass(frozen=True)
class BackupSummary:
    snapshot_id: str
    files_new: int
    files_changed: int
    files_unmodified: int
    data_added: int
    total_files_processed: int
    total_bytes_processed: int
    total_duration: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackupSummary:
        return cls(
            snapshot_id=data.get("snapshot_id", ""),
            files_new=data.get("files_new", 0),
            files_changed=data.get("files_changed", 0),
            files_unmodified=data.get("files_unmodified", 0),
            data_added=data.get("data_added", 0),
            total_files_processed=data.get("total_files_processed", 0),
            total_bytes_processed=data.get("total_bytes_processed", 0),
            total_duration=data.get("total_duration", 0.0),
        )


@dataclass(frozen=True)
class RestoreSummary:
    total_files: int
    files_restored: int
    total_bytes: int
    bytes_restored: int


@dataclass(frozen=True)
class Stats:
    total_size: int
    total_file_count: int
    snapshots_count: int


def parse_time(value: str) -> datetime:
    """Parse restic's RFC 3339 times (nanoseconds trimmed to what Python keeps)."""
    value = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    return datetime.fromisoformat(value)


def parse_messages(output: bytes | Iterable[bytes]) -> list[dict[str, Any]]:
    """Parse restic's JSON-lines output, ignoring lines that are not JSON objects."""
    lines = output.splitlines() if isinstance(output, bytes) else output
    messages = []
    for line in lines:
        line = line.strip()
        if line.startswith(b"{"):
            try:
                messages.append(json.loads(line))
            except ValueError:
                continue
    return messages


def summary_of(messages: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The last ``summary`` message; restic always ends a successful run with one."""
    for message in reversed(messages):
        if message.get("message_type") == "summary":
            return dict(message)
    raise BackupError("restic finished without a summary message")


# --- commands ----------------------------------------------------------------------------


def command(verb: str, *args: str) -> list[str]:
    """argv for one restic verb with JSON output."""
    return [RESTIC, "--json", verb, *args]


def _run(repo: Repository, argv: list[str], limits: guard.Limits = guard.QUICK) -> execute.Result:
    """restic to completion, bounded (``repository_guard``): a failure names its cause."""
    return guard.run(repo.argv(argv), repo.env(), repo.url, limits, error)


class Running:
    """A restic process that streams data while it runs (``backup --stdin``, ``dump``),
    bounded like ``_run``: stopped when it retries too long or a failure is hopeless."""

    def __init__(
        self, repo: Repository, argv: list[str], limits: guard.Limits = guard.LONG, **streams: Any
    ) -> None:
        argv = guard.bounded(repo.argv(argv), limits)
        self.guard = guard.Guard(argv, repo.url, limits)
        self.signalled = threading.Event()  # restic said it received SIGTERM
        self.process = execute.Process(
            argv, env=repo.env(), on_stderr_line=self._stderr_line, error=error, **streams
        )
        self.guard.supervise(self.process)

    def _stderr_line(self, line: str) -> None:
        if repository_errors.SIGNALLED.search(line):
            self.signalled.set()
        self.guard.watch.feed(line)

    def check(self) -> None:
        """Wait; raise the named failure unless restic exited 0 on its own."""
        code = self.process.wait()
        if code != 0 or self.guard.stopped_after is not None:
            raise self.guard.failure(self.process, code)

    def stop(self, grace: float = guard.LONG.grace) -> None:
        self.process.stop(grace)


def version() -> tuple[int, int, int]:
    """The installed restic version."""
    out = execute.run(command("version"), error=error).stdout
    text = json.loads(out)["version"] if out.lstrip().startswith(b"{") else out.decode()
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise BackupError(f"cannot tell restic's version from {text!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def require_version() -> tuple[int, int, int]:
    """Fail clearly when restic is missing or older than ``MIN_VERSION``."""
    try:
        found = version()
    except FileNotFoundError as exc:
        raise ResticTooOld("restic is not installed (need restic >= 0.17)") from exc
    except CommandError:
        found = (0, 0, 0)
    if found < MIN_VERSION:
        have = ".".join(map(str, found))
        raise ResticTooOld(
            f"restic {have} is too old: need >= 0.17 for --stdin-from-command, "
            "clean SIGTERM handling and documented exit codes"
        )
    return found


def init(repo: Repository, chunker_from: Repository | None = None) -> str:
    """Create the repository; returns its id. ``chunker_from``: the repository it will
    hold copies of, whose chunker parameters it takes (restic's advice for copies)."""
    if chunker_from is None:
        result = _run(repo, command("init"))
    else:
        argv = command("init", "--copy-chunker-params")
        result = guard.run(pair_argv(chunker_from, repo, argv), pair_env(chunker_from, repo),
                           repo.url, guard.QUICK, error)  # fmt: skip
    for message in parse_messages(result.stdout):
        if message.get("message_type") == "initialized":
            return str(message["id"])
    raise BackupError("restic init printed no repository id")


def exists(repo: Repository) -> bool:
    """True when a repository exists at the URL (exit 10 means it does not)."""
    try:
        _run(repo, command("cat", "config"))
    except RepositoryNotFound:
        return False
    return True


def preflight(repo: Repository) -> None:
    """Prove the repository usable before a backup starts reading its source (a dump
    must never hold a transaction open against a dead server), within seconds.

    ``restic cat config`` opens the repository (server reachable, TLS and rest-server
    credentials accepted, repository present, password right) and, without
    ``--no-lock``, writes and deletes a lock file: a write an append-only rest-server
    allows, which fails on a read-only or full server. It cannot prove room for the
    backup itself; a full server is caught by its first HTTP 507 instead.
    On S3 a bucket policy may refuse restic's deletion of its own lock: restic then
    exits 0 and leaves the lock behind, and every later run would; that fails here too.
    """
    argv = command("cat", "config")
    result = _run(repo, argv, guard.PREFLIGHT)
    failure = ResticError(execute.display(argv), 0, "", "left an error behind")
    if _name_backend_failure(failure, result, repo.url, "cat"):
        raise failure


def _name_backend_failure(
    error: ResticError, result: execute.Result, url: str, verb: str, prefix: str = ""
) -> bool:
    """When restic exited 0 after a backend operation failed (a deletion the store
    refused), give ``error`` that failure's reason and message; True if there was one."""
    failed = [line for line in result.stderr.splitlines() if repository_errors.FAILED.match(line)]
    cause = repository_errors.line_cause(failed[0]) if failed else None
    if cause is None:
        return False
    error.because(cause.reason)
    error.args = (prefix + repository_errors.message(cause, verb, url),)
    return True


def copy(source: Repository, target: Repository, snapshot_ids: Sequence[str] = ()) -> int:
    """Copy the snapshots ``snapshot_ids`` of ``source`` (default: every one) that
    ``target`` does not hold yet (restic copy, which recognises earlier copies; each copy
    names its snapshot as ``original``); returns how many it copied. Failures are named
    after ``target``, where the data goes."""
    argv = pair_argv(source, target, command("copy", "--retry-lock", RETRY_LOCK, *snapshot_ids))
    result = guard.run(argv, pair_env(source, target), target.url, guard.LONG, error)
    return len(COPIED.findall(result.stdout))


COPIED = re.compile(rb"^snapshot [0-9a-f]+ saved$", re.MULTILINE)


def pair_env(source: Repository, target: Repository) -> dict[str, str]:
    """restic's environment for ``target`` with ``source`` as its ``--from-repo``.

    Credentials and options of one kind (S3, rest-server) are restic's for both
    repositories: the manifest checks make sure the two agree, and two different
    credentials files of one kind are refused here.
    """
    ours, theirs = source.credentials_file, target.credentials_file
    if ours and theirs and ours != theirs and source.is_s3 == target.is_s3:
        kind = "S3" if source.is_s3 else "rest-server"
        raise BackupError(
            f"restic copy gives {source.url} and {target.url} one set of {kind} "
            f"credentials: {ours} and {theirs} differ"
        )
    env = {**source.env(), **target.env()}
    env["RESTIC_FROM_REPOSITORY"] = source.url
    env["RESTIC_FROM_PASSWORD_FILE"] = source.password_file
    cacerts = dict.fromkeys(c for c in (source.cacert, target.cacert) if c)
    if cacerts:
        env["RESTIC_CACERT"] = ",".join(cacerts)
    return env


def pair_argv(source: Repository, target: Repository, argv: Sequence[str]) -> list[str]:
    """``argv`` with the options of both repositories (one S3 set, see ``pair_env``)."""
    options = dict.fromkeys([*source.options(), *target.options()])
    return [argv[0], *options, *argv[1:]]


def tag_args(tags: Mapping[str, str]) -> list[str]:
    """``--tag key=value`` for each tag, one snapshot tag each."""
    args: list[str] = []
    for key, value in tags.items():
        args += ["--tag", f"{key}={value}"]
    return args


def tag_filter(tags: Mapping[str, str]) -> list[str]:
    """One ``--tag`` filter that requires all of ``tags`` (restic ANDs a comma list)."""
    if not tags:
        return []
    return ["--tag", ",".join(f"{key}={value}" for key, value in tags.items())]


def backup(
    repo: Repository,
    paths: Sequence[str],
    tags: Mapping[str, str],
    *,
    parent: str | None = None,
    force: bool = False,
    excludes: Sequence[str] = (),
) -> BackupSummary:
    """Back up files and directories. Raises ``BackupIncomplete`` on exit 3."""
    args = ["--host", repo.host, "--retry-lock", RETRY_LOCK, *tag_args(tags)]
    if parent:
        args += ["--parent", parent]
    if force:
        args.append("--force")
    for pattern in excludes:
        args += ["--exclude", pattern]
    result = _run(repo, command("backup", *args, "--", *paths), guard.LONG)
    return BackupSummary.from_json(summary_of(parse_messages(result.stdout)))


class StdinBackup:
    """A ``restic backup --stdin`` in progress: write data, then ``finish`` or ``abort``.

    restic only writes the snapshot after it reads end-of-file, so a producer that
    fails is handled by ``abort``: no snapshot is created.
    """

    def __init__(
        self,
        repo: Repository,
        filename: str,
        tags: Mapping[str, str],
        limits: guard.Limits = guard.LONG,
    ) -> None:
        argv = _one_file_backup(repo, filename, tags, "--stdin")
        self._stdout: list[bytes] = []
        self.running = Running(
            repo, argv, limits, stdin=execute.PIPE, on_stdout_line=self._stdout.append
        )
        assert self.running.process.popen.stdin is not None
        self.stdin: IO[bytes] = self.running.process.popen.stdin

    def finish(self) -> BackupSummary:
        """Close stdin (restic now saves the snapshot) and return the summary."""
        self.stdin.close()
        self.running.check()
        return BackupSummary.from_json(summary_of(parse_messages(self._stdout)))

    def failure(self) -> CommandError:
        """Why restic stopped reading (it exited, or its guard stopped it)."""
        try:
            self.running.check()
        except CommandError as exc:
            return exc
        return ResticError(execute.display(self.running.process.argv), 0, "", "stopped reading")

    def abort(self, grace: float = guard.LONG.grace) -> None:
        """Stop restic before end-of-file so that it saves nothing, within milliseconds.

        restic cannot act on SIGTERM while it is blocked reading stdin. So: SIGTERM,
        wait until restic says it received it (it cancels its context right after),
        then close stdin; the end-of-file it now reads can no longer become a snapshot.
        SIGKILL after ``grace``: with the server gone, removing its lock would take a minute.
        """
        popen = self.running.process.popen
        if popen.poll() is None:
            popen.terminate()
            self.running.signalled.wait(ABORT_ACK_WAIT)
        with contextlib.suppress(BrokenPipeError, OSError):
            self.stdin.close()
        self.running.stop(grace)


def _one_file_backup(
    repo: Repository, filename: str, tags: Mapping[str, str], *source: str
) -> list[str]:
    """``restic backup`` of one file named ``filename`` read from ``source`` (``--stdin``,
    or ``--stdin-from-command`` and its command)."""
    return command(
        "backup",
        "--host",
        repo.host,
        "--retry-lock",
        RETRY_LOCK,
        "--quiet",
        "--stdin-filename",
        filename,
        *tag_args(tags),
        *source,
    )


class SealedBackup:
    """A ``restic backup`` of one small document that is only known later: restic starts
    now (key, lock, index: most of a small backup's time) while the document is being
    made, and saves it once ``seal`` hands it over.

    restic reads it from ``backup_agent.sealed``, run by ``--stdin-from-command`` with
    an empty environment, which gets it through an inherited pipe and exits non-zero
    unless it got a whole frame: if this process gives up (``abort``) or dies, restic
    saves nothing. Start it from the thread that will seal it (``execute._spawn``).
    """

    def __init__(self, repo: Repository, filename: str, tags: Mapping[str, str]) -> None:
        read_end, write_end = os.pipe()  # both close-on-exec; read_end is passed on
        self._write_end: int | None = write_end
        # The feeder runs by its path (it imports only os and sys), however the agent
        # is installed; `env -i` keeps restic's environment (and its secrets) from it.
        feeder = ["env", "-i", sys.executable, "-I", sealed.__file__, str(read_end)]
        argv = _one_file_backup(repo, filename, tags, "--stdin-from-command", "--", *feeder)
        self._stdout: list[bytes] = []
        try:
            self.running = Running(
                repo,
                argv,
                guard.LONG,
                stdin=execute.DEVNULL,
                pass_fds=(read_end,),
                on_stdout_line=self._stdout.append,
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)

    def seal(self, document: bytes) -> BackupSummary:
        """Hand ``document`` over; restic saves it. Returns the summary."""
        write_end, self._write_end = self._write_end, None
        if write_end is None:
            raise BackupError("a sealed backup was already sealed or aborted")
        try:
            with open(write_end, "wb", closefd=True) as pipe:
                pipe.write(sealed.frame(document))
        except BrokenPipeError:
            pass  # restic (or its feeder) stopped early: its exit code says why
        self.running.check()
        return BackupSummary.from_json(summary_of(parse_messages(self._stdout)))

    def abort(self) -> None:
        """Hand nothing over, so that restic saves nothing; no-op once sealed."""
        write_end, self._write_end = self._write_end, None
        if write_end is None:
            return
        os.close(write_end)  # the feeder reads end of file without a frame and exits 1
        with contextlib.suppress(CommandError):
            self.running.check()


def backup_bytes(
    repo: Repository, filename: str, data: bytes, tags: Mapping[str, str]
) -> BackupSummary:
    """Store a small in-memory document as its own snapshot."""
    return SealedBackup(repo, filename, tags).seal(data)


def snapshots(repo: Repository, tags: Mapping[str, str] | None = None) -> list[Snapshot]:
    """The snapshots carrying all ``tags``, of every host name, oldest first. Which of
    them to trust is decided by ``backup_agent.snapshots.judge``."""
    argv = command("snapshots", "--retry-lock", RETRY_LOCK, *tag_filter(tags or {}))
    found = [Snapshot.from_json(item) for item in json.loads(_run(repo, argv).stdout or b"[]")]
    return sorted(found, key=lambda snap: snap.time)


def forget(repo: Repository, snapshot_ids: Sequence[str]) -> None:
    """Remove exactly these snapshots; the retention policy is decided by the caller.

    restic prints no JSON when given ids, and exits 0 even when the server refuses a
    deletion (an append-only rest-server answers 403), so stderr is checked too; the
    error is then named as when the guard stops restic at the refusal (access_refused).
    """
    if not snapshot_ids:
        return
    argv = command("forget", "--retry-lock", RETRY_LOCK, *snapshot_ids)
    result = _run(repo, argv)
    lines = result.stderr.splitlines()
    refused = [line for line in lines if "unable to remove" in line]
    if refused:
        error = ResticError(
            execute.display(argv),
            0,
            execute.mask(" | ".join(refused[-3:])),
            "could not remove snapshots",
        )
        raise guard.named(error, "forget", 0, lines, repo.url)


def retag(repo: Repository, snapshot_id: str, tags: Sequence[str]) -> None:
    """Replace a snapshot's tags (restic writes it anew, keeping ``original``)."""
    args = [arg for tag in tags for arg in ("--set", tag)]
    _run(repo, command("tag", "--retry-lock", RETRY_LOCK, *args, snapshot_id))


def prune(repo: Repository) -> None:
    """Remove data no snapshot references any more."""
    _run(repo, command("prune", "--retry-lock", RETRY_LOCK), guard.LONG)


def check(repo: Repository, read_data_subset: str | None = None) -> None:
    """Check the repository's structure, and read a subset of pack files when asked."""
    args = [f"--read-data-subset={read_data_subset}"] if read_data_subset else []
    _run(repo, command("check", "--retry-lock", RETRY_LOCK, *args), guard.LONG)


def dump(repo: Repository, snapshot_id: str, path: str, stdout: int | IO[bytes]) -> Running:
    """Start streaming one file of a snapshot to ``stdout``; the caller checks it."""
    return Running(
        repo, command("dump", "--retry-lock", RETRY_LOCK, snapshot_id, path), stdout=stdout
    )


def dump_bytes(repo: Repository, snapshot_id: str, path: str) -> bytes:
    """Read one small file of a snapshot into memory."""
    return _run(repo, command("dump", "--retry-lock", RETRY_LOCK, snapshot_id, path)).stdout


def restore(
    repo: Repository,
    snapshot_id: str,
    target: str,
    *,
    include: Sequence[str] = (),
    verify: bool = True,
) -> RestoreSummary:
    """Restore a snapshot (or ``ID:subpath``) into ``target``, verifying the written data."""
    args = [snapshot_id, "--target", target]
    for pattern in include:
        args += ["--include", pattern]
    if verify:
        args.append("--verify")
    summary = summary_of(
        parse_messages(
            _run(repo, command("restore", "--retry-lock", RETRY_LOCK, *args), guard.LONG).stdout
        )
    )
    return RestoreSummary(
        total_files=summary.get("total_files", 0),
        files_restored=summary.get("files_restored", 0),
        total_bytes=summary.get("total_bytes", 0),
        bytes_restored=summary.get("bytes_restored", 0),
    )


def unlock(repo: Repository, limits: guard.Limits = guard.QUICK) -> str:
    """Remove locks restic itself proves stale (older than 30 minutes, or of a dead
    process on this host); never ``--remove-all``. Returns what restic said."""
    return _run(repo, command("unlock"), limits).stdout.decode(errors="replace").strip()


def stats(repo: Repository, snapshot_ids: Sequence[str] = (), mode: str = "raw-data") -> Stats:
    """Repository size as restic counts it."""
    data = json.loads(
        _run(
            repo, command("stats", "--retry-lock", RETRY_LOCK, "--mode", mode, *snapshot_ids)
        ).stdout
    )
    return Stats(
        total_size=data.get("total_size", 0),
        total_file_count=data.get("total_file_count", 0),
        snapshots_count=data.get("snapshots_count", 0),
    )
