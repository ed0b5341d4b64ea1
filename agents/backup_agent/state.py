"""The agents' small state file: the last run of each task, for catch-up and metrics.

A task is what the scheduler runs (``TaskId``): a service's backup of one snapshot
kind (role ``backup``; binlog shipping is kind ``binlog``), a maintenance task
(``retention``, ``check``, ``copy``) or the drills (role ``verifier``). The file keeps them in
that structure::

    {"version": 2,
     "backup": {"mysql": {"full": RUN, "binlog": RUN}, "files": {"incremental": RUN, "full": RUN}},
     "maintenance": {"retention": RUN, "check": RUN, "copy": RUN},
     "verifier": {"drill": RUN}}

Several processes may share it (the long-lived agent, and an operator's one-shot
``backup-agent backup`` in the same container), so every change is applied under an
exclusive lock to what the file holds at that moment, then a temporary file is
renamed into place: a crash never leaves half a file, and two runs finishing at once
both count. Times are Unix timestamps. Files of version 1 (flat ``SERVICE/KIND``
keys) are read and rewritten in this form.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILENAME = "state.json"
VERSION = 2


@dataclass(frozen=True)
class TaskId:
    """Which task a run belongs to. Backups: ``name`` is the service and ``kind`` the
    snapshot kind; maintenance: ``retention``, ``check`` or ``copy``; verifier: ``drill``."""

    role: str
    name: str
    kind: str = ""

    def __str__(self) -> str:
        return f"{self.name}/{self.kind}" if self.kind else self.name


RETENTION = TaskId("maintenance", "retention")
CHECK = TaskId("maintenance", "check")
COPY = TaskId("maintenance", "copy")
DRILL = TaskId("verifier", "drill")


SHIPPING = "binlog"  # the kind of a MySQL service's binlog shipping task


def backup_task(service: str, kind: str) -> TaskId:
    return TaskId("backup", service, kind)


def binlog_task(service: str) -> TaskId:
    """A MySQL service's binlog shipping (point-in-time recovery)."""
    return TaskId("backup", service, SHIPPING)


@dataclass
class Run:
    """The record of a task's runs."""

    last_run: float = 0.0  # start of the last completed attempt (success or failure)
    last_success: float = 0.0  # end of the last successful run
    last_duration: float = 0.0
    last_bytes: int = 0
    previous_bytes: int = 0
    successes: int = 0  # count of successful runs (rotates restic check subsets)
    # Failed runs by reason (``BackupError.reason``): backup_failures_total, also for
    # one-shot runs (``make backup-now``), which export no metrics of their own.
    failures: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Run:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Version 1 wrote maintenance and drill runs under pseudo-service names.
_V1_NAMES = {"retention/forget": RETENTION, "check/check": CHECK, "verifier/drill": DRILL}


class State:
    """Runs recorded in ``DIR/state.json``."""

    def __init__(self, directory: str) -> None:
        self.path = Path(directory) / FILENAME
        self.runs: dict[TaskId, Run] = self._read()

    def _read(self) -> dict[TaskId, Run]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return _parse(raw)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable state file %s: %s", self.path, exc)
            return {}

    def reload(self) -> None:
        """Pick up runs recorded by other processes."""
        self.runs = self._read()

    def run(self, task: TaskId) -> Run:
        """The record of ``task`` as last read (an empty one if it never ran)."""
        return self.runs.get(task, Run())

    def known(self, task: TaskId) -> bool:
        return task in self.runs

    def update(self, task: TaskId, change: Callable[[Run], None]) -> Run:
        """Apply ``change`` to the task's record as the file holds it now, and save."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():
                current = self._read()
                run = current.setdefault(task, Run())
                change(run)
                temporary = self.path.with_suffix(".tmp")
                temporary.write_text(json.dumps(_render(current), indent=2), encoding="utf-8")
                os.replace(temporary, self.path)
                self.runs = current
                return run
        except OSError as exc:
            log.warning("cannot save state file %s: %s", self.path, exc.strerror)
            run = self.runs.setdefault(task, Run())
            change(run)
            return run

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def _parse(raw: dict[str, Any]) -> dict[TaskId, Run]:
    """The runs of a state file, version 2 or 1."""
    runs: dict[TaskId, Run] = {}
    if raw.get("version") != VERSION:
        for key, value in raw.get("jobs", {}).items():
            service, _, kind = key.partition("/")
            runs[_V1_NAMES.get(key, backup_task(service, kind))] = Run.from_json(value)
        return runs
    for service, kinds in raw.get("backup", {}).items():
        for kind, value in kinds.items():
            runs[backup_task(service, kind)] = Run.from_json(value)
    for role in ("maintenance", "verifier"):
        for name, value in raw.get(role, {}).items():
            runs[TaskId(role, name)] = Run.from_json(value)
    return runs


def _render(runs: dict[TaskId, Run]) -> dict[str, Any]:
    data: dict[str, Any] = {"version": VERSION}
    for task, run in sorted(runs.items(), key=lambda item: (item[0].role, str(item[0]))):
        section = data.setdefault(task.role, {})
        if task.role == "backup":
            section.setdefault(task.name, {})[task.kind] = asdict(run)
        else:
            section[task.name] = asdict(run)
    return data
