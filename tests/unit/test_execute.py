"""execute: masking, running commands, failures and long-running processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backup_agent import execute
from backup_agent.errors import BackupError, CommandError, describe_returncode


@pytest.fixture(autouse=True)
def fresh_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no registered secrets and leaves none behind."""
    monkeypatch.setattr(execute, "_secrets", set())


def sh(script: str) -> list[str]:
    """argv running ``script`` with /bin/sh (an argv list, not shell=True)."""
    return ["sh", "-c", script]


# --- masking -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rest:https://user:pw@host/", "rest:https://user:***@host/"),
        (
            "rest:http://agent:s3cr%40t@backup-server:8000/agama",
            "rest:http://agent:***@backup-server:8000/agama",
        ),
        ("a https://u:p@h/ and sftp://x:y@z/", "a https://u:***@h/ and sftp://x:***@z/"),
        ("rest:https://host:8000/repo", "rest:https://host:8000/repo"),
        ("rest:https://user@host/", "rest:https://user@host/"),
        ("no url here: user:pw", "no url here: user:pw"),
    ],
)
def test_mask_url_passwords(text: str, expected: str) -> None:
    """Passwords in URLs are replaced by ***; everything else stays."""
    assert execute.mask(text) == expected


def test_mask_registered_secrets() -> None:
    """Registered values are hidden wherever they appear, longest first."""
    execute.register_secret("abc")
    execute.register_secret("abcdef-long")
    execute.register_secret("")  # ignored: masking "" would garble every string
    assert execute.mask("x abcdef-long y abc z") == "x *** y *** z"
    assert execute.mask("nothing secret") == "nothing secret"


def test_display_quotes_and_masks() -> None:
    """display() is a shell-quoted, masked command line."""
    execute.register_secret("hunter2")
    argv = ["restic", "-r", "rest:https://u:p@h/", "two words", "--x=hunter2"]
    assert execute.display(argv) == "restic -r rest:https://u:***@h/ 'two words' --x=***"


# --- run -----------------------------------------------------------------------------------


def test_run_captures_output() -> None:
    """stdout as bytes, stderr as text."""
    result = execute.run(sh("printf 'out\\n'; printf 'err\\n' >&2"))
    assert result.stdout == b"out\n"
    assert result.stderr == "err\n"


def test_run_input_env_and_cwd(tmp_path: Path) -> None:
    """stdin data, extra environment (merged with ours) and working directory are passed."""
    result = execute.run(
        sh('cat; echo "$EXTRA_VALUE"; pwd; command -v sh >/dev/null && echo has-path'),
        input_data=b"in\n",
        env={"EXTRA_VALUE": "42"},
        cwd=str(tmp_path),
    )
    assert result.stdout.decode().splitlines() == ["in", "42", str(tmp_path), "has-path"]


def test_run_failure_raises_command_error() -> None:
    """A non-zero exit raises CommandError with the exit code and the stderr tail."""
    with pytest.raises(CommandError) as caught:
        execute.run(sh("echo boom >&2; exit 3"))
    error = caught.value
    assert error.returncode == 3
    assert error.stderr_tail == "boom"
    assert error.command == "sh -c 'echo boom >&2; exit 3'"
    assert str(error) == f"{error.command} failed with exit code 3: boom"


def test_run_failure_masks_command_and_stderr() -> None:
    """Neither a URL password nor a registered secret survives into the error."""
    execute.register_secret("t0psecret")
    with pytest.raises(CommandError) as caught:
        execute.run([*sh('echo "denied for t0psecret" >&2; exit 1'), "rest:https://me:pw9@h/"])
    error = caught.value
    assert "t0psecret" not in str(error)
    assert "pw9" not in str(error)
    assert "rest:https://me:***@h/" in error.command
    assert error.stderr_tail == "denied for ***"


def test_run_ok_codes() -> None:
    """Exit codes listed in ok_codes are not failures."""
    result = execute.run(sh("echo partial; exit 3"), ok_codes=frozenset({0, 3}))
    assert result.stdout == b"partial\n"


def test_stderr_tail_keeps_last_five_non_empty_lines() -> None:
    """Only the end of stderr is kept, blank lines dropped, joined with ' | '."""
    script = "for i in $(seq 1 30); do echo line$i >&2; echo >&2; done; exit 1"
    with pytest.raises(CommandError) as caught:
        execute.run(sh(script))
    assert caught.value.stderr_tail == "line26 | line27 | line28 | line29 | line30"


def test_stderr_tail_strips_ansi_escapes() -> None:
    """Colour and cursor sequences from progress output are removed."""
    script = "printf '\\033[31mred\\033[0m error\\n\\033[2K\\033[?25hdone\\n' >&2; exit 2"
    with pytest.raises(CommandError) as caught:
        execute.run(sh(script))
    assert caught.value.stderr_tail == "red error | done"
    assert "\x1b" not in str(caught.value)


