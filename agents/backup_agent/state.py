"""The agent's small state file: the last run of each job, for catch-up and metrics.

Written atomically (temporary file + rename) after every run, so a crash never
leaves half a file. Keys are ``SERVICE/KIND``; times are Unix timestamps.
"""

from __future__ import annotations

import json
import logging
import os
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
    """Job states loaded from and saved to ``DIR/state.json``."""

    def __init__(self, directory: str) -> None:
        self.path = Path(directory) / FILENAME
        self.jobs: dict[str, JobState] = {}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self.jobs = {key: JobState(**value) for key, value in raw.get("jobs", {}).items()}
            except (ValueError, TypeError) as exc:
                log.warning("ignoring unreadable state file %s: %s", self.path, exc)

    def job(self, service: str, kind: str) -> JobState:
        return self.jobs.setdefault(f"{service}/{kind}", JobState())

    def known(self, service: str, kind: str) -> bool:
        return f"{service}/{kind}" in self.jobs

    def last_success(self, service: str) -> float:
        """Newest success of any kind of the service."""
        prefix = f"{service}/"
        return max(
            (j.last_success for k, j in self.jobs.items() if k.startswith(prefix)), default=0.0
        )

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            data = {"jobs": {key: asdict(value) for key, value in sorted(self.jobs.items())}}
            temporary.write_text(json.dumps(data, indent=2), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("cannot save state file %s: %s", self.path, exc.strerror)
