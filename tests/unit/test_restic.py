"""restic wrapper: argv, environment, exit codes and JSON parsing (no restic is run)."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from backup_agent import execute, restic
from backup_agent import repository_guard as guard
from backup_agent.errors import BackupError, CommandError

# Output captured from restic 0.18.0 (`restic --json ...`), verbatim.
SNAPSHOTS_JSON = (
    b'[{"time":"2026-11-26T09:37:57.534649139Z","tree":"a89483a3e2293645008ae861299f5b8453'
    b'2a66a396adbbd266ae477d8b3fcffc","paths":["/tmp/rt/d"],"hostname":"agama","username":"'
    b'root","tags":["service=db","kind=full"],"program_version":"restic 0.18.0","summary":{"'
    b'backup_start":"2026-11-26T09:37:57.534649139Z","backup_end":"2026-11-26T09:37:58.23479'
    b'6039Z","files_new":1,"files_changed":0,"files_unmodified":0,"dirs_new":1,"dirs_changed"'
    b':0,"dirs_unmodified":0,"data_blobs":1,"tree_blobs":2,"data_added":703,"data_added_pack'
    b'ed":663,"total_files_processed":1,"total_bytes_processed":3},"id":"94affd5206065bc46826'
    b'3a17b120e5267386d416d5ada0fe51f7262e91cf78ce","short_id":"94affd52"}]'
)
BACKUP_SUMMARY = (
    b'{"message_type":"summary","files_new":1,"files_changed":0,"files_unmodified":0,"dirs_n'
    b'ew":0,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":1,"tree_blobs":1,"data_added":'
    b'287,"data_added_packed":338,"total_files_processed":1,"total_bytes_processed":5,"total_'
    b'duration":0.692645293,"backup_start":"2026-11-26T09:37:58.945113531Z","backup_end":"20'
    b'26-11-26T09:37:59.637758834Z","snapshot_id":"1bcca16fff8460f07463f7cac09ad9753e69d4e28'
    b'1e765f2fbe8d6b09584cb87"}'
)
STATUS = (
    b'{"message_type":"status","seconds_elapsed":1,"percent_done":0.5,"total_files":2,'
    b'"files_done":1,"total_bytes":6,"bytes_done":3}'
)
WRONG_PASSWORD = (
    '{"message_type":"exit_error","code":12,"message":"Fatal: wrong password or no key found"}'
)
VERSION_018 = (
    '{"message_type":"version","version":"0.18.0","go_version":"go1.24.4","go_os":"linux",'
    '"go_arch":"amd64"}'
)


@pytest.fixture(autouse=True)
def fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secrets and leaves none behind."""
    monkeypatch.setattr(execute, "_secrets", set())


# --- argv -----------------------------------------------------------------------------------


def test_command() -> None:
    """Every verb gets --json right after the program."""
    assert restic.command("snapshots", "--host", "agama") == [
        "restic",
        "--json",
        "snapshots",
        "--host",
        "agama",
    ]
    assert restic.command("prune") == ["restic", "--json", "prune"]


def test_tag_args() -> None:
    """One --tag per key=value, in order: each becomes its own snapshot tag."""
    assert restic.tag_args({"service": "db", "kind": "full"}) == [
        "--tag",
        "service=db",
        "--tag",
        "kind=full",
    ]
    assert restic.tag_args({}) == []


def test_tag_filter() -> None:
    """A single comma-joined --tag, which restic reads as 'all of these'."""
    assert restic.tag_filter({"service": "db", "kind": "meta", "of": "abc"}) == [
        "--tag",
        "service=db,kind=meta,of=abc",
    ]
    assert restic.tag_filter({}) == []


# --- environment and credentials ------------------------------------------------------------


def test_env_minimal() -> None:
    """Only the repository and the password *file* are passed."""
    repo = restic.Repository(url="/srv/repo", password_file="/run/secrets/pw", host="h")
    assert repo.env() == {
        "RESTIC_REPOSITORY": "/srv/repo",
        "RESTIC_PASSWORD_FILE": "/run/secrets/pw",
    }


