"""Name why a restic call against the repository failed, in one line with a ``reason`` label.

restic 0.18 reports backend trouble only as retry lines on stderr (``Stat(<config/>)
returned error, retrying after 1.3s: ... connection refused``) and retries almost every
error for 15 minutes. Its final JSON ``exit_error`` message spans several lines and adds
"Is there a repository at the following location?" even when the server is simply down.
This module reads those lines (captured from real restic 0.18 against rest-server 0.13
and Ceph RGW 16.2, see ``tests/unit/data/restic_failures``) and names one cause.
Messages name the backup server's (or S3 store's) host and port, never credentials,
and never contain a newline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

# The ``reason`` label of each cause, as metrics and the run log show it.
UNREACHABLE = "server_unreachable"
REFUSED = "access_refused"  # TLS or rest-server credentials refused
MISSING = "repository_missing"
WRONG_PASSWORD = "wrong_password"  # noqa: S105 (a label, not a password)
NOT_WRITABLE = "repository_not_writable"  # read-only or full
LOCKED = "locked"
DUMP_FAILED = "dump_failed"
TIMEOUT = "timeout"
CLOCK_SKEW = "clock_skew"  # S3 signs requests with the time: the store refuses a wrong clock
WRONG_ENDPOINT = "wrong_endpoint"  # something answers there, but not an S3 store
REASONS = (
    UNREACHABLE,
    REFUSED,
    MISSING,
    WRONG_PASSWORD,
    NOT_WRITABLE,
    LOCKED,
    DUMP_FAILED,
    TIMEOUT,
    CLOCK_SKEW,
    WRONG_ENDPOINT,
)

RETRYING = re.compile(r"^(?P<op>\w+\(<[^>]*>\)) returned error, retrying after \S+: (?P<error>.*)$")
FAILED = re.compile(r"^(?P<op>\w+\(<[^>]*>\)) failed: (?P<error>.*)$")
RECOVERED = re.compile(r"operation successful after \d+ retries$")
SIGNALLED = re.compile(r"signal (?:terminated|interrupt) received, cleaning up$")
HTTP_STATUS = re.compile(r"unexpected HTTP response \((?P<code>\d{3})\): (?P<text>\d{3} [^\n\"]*)")
SUBPROCESS = re.compile(r"^subprocess (?P<program>\S+): (?P<line>.*)$")
COMMAND_FAILED = re.compile(r"command failed: (?P<how>exit status \d+|signal: \w+)")
LOCK_HOLDER = re.compile(
    r"locked (?P<mode>exclusively |non-exclusively )?by (?P<holder>PID \d+ on \S+)"
)
LOCK_AGE = re.compile(r"lock was created at [^(]*\((?P<age>[^)]*) ago\)")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass(frozen=True)
class Cause:
    """One named cause: the ``reason`` label, what happened, and whether retrying is futile."""

    reason: str
    detail: str
    hopeless: bool = False  # retrying cannot help: give up at once


# Transport failures (Go's net/http and crypto/tls wording), first match wins.
TRANSPORT: tuple[tuple[str, Cause], ...] = (
    ("connection refused", Cause(UNREACHABLE, "connection refused")),
    ("no such host", Cause(UNREACHABLE, "host name does not resolve")),
    ("server misbehaving", Cause(UNREACHABLE, "host name does not resolve")),
    ("no route to host", Cause(UNREACHABLE, "no route to host")),
    ("network is unreachable", Cause(UNREACHABLE, "network unreachable")),
    ("request timeout", Cause(UNREACHABLE, "no answer (request stuck)")),
    ("i/o timeout", Cause(UNREACHABLE, "no answer (connection timed out)")),
    ("connection reset by peer", Cause(UNREACHABLE, "connection reset")),
    ("broken pipe", Cause(UNREACHABLE, "connection broken")),
    (
        "server gave HTTP response to HTTPS client",
        Cause(REFUSED, "URL says https, server speaks plain HTTP", True),
    ),
    (
        "x509: certificate signed by unknown authority",
        Cause(REFUSED, "TLS certificate signed by an unknown CA", True),
    ),
    (
        "x509: certificate has expired",
        Cause(REFUSED, "TLS certificate expired or not yet valid", True),
    ),
    (
        "x509: cannot validate certificate for",
        Cause(REFUSED, "TLS certificate does not name this host", True),
    ),
    (
        "x509: certificate is valid for",
        Cause(REFUSED, "TLS certificate does not name this host", True),
    ),
    ("x509:", Cause(REFUSED, "TLS certificate not accepted", True)),
    ("tls:", Cause(REFUSED, "TLS handshake failed", True)),
    (": EOF", Cause(UNREACHABLE, "connection closed by the server")),
)
# rest-server's answers. 404 only means "no repository" on the config file.
HTTP: dict[str, Cause] = {
    "400": Cause(REFUSED, "request rejected (HTTP 400; http:// to a TLS server?)", True),
    "401": Cause(REFUSED, "rest-server credentials refused (HTTP 401)", True),
    "403": Cause(REFUSED, "server forbids this (HTTP 403)", True),
    "404": Cause(MISSING, "not found (HTTP 404)", True),
    "500": Cause(NOT_WRITABLE, "server cannot write (HTTP 500, read-only or wrong owner?)"),
    "502": Cause(UNREACHABLE, "proxy in front of it got no answer (HTTP 502)"),
    "503": Cause(UNREACHABLE, "server unavailable (HTTP 503)"),
    "504": Cause(UNREACHABLE, "proxy in front of it timed out (HTTP 504)"),
    "507": Cause(NOT_WRITABLE, "server out of space (HTTP 507 Insufficient Storage)", True),
}


# S3 stores' answers, as minio-go (restic's S3 client) passes on the store's error
# message, first match wins. Ceph RGW and AWS word them alike; where they differ the
# needle is what both share. restic retries all but "Access Denied" for 15 minutes.
S3: tuple[tuple[str, Cause], ...] = (
    (
        "The specified bucket does not exist",
        Cause(MISSING, "S3 bucket not found", True),
    ),
    (
        "does not exist in our records",
        Cause(REFUSED, "S3 access key unknown to the store", True),
    ),
    (
        "The request signature we calculated does not match",
        Cause(REFUSED, "S3 secret key wrong (signature does not match)", True),
    ),
    (
        "request time and the",  # RGW: "...the server's time is too large", AWS: "current time"
        Cause(CLOCK_SKEW, "the clocks differ by more than 15 minutes", True),
    ),
    ("RequestTimeTooSkewed", Cause(CLOCK_SKEW, "the clocks differ by more than 15 minutes", True)),
    ("QuotaExceeded", Cause(NOT_WRITABLE, "S3 quota exceeded", True)),
    (
        "s3.getCredentials: no credentials found",
        Cause(REFUSED, "no S3 credentials (repository credentials_file)", True),
    ),
    (
        "Method Not Allowed",
        Cause(WRONG_ENDPOINT, "the server there is not an S3 store (HTTP 405)", True),
    ),
    (  # an S3 store refuses with 403 and an S3 error; a bare 401 is some other server
        "Unauthorized",
        Cause(WRONG_ENDPOINT, "the server there is not an S3 store (HTTP 401)", True),
    ),
    ("Bucket name", Cause(MISSING, "S3 bucket name invalid", True)),  # minio-go's own check
    ("malformed HTTP", Cause(WRONG_ENDPOINT, "no HTTP server at that port", True)),
    (
        "Connection closed by foreign host",
        Cause(REFUSED, "URL says http, the endpoint closes the connection (TLS?)", True),
    ),
)
S3_DENIED = "Access Denied."
# What S3's "Access Denied." means, by the operation restic was doing.
S3_DENIED_BY_OP = (
    (
        "Remove(<lock/",
        "the store refuses deleting lock files: the bucket policy must allow locks/",
    ),
    ("Remove(", "the store refuses deletions (S3 Access Denied: append-only bucket policy)"),
    ("Save(", "the store refuses writing (S3 Access Denied: a read-only key pair?)"),
)


def line_cause(line: str) -> Cause | None:
    """The cause named by one retry or failure line of restic's stderr, if any."""
    line = ANSI.sub("", line).strip()
    match = RETRYING.match(line) or FAILED.match(line)
    if match is None:
        return None
    return error_cause(match["error"], match["op"])


