"""Naming restic failures, from stderr captured of real restic 0.18 against rest-server 0.13.

Each file in ``data/restic_failures`` is one real run: what was done, restic's exit code,
how long it took, and its stderr verbatim (see /work/notes in the report for how).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backup_agent import repository_errors as causes
from backup_agent.repository_guard import Watch

SAMPLES = sorted((Path(__file__).parent / "data" / "restic_failures").glob("*.json"))
SECRETS = ("rest-s3cret", "repo-password-xyz")


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_each_captured_failure_gets_its_cause(path: Path) -> None:
    sample = load(path)
    cause = causes.classify(
        sample["verb"],
        sample["exit"],
        sample["stderr"],
        sample["url"],
        stopped_after=sample["stopped_after"],
    )
    assert cause is not None
    assert cause.reason == sample["reason"]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_messages_are_one_line_with_the_host_and_no_secret(path: Path) -> None:
    sample = load(path)
    cause = causes.classify(
        sample["verb"], sample["exit"], sample["stderr"], sample["url"],
        stopped_after=sample["stopped_after"],
    )  # fmt: skip
    assert cause is not None
    text = causes.message(cause, sample["verb"], sample["url"], sample["stopped_after"])
    assert "\n" not in text and "\\n" not in text
    assert "Is there a repository" not in text
    if cause.reason != causes.DUMP_FAILED:  # the dump's failure is not the server's
        assert causes.server_of(sample["url"]) in text
    assert not any(secret in text for secret in SECRETS)


def test_server_down_is_not_reported_as_a_missing_repository() -> None:
    """The user's case: restic's own give-up ends with "Is there a repository ...?"."""
    sample = load(next(p for p in SAMPLES if p.stem == "refused-default"))
    assert any("Is there a repository" in line for line in sample["stderr"])
    cause = causes.classify("cat", sample["exit"], sample["stderr"], sample["url"])
    assert cause == causes.Cause(causes.UNREACHABLE, "connection refused")
    assert causes.message(cause, "cat", sample["url"]) == (
        "backup server 127.0.0.12:22001 unreachable: connection refused"
    )


def test_a_lock_names_its_holder() -> None:
    sample = load(next(p for p in SAMPLES if p.stem == "locked-none"))
    cause = causes.classify("backup", 11, sample["stderr"], sample["url"])
    assert cause is not None
    assert cause.detail.startswith("held exclusively by PID ")
    assert "\n" not in cause.detail


def test_a_failed_dump_command_is_named_with_what_it_said() -> None:
    sample = load(next(p for p in SAMPLES if p.stem == "dump-failed-from-command"))
    cause = causes.classify("backup", 1, sample["stderr"], sample["url"])
    assert cause == causes.Cause(
        causes.DUMP_FAILED,
        "sh failed (exit status 2): mariadb-dump: Got error: 1045: Access denied for user",
        True,
    )


def test_failures_that_are_not_about_the_repository_are_left_alone() -> None:
    lines = [
        '{"message_type":"error","error":{"message":"open /src/x: permission denied"},'
        '"during":"archival","item":"/src/x"}',
        '{"message_type":"exit_error","code":3,"message":"Warning: at least one source file'
        ' could not be read"}',
    ]
    assert causes.classify("backup", 3, lines, "rest:http://h:1/r") is None


@pytest.mark.parametrize(
    ("line", "reason", "hopeless"),
    [
        ("Stat(<config/>) returned error, retrying after 1.3s: Head \"http://a:***@h:1/r/config\""
         ": dial tcp h:1: connect: connection refused", causes.UNREACHABLE, False),
        ("Save(<data/6a3f98d8df>) returned error, retrying after 750.9ms: unexpected HTTP"
         " response (507): 507 Insufficient Storage", causes.NOT_WRITABLE, True),
        ("Save(<lock/90c1bfa9e8>) returned error, retrying after 755ms: unexpected HTTP"
         " response (500): 500 Internal Server Error", causes.NOT_WRITABLE, False),
        ("Stat(<config/>) returned error, retrying after 9.6s: Head \"https://a:***@h:1/r/config\""
         ": tls: failed to verify certificate: x509: certificate signed by unknown authority",
         causes.REFUSED, True),
        ("Remove(<snapshot/76cff92837>) failed: unexpected HTTP response (403): 403 Forbidden",
         causes.REFUSED, True),
        ("Stat(<config/>) returned error, retrying after 1.1s: Head \"http://a:***@h:1/r/config\""
         ": request timeout", causes.UNREACHABLE, False),
    ],
)  # fmt: skip
def test_line_causes(line: str, reason: str, hopeless: bool) -> None:
    cause = causes.line_cause(line)
    assert cause is not None
    assert (cause.reason, cause.hopeless) == (reason, hopeless)


def test_lines_without_a_backend_error_name_nothing() -> None:
    assert causes.line_cause("\x1b[2Ksignal terminated received, cleaning up") is None
    assert causes.line_cause("unable to remove snapshot/76cff928 from the repository") is None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("s3-bucket-missing", "no S3 bucket no-such-bucket at {server}: a wrong bucket name, or "
         "{server} is not the S3 endpoint (the maintenance role creates buckets: backup-agent "
         "s3-setup)"),
        ("s3-clock-skew", "S3 store {server} refuses this host's requests: the clocks differ by "
         "more than 15 minutes; fix them (NTP)"),
        ("s3-not-s3-rest-server", "{server} is not the S3 store of {url}: the server there is "
         "not an S3 store (HTTP 405)"),
        ("s3-lock-delete-denied", "S3 store {server} refused access: the store refuses deleting "
         "lock files: the bucket policy must allow locks/"),
        ("s3-agent-prune", "S3 store {server} refused access: the store refuses deletions (S3 "
         "Access Denied: append-only bucket policy)"),
        ("s3-path-style-off", "S3 store {server} unreachable: host name does not resolve (the "
         "bucket in the host name? s3.path_style: true puts it in the path) (restic cat gave up "
         "after 4 s)"),
    ],
)  # fmt: skip
def test_s3_messages_say_what_to_fix(name: str, message: str) -> None:
    sample = load(next(p for p in SAMPLES if p.stem == name))
    cause = causes.classify(
        sample["verb"], sample["exit"], sample["stderr"], sample["url"],
        stopped_after=sample["stopped_after"],
    )  # fmt: skip
    assert cause is not None
    text = causes.message(cause, sample["verb"], sample["url"], sample["stopped_after"])
    assert text == message.format(server=causes.server_of(sample["url"]), url=sample["url"])


def test_s3_failures_restic_retries_are_hopeless_at_their_first_line() -> None:
    """restic retries a missing bucket, a wrong key or a skewed clock for 15 minutes; the
    guard stops it at the first retry line."""
    retried = [load(p) for p in SAMPLES if p.stem.startswith("s3-") and load(p)["stopped_after"]]
    assert len(retried) >= 8
    for sample in retried:
        first = next(line for line in sample["stderr"] if "retrying after" in line)
        cause = causes.line_cause(first)
        if sample["reason"] == causes.UNREACHABLE:  # a store restarting: retrying may help
            assert cause is not None and not cause.hopeless, first
        else:
            assert cause is not None and cause.hopeless, first
            assert cause.reason == sample["reason"], first


@pytest.mark.parametrize(
    ("url", "bucket"),
    [
        ("s3:https://s3.example:9000/bucket/path", "bucket"),
        ("s3:http://127.0.0.1:23100/restic-1", "restic-1"),
        ("s3:s3.amazonaws.com/bucket/prefix", "bucket"),
        ("s3:s3.amazonaws.com", ""),
    ],
)
def test_bucket_of(url: str, bucket: str) -> None:
    assert causes.bucket_of(url) == bucket


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("rest:http://agent:s3cret@10.0.0.5:8000/agama", "10.0.0.5:8000"),
        ("rest:https://backup.example/agama/", "backup.example"),
        ("s3:https://s3.example:9000/bucket/path", "s3.example:9000"),
        ("s3:s3.amazonaws.com/bucket", "s3.amazonaws.com"),
        ("sftp:backup@host.example:/srv/restic", "host.example"),
        ("/srv/restic/agama", "/srv/restic/agama"),
    ],
)
def test_server_of_never_shows_credentials(url: str, server: str) -> None:
    assert causes.server_of(url) == server
    assert "s3cret" not in causes.location_of(url)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


REFUSED_LINE = (
    'Stat(<config/>) returned error, retrying after 1s: Head "http://a:***@h:1/r/config":'
    " dial tcp h:1: connect: connection refused"
)


def test_watch_gives_up_when_retrying_outlasts_its_budget() -> None:
    clock = Clock()
    watch = Watch(retry_budget=20, clock=clock)
    watch.feed(REFUSED_LINE)
    clock.now += 19
    watch.feed(REFUSED_LINE)
    assert watch.give_up() == ""
    clock.now += 2
    assert watch.give_up() == "retry budget"


def test_watch_starts_over_after_a_success() -> None:
    clock = Clock()
    watch = Watch(retry_budget=20, clock=clock)
    watch.feed(REFUSED_LINE)
    clock.now += 15
    watch.feed("Stat(<config/>) operation successful after 3 retries")
    clock.now += 15
    assert watch.give_up() == ""


def test_watch_gives_up_at_once_on_a_hopeless_error_and_keeps_the_first_line() -> None:
    watch = Watch(retry_budget=600, clock=Clock())
    first = (
        "Save(<data/6a3f98d8df>) returned error, retrying after 750ms: unexpected HTTP"
        " response (507): 507 Insufficient Storage"
    )
    watch.feed(first)
    for _ in range(500):
        watch.feed("noise")
    assert watch.give_up() == "hopeless"
    assert watch.classification_lines()[0] == first