def test_env_with_rest_credentials(tmp_path: Path) -> None:
    """REST credentials come from their file; the repository password never leaves its file."""
    password_file = tmp_path / "restic-password"
    password_file.write_text("repo-pass-7781\n")
    credentials = tmp_path / "rest-credentials"
    credentials.write_text("agent:rest-pass-4412\n")
    repo = restic.Repository(
        url="rest:https://backup-server:8000/agama",
        password_file=str(password_file),
        host="agama",
        credentials_file=str(credentials),
        cache_dir="/var/cache/restic",
    )
    env = repo.env()
    assert env == {
        "RESTIC_REPOSITORY": "rest:https://backup-server:8000/agama",
        "RESTIC_PASSWORD_FILE": str(password_file),
        "RESTIC_REST_USERNAME": "agent",
        "RESTIC_REST_PASSWORD": "rest-pass-4412",
        "RESTIC_CACHE_DIR": "/var/cache/restic",
    }
    assert not any("repo-pass-7781" in value for value in env.values())
    assert execute.mask("401 for agent:rest-pass-4412") == "401 for agent:***"


def test_read_credentials_keeps_colons_in_password(tmp_path: Path) -> None:
    """Only the first colon separates user and password; only the first line counts."""
    path = tmp_path / "creds"
    path.write_text("agent:pa:ss:word\nignored:line\n")
    assert restic.read_credentials(str(path)) == ("agent", "pa:ss:word")
    assert execute.mask("pa:ss:word") == "***"


@pytest.mark.parametrize("content", ["justonewordsecret\n", ":lonelysecret\n", "agent:\n", ""])
def test_read_credentials_bad_format(tmp_path: Path, content: str) -> None:
    """Anything but 'user:password' is refused, without echoing the file's content."""
    path = tmp_path / "creds"
    path.write_text(content)
    with pytest.raises(BackupError) as caught:
        restic.read_credentials(str(path))
    assert str(caught.value) == f"{path}: expected one line 'user:password'"


def test_read_credentials_missing_file(tmp_path: Path) -> None:
    """A missing file is a BackupError naming it."""
    path = tmp_path / "absent"
    with pytest.raises(BackupError) as caught:
        restic.read_credentials(str(path))
    assert str(caught.value) == (
        f"cannot read rest-server credentials {path}: No such file or directory"
    )


def s3_credentials(tmp_path: Path, body: str) -> str:
    path = tmp_path / "s3-credentials"
    path.write_text(body)
    return str(path)


def test_env_with_an_s3_credentials_file(tmp_path: Path) -> None:
    """restic reads the key pair from the file itself; the variables it would prefer to
    the file (inherited AWS or MinIO keys) are blanked, so the file counts."""
    credentials = s3_credentials(
        tmp_path, "[default]\naws_access_key_id = AGENTKEY\naws_secret_access_key = s3-secret-91\n"
    )
    cacert = tmp_path / "ca.pem"  # env() refuses a CA certificate it cannot read
    cacert.write_text("-----BEGIN CERTIFICATE-----\n")
    repo = restic.Repository(
        url="s3:https://s3.example.net/agama-mysql",
        password_file="/run/secrets/restic_password",
        host="agama",
        credentials_file=credentials,
        cacert=str(cacert),
    )
    env = repo.env()
    assert {key: env.pop(key) for key in restic.S3_KEY_VARIABLES} == dict.fromkeys(
        restic.S3_KEY_VARIABLES, ""
    )
    assert env == {
        "RESTIC_REPOSITORY": "s3:https://s3.example.net/agama-mysql",
        "RESTIC_PASSWORD_FILE": "/run/secrets/restic_password",
        "RESTIC_CACERT": str(cacert),
        "AWS_SHARED_CREDENTIALS_FILE": credentials,
        "AWS_PROFILE": "default",
    }
    assert "AWS_ACCESS_KEY_ID" in restic.S3_KEY_VARIABLES
    assert execute.mask("signed with s3-secret-91") == "signed with ***"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("[other]\naws_access_key_id = K\naws_secret_access_key = S\n", "no [default] profile"),
        ("[default]\naws_access_key_id = K\n", "needs aws_access_key_id and aws_secret_access_key"),
        ("[default]\ncredential_process = /bin/sh -c id\n", "credential_process is refused"),
        ("aws_access_key_id = K\n", "not an AWS credentials file"),
    ],
)
def test_s3_credentials_files_that_are_refused(tmp_path: Path, body: str, problem: str) -> None:
    """Only a plain key pair: restic would run a credential_process."""
    repo = restic.Repository("s3:h/b", "/p", "agama", s3_credentials(tmp_path, body))
    with pytest.raises(BackupError) as caught:
        repo.env()
    assert problem in str(caught.value)


