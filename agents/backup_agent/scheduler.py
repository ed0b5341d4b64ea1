"""The long-lived agent: fires jobs on their cron schedules, one at a time.

- Jobs of one agent never overlap: they run one after another in this thread; a
  job that falls due while another runs waits, and the wait is logged and counted.
- Runs missed while the agent was down are caught up once at start-up (like
  systemd's ``Persistent=true``): one run per service, never one per missed slot.
  A service with no recorded run at all runs at start-up too, so that a new
  deployment has a backup at once instead of at its first slot (up to a month
  away for a monthly job); tasks created with ``first_run=False`` wait for their slot.
- While idle the loop wakes every ``TICK`` seconds and calls ``on_tick`` (the agent
  reloads the state file there, so runs started by an operator show in /metrics).
- SIGTERM raises ``Interrupted`` in this thread: the running job stops its children
  (restic saves nothing) and the loop ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cronsim import CronSim

from backup_agent.errors import BackupError, Interrupted
from backup_agent.manifest import Schedule

log = logging.getLogger("backup_agent.scheduler")
TICK = 30.0


@dataclass(frozen=True)
class Task:
    """One schedule of one service; ``run`` does the work and raises ``BackupError``."""

    service: str
    schedule: Schedule
    run: Callable[[], object]
    first_run: bool = True

    @property
    def kind(self) -> str:
        return self.schedule.kind

    def next_after(self, moment: datetime) -> datetime:
        return next(self.schedule.fires(moment))

    def last_before(self, moment: datetime) -> datetime:
        local = moment.astimezone(self.schedule.timezone)
        return next(iter(CronSim(self.schedule.cron, local, reverse=True)))


# Preference when several kinds of one service are due together: the most thorough.
KIND_ORDER = ("full", "incremental", "forget", "check")


def one_per_service(due: Sequence[tuple[datetime, Task]]) -> list[tuple[datetime, Task]]:
    """Collapse due slots to one run per service: its earliest due time, most thorough kind."""
    chosen: dict[str, tuple[datetime, Task]] = {}
    for when, task in sorted(due, key=lambda item: item[0]):
        if task.service not in chosen:
            chosen[task.service] = (when, task)
        elif _rank(task.kind) < _rank(chosen[task.service][1].kind):
            chosen[task.service] = (chosen[task.service][0], task)
    return sorted(chosen.values(), key=lambda item: item[0])


def _rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


class Scheduler:
    """Runs ``tasks`` at their times; ``last_run(task)`` gives the recorded start or None."""

    def __init__(
        self,
        tasks: Sequence[Task],
        last_run: Callable[[Task], float | None],
        on_wait: Callable[[Task, float], None],
        on_tick: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.tasks = list(tasks)
        self.last_run = last_run
        self.on_wait = on_wait
        self.on_tick = on_tick
        self.clock = clock
        self.sleep = sleep

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def missed(self, now: datetime) -> list[tuple[datetime, Task]]:
        """What to run at start-up: services whose last run (of any kind) is older than a
        slot that has passed, and services that never ran. Due now, once per service."""
        last: dict[str, float | None] = {}
        for task in self.tasks:
            recorded = self.last_run(task)
            previous = last.get(task.service)
            if recorded is not None and (previous is None or recorded > previous):
                last[task.service] = recorded
            else:
                last.setdefault(task.service, None)
        due = []
        for task in self.tasks:
            ran = last[task.service]
            if ran is None:
                if task.first_run:
                    due.append((now, task))
            elif task.last_before(now).timestamp() > ran:
                due.append((now, task))
        return one_per_service(due)

    def due_between(self, start: datetime, end: datetime) -> list[tuple[datetime, Task]]:
        """Slots in (start, end], one run per service."""
        due = []
        for task in self.tasks:
            slot = task.next_after(start)
            if slot <= end:
                due.append((slot, task))
        return one_per_service(due)

    def run_due(self, due: Sequence[tuple[datetime, Task]]) -> None:
        """Run due tasks one after another; record how long each waited past its slot."""
        for when, task in due:
            waited = self.clock() - when.timestamp()
            if waited > 1:
                log.info(
                    "job waited %.1f s for another job",
                    waited,
                    extra={"service": task.service, "kind": task.kind},
                )
                self.on_wait(task, waited)
            try:
                task.run()
            except Interrupted:
                raise
            except BackupError as exc:
                log.error("%s", exc, extra={"service": task.service, "kind": task.kind})
            except Exception:  # a bug in one job must not stop the others' schedules
                log.exception(
                    "unexpected error", extra={"service": task.service, "kind": task.kind}
                )

    def run_forever(self) -> None:
        """Catch up, then loop: sleep until the next slot, run what is due."""
        cursor = self.now()
        missed = self.missed(cursor)
        if missed:
            names = ", ".join(f"{t.service}/{t.kind}" for _, t in missed)
            log.info("catching up runs missed while the agent was down: %s", names)
        self.run_due(missed)
        while True:
            upcoming = min(task.next_after(cursor) for task in self.tasks)
            while (delay := upcoming.timestamp() - self.clock()) > 0:
                self.sleep(min(delay, TICK))
                self.on_tick()
            end = self.now()
            self.run_due(self.due_between(cursor, end))
            cursor = end