def test_killed_by_signal() -> None:
    """A command killed by a signal is described by the signal's name."""
    with pytest.raises(CommandError) as caught:
        execute.run(sh("echo dying >&2; kill -KILL $$"))
    assert caught.value.returncode == -signal.SIGKILL
    assert "was killed by SIGKILL: dying" in str(caught.value)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (1, "failed with exit code 1"),
        (-15, "was killed by SIGTERM"),
        (-200, "was killed by signal 200"),
    ],
)
def test_describe_returncode(code: int, expected: str) -> None:
    """Exit codes and signals (including unknown ones) in words."""
    assert describe_returncode(code) == expected


def test_missing_program_is_file_not_found() -> None:
    """A program that does not exist surfaces as FileNotFoundError (restic relies on it)."""
    with pytest.raises(FileNotFoundError, match="backup-agent-no-such-program-xyz"):
        execute.run(["backup-agent-no-such-program-xyz"])


# --- Process -------------------------------------------------------------------------------


def test_process_collects_stdout_lines() -> None:
    """on_stdout_line sees every line; wait returns the exit code."""
    lines: list[bytes] = []
    process = execute.Process(sh("echo one; echo two"), on_stdout_line=lines.append)
    assert process.wait(timeout=10) == 0
    assert lines == [b"one\n", b"two\n"]
    process.check()


def test_process_stdin_pipe() -> None:
    """Data written to stdin reaches the command."""
    lines: list[bytes] = []
    process = execute.Process(["cat"], stdin=execute.PIPE, on_stdout_line=lines.append)
    assert process.popen.stdin is not None
    process.popen.stdin.write(b"hello\nworld\n")
    process.popen.stdin.close()
    process.check()
    assert lines == [b"hello\n", b"world\n"]


def test_process_check_raises_with_tail() -> None:
    """check() raises CommandError with the drained stderr tail."""
    process = execute.Process(sh("echo first >&2; echo second >&2; exit 4"))
    with pytest.raises(CommandError) as caught:
        process.check()
    assert caught.value.returncode == 4
    assert caught.value.stderr_tail == "first | second"
    assert process.stderr_tail() == "first | second"


def test_process_check_what_replaces_reason() -> None:
    """check(what) states what went wrong instead of the exit code."""
    process = execute.Process(sh("exit 1"))
    with pytest.raises(CommandError) as caught:
        process.check("stopped reading the dump")
    assert str(caught.value) == "sh -c 'exit 1' stopped reading the dump"


def test_process_stop_terminates() -> None:
    """stop() sends SIGTERM to a running process."""
    process = execute.Process(["sleep", "30"])
    process.stop()
    assert process.popen.returncode == -signal.SIGTERM
    with pytest.raises(CommandError, match="was killed by SIGTERM"):
        process.check()


def test_terminate_kills_when_term_is_ignored() -> None:
    """A process that ignores SIGTERM is killed after the grace period."""
    ready = threading.Event()
    process = execute.Process(
        sh("trap '' TERM; echo ready; exec sleep 30"), on_stdout_line=lambda _: ready.set()
    )
    assert ready.wait(timeout=10)
    execute.terminate(process.popen, grace=0.2)
    assert process.popen.returncode == -signal.SIGKILL
    with pytest.raises(CommandError, match="was killed by SIGKILL"):
        process.check()


def test_process_stop_after_exit_is_a_no_op() -> None:
    """Stopping a finished process keeps its exit status."""
    process = execute.Process(sh("exit 5"))
    assert process.wait(timeout=10) == 5
    process.stop()
    assert process.popen.returncode == 5


# --- deadlines -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "expected_reason", "expected_message"),
    [
        ("failed", "timeout", "job ran past its deadline of 0 s and was stopped"),
        ("dump_failed", "timeout", "job ran past its deadline of 0 s and was stopped"),
        (
            "server_unreachable",
            "server_unreachable",
            "backup server h:1 unreachable: connection refused"
            " (job stopped at its deadline of 0 s)",
        ),
    ],
)
def test_a_deadline_stops_the_command_and_names_the_cause(
    reason: str, expected_reason: str, expected_message: str
) -> None:
    """A command still running at the deadline is stopped; the job's error is ``timeout``
    unless the repository's failure was already named (what its command said)."""
    with pytest.raises(BackupError) as caught, execute.Deadline(0.2, "job"):
        process = execute.Process(["sleep", "30"])
        code = process.wait(10)
        message = "backup server h:1 unreachable: connection refused"
        raise BackupError(message if reason == "server_unreachable" else "x").because(reason)
    assert code == -signal.SIGTERM
    assert caught.value.reason == expected_reason
    assert str(caught.value) == expected_message


def test_children_die_with_the_agent(tmp_path: Path) -> None:
    """A command outlives no killed agent (a ``restic backup --stdin`` would otherwise
    save the partial stream it had read as a snapshot)."""
    pid_file = tmp_path / "child.pid"
    script = (
        "import sys, time; from backup_agent import execute; "
        "p = execute.Process(['sleep', '60']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.popen.pid)); time.sleep(60)"
    )
    agent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        assert Path(f"/proc/{child}/comm").read_text().strip() == "sleep"
        agent.kill()
        agent.wait()
        while alive(child):
            assert time.monotonic() < deadline, "the child outlived the agent"
            time.sleep(0.05)
    finally:
        agent.kill()


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