def test_s3_options_are_arguments_after_the_program(tmp_path: Path) -> None:
    """Region and bucket lookup are restic options, one argument each; the verb stays
    the first argument without a dash (the guard names failures by it)."""
    repo = restic.Repository("s3:https://h/b", "/p", "agama", s3_region="eu-central-1",
                             s3_path_style=True)  # fmt: skip
    argv = repo.argv(restic.command("snapshots"))
    assert argv == [
        "restic",
        "--option=s3.region=eu-central-1",
        "--option=s3.bucket-lookup=path",
        "--json",
        "snapshots",
    ]
    assert guard.verb_of(argv) == "snapshots"
    virtual = restic.Repository("s3:https://h/b", "/p", "agama", s3_path_style=False)
    assert virtual.options() == ["--option=s3.bucket-lookup=dns"]
    assert restic.Repository("s3:https://h/b", "/p", "agama").options() == []
    rest = restic.Repository("rest:https://h/r", "/p", "agama", s3_region="eu-central-1")
    assert rest.options() == []


# --- exit codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (1, restic.ResticError),
        (3, restic.BackupIncomplete),
        (10, restic.RepositoryNotFound),
        (11, restic.RepositoryLocked),
        (12, restic.WrongPassword),
        (130, restic.ResticInterrupted),
        (2, restic.ResticError),
        (-15, restic.ResticError),
    ],
)
def test_exit_codes(code: int, expected: type[restic.ResticError]) -> None:
    """restic's documented exit codes become named exceptions."""
    error = execute.error_for(
        ["restic", "--json", "snapshots"], code, "Fatal: oops", error=restic.error
    )
    assert type(error) is expected
    assert isinstance(error, CommandError)
    assert error.returncode == code
    assert error.command == "restic --json snapshots"
    assert error.stderr_tail == "Fatal: oops"


def test_other_programs_are_not_restic_errors() -> None:
    """Exit 10 of another tool is a plain CommandError: only restic's wrapper asks for
    restic's error types."""
    error = execute.error_for(["mariadb-dump", "--all-databases"], 10, "")
    assert type(error) is CommandError


def test_json_exit_error_is_replaced_by_its_message() -> None:
    """restic's JSON exit_error line in the tail reads as its message."""
    tail = f"repository opened | {WRONG_PASSWORD} | {{not json"
    error = execute.error_for(["restic", "--json", "snapshots"], 12, tail, error=restic.error)
    assert isinstance(error, restic.WrongPassword)
    assert error.stderr_tail == (
        "repository opened | Fatal: wrong password or no key found | {not json"
    )
    assert str(error) == (
        "restic --json snapshots failed with exit code 12: repository opened"
        " | Fatal: wrong password or no key found | {not json"
    )


def test_restic_error_masks_url_password() -> None:
    """A URL password in argv or stderr is masked before the JSON is read."""
    message = "Fatal: unable to open rest:https://agent:pw123@server/agama"
    tail = json.dumps({"message_type": "exit_error", "code": 10, "message": message})
    error = execute.error_for(
        ["restic", "-r", "rest:https://agent:pw123@server/agama"], 10, tail, error=restic.error
    )
    assert isinstance(error, restic.RepositoryNotFound)
    assert "pw123" not in str(error)
    assert error.stderr_tail == "Fatal: unable to open rest:https://agent:***@server/agama"


