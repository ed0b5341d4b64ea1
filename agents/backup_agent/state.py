"""The agents' small state file: the last run of each job, for catch-up and metrics.

Several processes may share it (the long-lived agent, and an operator's one-shot
``backup-agent backup`` in the same container), so each save re-reads the file under
an exclusive lock and replaces only the job it records, then renames a temporary
file into place: a crash never leaves half a file and no process erases another's
record. Keys are ``SERVICE/KIND``; times are Unix timestamps.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FILENAME = "state.json"


@dataclass
class JobState:
    last_run: float = 0.0  # start of the last completed attempt (success or failure)
    last_success: float = 0.0  # end of the last successful run
    last_duration: float = 0.0
    last_bytes: int = 0
    previous_bytes: int = 0
    successes: int = 0  # count of successful runs (rotates restic check subsets)


class State:
    """Job states of ``DIR/state.json``."""

    def __init__(self, directory: str) -> None:
        self.path = Path(directory) / FILENAME
        self.jobs: dict[str, JobState] = self._read()

    def _read(self) -> dict[str, JobState]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {key: JobState(**value) for key, value in raw.get("jobs", {}).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable state file %s: %s", self.path, exc)
            return {}

    def reload(self) -> None:
        """Pick up runs recorded by other processes."""
        self.jobs = self._read()

    def job(self, service: str, kind: str) -> JobState:
        return self.jobs.setdefault(f"{service}/{kind}", JobState())

    def known(self, service: str, kind: str) -> bool:
        return f"{service}/{kind}" in self.jobs

    def save_job(self, service: str, kind: str) -> None:
        """Write this job's record into the file, keeping everyone else's."""
        key = f"{service}/{kind}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():
                merged = {**self._read(), key: self.job(service, kind)}
                temporary = self.path.with_suffix(".tmp")
                data = {"jobs": {k: asdict(v) for k, v in sorted(merged.items())}}
                temporary.write_text(json.dumps(data, indent=2), encoding="utf-8")
                os.replace(temporary, self.path)
                self.jobs = merged
        except OSError as exc:
            log.warning("cannot save state file %s: %s", self.path, exc.strerror)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
