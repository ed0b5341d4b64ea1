"""The long-lived agent: fires tasks on their cron schedules, one at a time.

- Tasks of one agent never overlap: they run one after another in this thread; a
  task that falls due while another runs waits, and the wait is logged and counted.
- Runs missed while the agent was down are caught up once at start-up (like
  systemd's ``Persistent=true``): one run per owner (a service, a maintenance task),
  never one per missed slot. An owner with no recorded run at all runs at start-up
  too ("first start", not a catch-up), so that a new deployment has a backup at once
  instead of at its first slot (up to a month away for a monthly job); tasks created
  with ``first_run=False`` wait for their slot.
- While idle the loop wakes every ``TICK`` seconds and calls ``on_tick`` (the agent
  reloads the state file there, so runs started by an operator show in /metrics).
- SIGTERM raises ``Interrupted`` in this thread: the running task stops its children
  (restic saves nothing) and the loop ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from backup_agent.errors import BackupError, Interrupted
from backup_agent.manifest import BACKUP_KINDS, Schedule
from backup_agent.state import SHIPPING, TaskId

log = logging.getLogger("backup_agent.scheduler")
TICK = 30.0


@dataclass(frozen=True)
class Task:
    """One schedule of one task; ``run`` does the work and raises ``BackupError``."""

    id: TaskId
    schedule: Schedule
    run: Callable[[], object]
    first_run: bool = True

    @property
    def owner(self) -> tuple[str, str, str]:
        """Tasks with one owner (a service's backups of several kinds) are caught up once
        and collapse to one run when due together. A service's binlog shipping is an
        owner of its own: a dump never stands in for a shipment, nor one for a dump."""
        return self.id.role, self.id.name, self.id.kind if self.id.kind == SHIPPING else ""

    def next_after(self, moment: datetime) -> datetime:
        return next(self.schedule.fires(moment))


def one_per_owner(due: Sequence[tuple[datetime, Task]]) -> list[tuple[datetime, Task]]:
    """Collapse due slots to one run per owner: its earliest due time, most thorough kind."""
    chosen: dict[tuple[str, str, str], tuple[datetime, Task]] = {}
    for when, task in sorted(due, key=lambda item: item[0]):
        if task.owner not in chosen:
            chosen[task.owner] = (when, task)
        elif _rank(task.id.kind) < _rank(chosen[task.owner][1].id.kind):
            chosen[task.owner] = (chosen[task.owner][0], task)
    return sorted(chosen.values(), key=lambda item: item[0])


def _rank(kind: str) -> int:
    return BACKUP_KINDS.index(kind) if kind in BACKUP_KINDS else len(BACKUP_KINDS)


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

    def missed(self, now: datetime) -> tuple[list[tuple[datetime, Task]], list[Task]]:
        """What to run at start-up, due now and once per owner: owners whose last run
        (of any kind) is older than a slot that has passed, and separately, owners
        that never ran (a first start, not a catch-up)."""
        last: dict[tuple[str, str, str], float | None] = {}
        for task in self.tasks:
            recorded = self.last_run(task)
            previous = last.get(task.owner)
            if recorded is not None and (previous is None or recorded > previous):
                last[task.owner] = recorded
            else:
                last.setdefault(task.owner, None)
        due = []
        for task in self.tasks:
            ran = last[task.owner]
            if ran is None:
                if task.first_run:
                    due.append((now, task))
            elif task.schedule.last_before(now).timestamp() > ran:
                due.append((now, task))
        chosen = one_per_owner(due)
        first = [task for _, task in chosen if last[task.owner] is None]
        return chosen, first

    def due_between(self, start: datetime, end: datetime) -> list[tuple[datetime, Task]]:
        """Slots in (start, end], one run per owner."""
        due = []
        for task in self.tasks:
            slot = task.next_after(start)
            if slot <= end:
                due.append((slot, task))
        return one_per_owner(due)

    def run_due(self, due: Sequence[tuple[datetime, Task]]) -> None:
        """Run due tasks one after another; record how long each waited past its slot."""
        for when, task in due:
            waited = self.clock() - when.timestamp()
            if waited > 1:
                log.info(
                    "task waited %.1f s for another task",
                    waited,
                    extra={"task": str(task.id)},
                )
                self.on_wait(task, waited)
            try:
                task.run()
            except Interrupted:
                raise
            except BackupError as exc:
                log.error("%s", exc, extra={"task": str(task.id)})
            except Exception:  # a bug in one task must not stop the others' schedules
                log.exception("unexpected error", extra={"task": str(task.id)})

    def run_forever(self) -> None:
        """Catch up, then loop: sleep until the next slot, run what is due."""
        cursor = self.now()
        due, first = self.missed(cursor)
        if first:
            log.info("first start: running now %s", ", ".join(str(t.id) for t in first))
        caught_up = [str(task.id) for _, task in due if task not in first]
        if caught_up:
            log.info("catching up runs missed while the agent was down: %s", ", ".join(caught_up))
        self.run_due(due)
        while True:
            upcoming = min(task.next_after(cursor) for task in self.tasks)
            while (delay := upcoming.timestamp() - self.clock()) > 0:
                self.sleep(min(delay, TICK))
                self.on_tick()
            end = self.now()
            self.run_due(self.due_between(cursor, end))
            cursor = end
