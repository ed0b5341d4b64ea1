"""``backup-agent run`` as a child process, and reading its /metrics, for the tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Agent:
    """``backup-agent run`` as a child process with JSON logs in a file."""

    def __init__(self, manifest: Path, log: Path, port: int, role: str = "backup") -> None:
        self.manifest, self.log, self.port, self.role = manifest, log, port, role
        self.process: subprocess.Popen[bytes] | None = None
        self.offset = 0

    def start(self) -> None:
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "backup_agent",
                    "-m",
                    str(self.manifest),
                    "--log-format",
                    "json",
                    "run",
                    "--role",
                    self.role,
                ],
                stderr=out,
                stdout=out,
            )

    def entries(self) -> list[dict[str, Any]]:
        """Log entries written since the last ``start``."""
        with self.log.open("rb") as handle:
            handle.seek(self.offset)
            lines = handle.read().decode().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def find(self, msg: str, **fields: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.entries()
            if e["msg"] == msg and all(e.get(k) == v for k, v in fields.items())
        ]

    def running(self, program: str) -> bool:
        """Whether a child process of the agent runs ``program`` (read from /proc)."""
        return self.child(program) is not None

    def child(self, program: str) -> int | None:
        """The process id of the agent's child running ``program``, if there is one."""
        assert self.process is not None
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:  # the process ended while we looked
                continue
            name = text[text.index("(") + 1 : text.rindex(")")]
            parent = int(text[text.rindex(")") + 2 :].split()[1])
            if name == program and parent == self.process.pid:
                return int(stat.parent.name)
        return None

    def written(self, program: str) -> int:
        """Bytes the agent's child ``program`` has written so far (0 when none runs)."""
        pid = self.child(program)
        try:
            io = Path(f"/proc/{pid}/io").read_text() if pid else ""
        except OSError:
            return 0
        return next(
            (int(line.split()[1]) for line in io.splitlines() if line.startswith("wchar:")), 0
        )

    def stop(self) -> tuple[int, float]:
        """SIGTERM; return the exit code and how long the agent took to exit."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def scrape(port: int, host: str = "127.0.0.1") -> str | None:
    """The agent's /metrics text; None when nothing serves it (yet)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
            text: str = response.read().decode()
            return text
    except urllib.error.URLError as exc:  # urlopen wraps a refused connection
        if isinstance(exc.reason, ConnectionRefusedError):
            return None
        raise


def metric(port: int, name: str, host: str = "127.0.0.1", **labels: str) -> float | None:
    """A sample's value from the agent's /metrics; None if absent or not served yet."""
    text = scrape(port, host)
    if text is None:
        return None
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return None


@dataclass(frozen=True)
class Finished:
    """A one-shot ``backup-agent`` command that ended: exit code, time, output, JSON logs."""

    code: int
    seconds: float
    stdout: str
    stderr: str
    entries: list[dict[str, Any]]

    def errors(self) -> list[str]:
        return [e["msg"] for e in self.entries if e["level"] == "error"]


class Command:
    """A one-shot ``backup-agent -m MANIFEST ARGV`` in its own process, JSON logs on stderr."""

    def __init__(self, manifest: Path, *argv: str) -> None:
        command = [sys.executable, "-m", "backup_agent", "-m", str(manifest)]
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [*command, "--log-format", "json", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait(self, timeout: float = 300) -> Finished:
        out, err = self.process.communicate(timeout=timeout)
        seconds = time.monotonic() - self.started
        entries = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
        return Finished(self.process.returncode, seconds, out, err, entries)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def one_shot(manifest: Path, *argv: str, timeout: float = 300) -> Finished:
    """Run ``backup-agent -m MANIFEST ARGV`` to its end."""
    return Command(manifest, *argv).wait(timeout)