# --- parsing --------------------------------------------------------------------------------


def test_parse_messages_skips_non_json() -> None:
    """JSON objects are kept in order; text, blank and broken lines are ignored."""
    output = b"\n".join(
        [STATUS, b"", b"warning: something on stdout", b"{broken", b"  " + BACKUP_SUMMARY]
    )
    messages = restic.parse_messages(output)
    assert [m["message_type"] for m in messages] == ["status", "summary"]
    assert restic.parse_messages([STATUS + b"\n", b"plain\n"]) == [json.loads(STATUS)]


def test_summary_of_takes_the_last_summary() -> None:
    """The summary message is found among status messages."""
    messages = restic.parse_messages(b"\n".join([STATUS, BACKUP_SUMMARY, STATUS]))
    summary = restic.summary_of(messages)
    assert summary["snapshot_id"].startswith("1bcca16f")


def test_summary_of_raises_without_summary() -> None:
    """No summary: restic did not finish properly."""
    with pytest.raises(BackupError, match="without a summary"):
        restic.summary_of(restic.parse_messages(STATUS))


def test_backup_summary_from_json() -> None:
    """The fields of restic 0.18's backup summary."""
    summary = restic.BackupSummary.from_json(json.loads(BACKUP_SUMMARY))
    assert summary == restic.BackupSummary(
        snapshot_id="1bcca16fff8460f07463f7cac09ad9753e69d4e281e765f2fbe8d6b09584cb87",
        files_new=1,
        files_changed=0,
        files_unmodified=0,
        data_added=287,
        total_files_processed=1,
        total_bytes_processed=5,
        total_duration=0.692645293,
    )


def test_snapshot_from_json() -> None:
    """A snapshot as `restic snapshots --json` prints it."""
    (item,) = json.loads(SNAPSHOTS_JSON)
    snap = restic.Snapshot.from_json(item)
    assert snap.id == "94affd5206065bc468263a17b120e5267386d416d5ada0fe51f7262e91cf78ce"
    assert snap.short_id == "94affd52"
    assert snap.time == datetime(2026, 11, 26, 9, 37, 57, 534649, tzinfo=UTC)
    assert snap.hostname == "agama"
    assert snap.paths == ("/tmp/rt/d",)
    assert snap.tags == ("service=db", "kind=full")
    assert snap.summary["data_added"] == 703
    assert snap.tag("service") == "db"
    assert snap.tag("kind") == "full"
    assert snap.tag("of") is None


def test_snapshot_from_json_sparse() -> None:
    """Null tags and paths, no short_id: sensible defaults."""
    snap = restic.Snapshot.from_json(
        {"id": "0123456789abcdef", "time": "2026-11-26T09:28:15Z", "tags": None, "paths": None}
    )
    assert snap.short_id == "01234567"
    assert snap.tags == ()
    assert snap.paths == ()
    assert snap.hostname == ""
    assert dict(snap.summary) == {}


def test_snapshot_tag_matches_whole_key() -> None:
    """tag('kind') does not pick up 'kindness=...', nor tag('kin') 'kind=...'."""
    snap = restic.Snapshot.from_json(
        {"id": "ab" * 32, "time": "2026-11-26T09:28:15Z", "tags": ["kindness=1", "kind=meta"]}
    )
    assert snap.tag("kind") == "meta"
    assert snap.tag("kin") is None
    assert snap.tag("kindness") == "1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T09:28:15.419561249Z", datetime(2026, 11, 26, 9, 28, 15, 419561, tzinfo=UTC)),
        ("2026-11-26T09:28:15.41956Z", datetime(2026, 11, 26, 9, 28, 15, 419560, tzinfo=UTC)),
        ("2026-11-26T09:28:15Z", datetime(2026, 11, 26, 9, 28, 15, tzinfo=UTC)),
        (
            "2026-11-26T11:28:15.419561249+02:00",
            datetime(2026, 11, 26, 11, 28, 15, 419561, tzinfo=timezone(timedelta(hours=2))),
        ),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    """RFC 3339 with nanoseconds (trimmed to microseconds) and any offset."""
    parsed = restic.parse_time(text)
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