def error_cause(error: str, op: str = "") -> Cause | None:
    """The cause inside one backend error text (``op`` is restic's ``Save(<lock/...>)``)."""
    status = HTTP_STATUS.search(error)
    if status:
        cause = HTTP.get(status["code"])
        if cause is None:
            return Cause(UNREACHABLE, f"unexpected answer (HTTP {status['text'].strip()})")
        if status["code"] == "403" and op.startswith(("Remove(", "Delete(")):
            return Cause(REFUSED, "server refuses deletions (HTTP 403, append-only?)", True)
        if status["code"] == "404" and not op.startswith("Stat(<config"):
            return Cause(NOT_WRITABLE, f"{op} not found on the server (HTTP 404)")
        return cause
    if S3_DENIED in error:
        detail = next((text for start, text in S3_DENIED_BY_OP if op.startswith(start)), "")
        return Cause(REFUSED, detail or "S3 access denied (bucket policy or key pair)", True)
    for needle, cause in (*S3, *TRANSPORT):
        if needle in error:
            return cause
    return None


def exit_message(lines: Iterable[str]) -> str:
    """The message of restic's JSON ``exit_error`` line (the last one), or ''."""
    for line in reversed(list(lines)):
        line = line.strip()
        if line.startswith("{") and '"exit_error"' in line:
            try:
                return str(json.loads(line).get("message", ""))
            except ValueError:
                return ""
    return ""


def server_of(url: str) -> str:
    """Where the repository lives, for messages: ``host:port`` of a URL, never credentials."""
    scheme, _, rest = url.partition(":")
    if scheme in {"rest", "s3", "swift", "b2", "azure", "gs", "rclone", "sftp"} and rest:
        if "://" in rest:
            return urlsplit(rest).netloc.rpartition("@")[2] or rest
        if scheme == "sftp":
            return rest.partition(":")[0].rpartition("@")[2]
        return rest.partition("/")[0]
    return url