# --- version check --------------------------------------------------------------------------


def fake_restic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Put an executable ``restic`` running ``script`` first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "restic"
    program.write_text(f"#!/bin/sh\n{script}\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def version_script(output: str) -> str:
    """A fake restic that answers only `restic --json version`."""
    return f"""[ "$*" = "--json version" ] || {{ echo "unexpected: $*" >&2; exit 99; }}
cat <<'EOF'
{output}
EOF"""


def test_require_version_too_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """restic 0.14 is refused, saying 0.17 is needed."""
    old = '{"message_type":"version","version":"0.14.0"}'
    fake_restic(tmp_path, monkeypatch, version_script(old))
    with pytest.raises(restic.ResticTooOld) as caught:
        restic.require_version()
    assert "restic 0.14.0 is too old" in str(caught.value)
    assert "0.17" in str(caught.value)


def test_require_version_plain_text_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Versions that print text, not JSON, for `version` are still recognised."""
    fake_restic(
        tmp_path, monkeypatch, version_script("restic 0.16.4 compiled with go1.21.6 on linux/amd64")
    )
    with pytest.raises(restic.ResticTooOld, match=r"restic 0\.16\.4 is too old"):
        restic.require_version()


@pytest.mark.parametrize(
    ("output", "expected"),
    [(VERSION_018, (0, 18, 0)), ('{"message_type":"version","version":"0.17.0"}', (0, 17, 0))],
)
def test_require_version_ok(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str, expected: tuple[int, int, int]
) -> None:
    """0.17.0 and newer pass and report their version."""
    fake_restic(tmp_path, monkeypatch, version_script(output))
    assert restic.require_version() == expected


def test_require_version_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No restic on PATH is a clear ResticTooOld, not a traceback."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(restic.ResticTooOld, match="not installed"):
        restic.require_version()


def test_version_unrecognisable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Output without a version number is a BackupError quoting it."""
    fake_restic(tmp_path, monkeypatch, version_script('{"message_type":"version","version":"dev"}'))
    with pytest.raises(BackupError, match="cannot tell restic's version from 'dev'"):
        restic.version()


def test_a_copy_gives_restic_one_set_of_credentials_of_a_kind(tmp_path: Path) -> None:
    """restic copy has one set of S3 (or rest-server) credentials for both repositories:
    two different files of one kind are refused, not silently replaced by the target's;
    an S3 target beside a rest-server source keeps both."""
    pair = "[default]\naws_access_key_id = COPYKEY\naws_secret_access_key = s3-secret-17\n"
    copier = s3_credentials(tmp_path, pair)
    user = tmp_path / "rest_maintenance"
    user.write_text("maintenance:rest-secret-23\n")
    other = tmp_path / "other"
    other.mkdir()
    s3_source = restic.Repository(
        url="s3:http://s3:7480/agama-files",
        password_file="/run/secrets/restic_password_files",
        host="agama",
        credentials_file=s3_credentials(other, pair),
    )
    s3_target = restic.Repository(
        url="s3:http://s3:7480/agama-copy-files",
        password_file="/run/secrets/restic_password_files",
        host="agama",
        credentials_file=copier,
    )
    with pytest.raises(BackupError, match="one set of S3 credentials"):
        restic.pair_env(s3_source, s3_target)
    rest_source = restic.Repository(
        url="rest:https://backup-server:8000/files",
        password_file="/run/secrets/restic_password_files",
        host="agama",
        credentials_file=str(user),
    )
    env = restic.pair_env(rest_source, s3_target)
    assert env["RESTIC_REST_USERNAME"] == "maintenance"
    assert env["AWS_SHARED_CREDENTIALS_FILE"] == copier
    assert env["RESTIC_FROM_REPOSITORY"] == rest_source.url