def location_of(url: str) -> str:
    """The repository URL without credentials."""
    return re.sub(r"//[^/@\s]*@", "//", url)


def one_line(text: str) -> str:
    """Collapse newlines and runs of spaces; drop restic's hint about a missing repository."""
    text = text.split("\nIs there a repository at the following location?")[0]
    return " ".join(ANSI.sub("", text).split())


def classify(
    verb: str,
    returncode: int,
    stderr_lines: Iterable[str],
    url: str,
    *,
    stopped_after: float | None = None,
) -> Cause | None:
    """Name the cause of a failed ``restic VERB``, or None when it is not about the repository.

    ``stopped_after`` is set when the caller stopped restic itself (its deadline or retry
    budget ran out) after that many seconds; restic then says only "context canceled".
    """
    lines = [ANSI.sub("", line).strip() for line in stderr_lines]
    lines = [line for line in lines if line]
    final = exit_message(lines)
    if returncode == 10:
        return Cause(MISSING, "no repository", True)
    if returncode == 12:
        return Cause(WRONG_PASSWORD, "wrong repository password", True)
    if returncode == 11:
        return Cause(LOCKED, lock_detail(final), True)
    dump = dump_detail(lines, final)
    if dump:
        return Cause(DUMP_FAILED, dump, True)
    backend = [cause for line in lines if (cause := line_cause(line))]
    if backend:
        # The first one: what went wrong; later lines are restic cleaning up after it.
        return backend[0]
    cause = error_cause(final, "Stat(<config/>)" if "open config file" in final else "")
    if cause:
        return cause
    lock_error = final.partition("unable to create lock in backend: ")[2]
    if lock_error and "context canceled" not in lock_error:
        return Cause(NOT_WRITABLE, one_line(lock_error))
    if stopped_after is not None:
        return Cause(TIMEOUT, f"no result within {stopped_after:.0f} s")
    return None


def lock_detail(final: str) -> str:
    holder = LOCK_HOLDER.search(final)
    if holder is None:
        return one_line(final) or "locked by another process"
    mode = holder["mode"] or ""
    age = LOCK_AGE.search(final)
    held = f", lock {age['age']} old" if age else ""
    return f"held {mode}by {holder['holder']}{held}"


def dump_detail(lines: list[str], final: str) -> str:
    """What the producer of ``--stdin-from-command`` said when it failed, if it did."""
    failed = COMMAND_FAILED.search(final)
    if failed is None:
        return ""
    said = [m for line in lines if (m := SUBPROCESS.match(line))]
    program = said[-1]["program"] if said else "the dump command"
    last = f": {said[-1]['line'].strip()}" if said else ""
    how = failed["how"].replace("signal: ", "killed by ")
    return f"{program} failed ({how}){last}"


# One line per cause: {store} "backup server" or "S3 store", {server} host:port,
# {location} the repository, {detail}, {after}.
MESSAGES = {
    UNREACHABLE: "{store} {server} unreachable: {detail}{after}",
    REFUSED: "{store} {server} refused access: {detail}{after}",
    MISSING: "no restic repository at {location} (backup-agent init creates it)",
    WRONG_PASSWORD: "wrong password for the restic repository at {location}",
    NOT_WRITABLE: "{store} {server} cannot store the repository: {detail}{after}",
    LOCKED: "restic repository at {location} is locked: {detail}",
    DUMP_FAILED: "dump failed: {detail}",
    TIMEOUT: "restic {verb} against {server} timed out: {detail}",
    CLOCK_SKEW: "{store} {server} refuses this host's requests: {detail}; fix them (NTP)",
    WRONG_ENDPOINT: "{server} is not the S3 store of {location}: {detail}",
}
BUCKET_MISSING = (
    "no S3 bucket {bucket} at {server}: a wrong bucket name, or {server} is not the S3 "
    "endpoint (the maintenance role creates buckets: backup-agent s3-setup)"
)


def message(cause: Cause, verb: str, url: str, stopped_after: float | None = None) -> str:
    """One line for people: the cause, where, and how long restic was given."""
    s3 = url.startswith("s3:")
    after = f" (restic {verb} gave up after {stopped_after:.0f} s)" if stopped_after else ""
    if s3 and cause.reason == UNREACHABLE and cause.detail == "host name does not resolve":
        after = " (the bucket in the host name? s3.path_style: true puts it in the path)" + after
    template = MESSAGES.get(cause.reason, MESSAGES[TIMEOUT])
    if cause.reason == MISSING and cause.detail.startswith("S3 bucket"):
        template = BUCKET_MISSING
    return template.format(
        store="S3 store" if s3 else "backup server",
        server=server_of(url),
        location=location_of(url),
        bucket=bucket_of(url),
        detail=cause.detail,
        after=after,
        verb=verb,
    )


def bucket_of(url: str) -> str:
    """The bucket of an ``s3:`` URL (``s3:https://host/BUCKET/path``, ``s3:host/BUCKET``)."""
    rest = url.removeprefix("s3:")
    rest = rest.partition("://")[2] if "://" in rest else rest
    return rest.split("/")[1] if rest.count("/") else ""
