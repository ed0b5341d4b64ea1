"""Scheduler logic with a controlled clock: catch-up, one run per owner, waits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from backup_agent.errors import BackupError, Interrupted
from backup_agent.manifest import Schedule
from backup_agent.scheduler import Scheduler, Task, one_per_owner
from backup_agent.state import DRILL, SHIPPING, TaskId, backup_task

UTC_ZONE = ZoneInfo("UTC")
T0 = datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC)


class Clock:
    """A clock the test moves; ``sleep`` advances it."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def task(service: str, cron: str, kind: str, log: list[str], clock: Clock, took: float = 0) -> Task:
    def run() -> None:
        log.append(f"{service}/{kind}@{datetime.fromtimestamp(clock(), UTC):%H:%M:%S}")
        clock.sleep(took)

    return Task(backup_task(service, kind), Schedule(cron, UTC_ZONE), run)


def scheduler(
    tasks: list[Task],
    clock: Clock,
    last_run: Callable[[Task], float | None] = lambda t: None,
    on_wait: Callable[[Task, float], None] = lambda t, s: None,
    on_tick: Callable[[], None] = lambda: None,
) -> Scheduler:
    """A scheduler on the test's clock."""
    return Scheduler(tasks, last_run, on_wait, on_tick, clock=clock, sleep=clock.sleep)


def kinds(due: list[tuple[datetime, Task]]) -> list[tuple[str, str]]:
    return sorted((t.id.name, t.id.kind) for _, t in due)


def test_missed_slots_run_once_per_service_and_prefer_full() -> None:
    clock, log = Clock(T0), list[str]()
    tasks = [
        task("files", "* * * * *", "incremental", log, clock),
        task("files", "0 12 * * *", "full", log, clock),
        task("db", "*/5 * * * *", "full", log, clock),
    ]
    last = {
        "files": (T0 - timedelta(hours=3)).timestamp(),
        "db": (T0 - timedelta(hours=3)).timestamp(),
    }
    due, first = scheduler(tasks, clock, lambda t: last[t.id.name]).missed(T0)

    # Hours of missed minutely slots still give one run per service; files runs full.
    assert kinds(due) == [("db", "full"), ("files", "full")]
    assert first == []  # a catch-up, not a first start


def test_a_service_that_never_ran_runs_at_start_up_once_and_full() -> None:
    clock, log = Clock(T0), list[str]()
    tasks = [
        task("files", "* * * * *", "incremental", log, clock),
        task("files", "0 0 * * 0", "full", log, clock),
        task("db", "0 22 * * *", "full", log, clock),
    ]
    records = {"files": None, "db": (T0 - timedelta(seconds=20)).timestamp()}
    due, first = scheduler(tasks, clock, lambda t: records[t.id.name]).missed(T0)
    assert [(when, t.id.name, t.id.kind) for when, t in due] == [(T0, "files", "full")]
    assert [t.id for t in first] == [backup_task("files", "full")]


def test_a_task_without_first_run_waits_for_its_slot() -> None:
    drill = Task(DRILL, Schedule("0 6 * * 1", UTC_ZONE), lambda: None, first_run=False)
    assert scheduler([drill], Clock(T0)).missed(T0) == ([], [])


def test_tasks_due_together_run_one_after_another_and_the_wait_is_reported() -> None:
    clock, log = Clock(T0), list[str]()
    waits: list[tuple[str, float]] = []
    tasks = [
        task("a", "* * * * *", "full", log, clock, took=20),
        task("b", "* * * * *", "full", log, clock),
    ]
    both = scheduler(tasks, clock, on_wait=lambda t, s: waits.append((t.id.name, s)))

    due = both.due_between(T0, T0 + timedelta(minutes=1))
    clock.now = due[0][0].timestamp()
    both.run_due(due)

    assert log == ["a/full@12:01:00", "b/full@12:01:20"]
    assert [service for service, _ in waits] == ["b"]
    assert waits[0][1] == pytest.approx(20)


def every_minute(name: str, run: Callable[[], None]) -> Task:
    return Task(backup_task(name, "full"), Schedule("* * * * *", UTC_ZONE), run)


def fail() -> None:
    raise BackupError("broken")


def stop() -> None:
    raise Interrupted("SIGTERM")


def test_a_failing_task_does_not_stop_the_others() -> None:
    ran: list[str] = []
    failing = scheduler(
        [every_minute("a", fail), every_minute("b", lambda: ran.append("b"))], Clock(T0)
    )
    failing.run_due([(T0, t) for t in failing.tasks])
    assert ran == ["b"]


def test_an_interrupt_stops_the_tasks_after_it() -> None:
    ran: list[str] = []
    interrupted = scheduler(
        [every_minute("a", stop), every_minute("b", lambda: ran.append("b"))], Clock(T0)
    )
    with pytest.raises(Interrupted, match="SIGTERM"):
        interrupted.run_due([(T0, t) for t in interrupted.tasks])
    assert ran == []


def test_run_forever_sleeps_until_each_slot_in_the_schedules_time_zone() -> None:
    start = datetime(2026, 11, 26, 21, 59, 0, tzinfo=UTC)
    clock, log = Clock(start), list[str]()
    helsinki = ZoneInfo("Europe/Helsinki")  # 22:00 in Helsinki is 20:00 UTC in winter

    def run() -> None:
        log.append(datetime.fromtimestamp(clock(), UTC).isoformat())
        if len(log) == 2:
            raise Interrupted("done")

    ticks = []
    daily = scheduler(
        [Task(backup_task("db", "full"), Schedule("0 22 * * *", helsinki), run)],
        clock,
        lambda t: start.timestamp(),  # ran just now: nothing to catch up
        on_tick=lambda: ticks.append(clock()),
    )
    with pytest.raises(Interrupted, match="done"):
        daily.run_forever()
    assert log == ["2026-11-27T20:00:00+00:00", "2026-11-28T20:00:00+00:00"]
    # While idle the loop wakes every 30 s (the agent reloads its state file there).
    assert len(ticks) > 2 * 24 * 60 and max(b - a for a, b in pairwise(ticks)) <= 30


def test_one_per_owner_keeps_the_earliest_time_and_the_most_thorough_kind() -> None:
    a = Task(backup_task("files", "incremental"), Schedule("* * * * *", UTC_ZONE), lambda: None)
    b = Task(backup_task("files", "full"), Schedule("* * * * *", UTC_ZONE), lambda: None)
    early, late = T0, T0 + timedelta(minutes=1)
    assert one_per_owner([(late, b), (early, a)]) == [(early, b)]


def test_maintenance_tasks_of_one_role_are_separate_owners() -> None:
    """Retention and check due together both run (they are not kinds of one thing)."""
    retention = Task(TaskId("maintenance", "retention"), Schedule("* * * * *", UTC_ZONE), fail)
    check = Task(TaskId("maintenance", "check"), Schedule("* * * * *", UTC_ZONE), fail)
    assert len(one_per_owner([(T0, retention), (T0, check)])) == 2


def test_a_run_of_any_kind_counts_for_the_service() -> None:
    """A full run after the last incremental slot means nothing is missed."""
    clock, log = Clock(T0), list[str]()
    tasks = [
        task("files", "0 * * * *", "incremental", log, clock),
        task("files", "0 0 1 1 *", "full", log, clock),
    ]
    records = {"incremental": None, "full": (T0 - timedelta(seconds=10)).timestamp()}
    assert scheduler(tasks, clock, lambda t: records[t.id.kind]).missed(T0) == ([], [])


def test_binlog_shipping_is_caught_up_apart_from_the_dump() -> None:
    """A shipment ran seconds ago, the 22:00 dump was missed: the shipment does not
    stand in for the dump (nor a dump for a shipment), both catch up."""
    clock, log = Clock(T0), list[str]()
    tasks = [
        task("db", "0 22 * * *", "full", log, clock),
        task("db", "*/5 * * * *", SHIPPING, log, clock),
    ]
    recent = {
        "full": (T0 - timedelta(days=2)).timestamp(),
        SHIPPING: (T0 - timedelta(seconds=20)).timestamp(),  # after the 12:00 slot
    }
    due, first = scheduler(tasks, clock, lambda t: recent[t.id.kind]).missed(T0)
    assert kinds(due) == [("db", "full")] and first == []
    recent = {
        "full": (T0 - timedelta(hours=1)).timestamp(),
        SHIPPING: (T0 - timedelta(hours=1)).timestamp(),
    }
    due, _ = scheduler(tasks, clock, lambda t: recent[t.id.kind]).missed(T0)
    assert kinds(due) == [("db", SHIPPING)]
    due, first = scheduler(tasks, clock).missed(T0)  # a first start: both, at once
    assert kinds(due) == [("db", SHIPPING), ("db", "full")] and len(first) == 2


def test_a_dump_and_a_shipment_due_together_both_run() -> None:
    clock, log = Clock(datetime(2026, 11, 26, 21, 59, 30, tzinfo=UTC)), list[str]()
    tasks = [
        task("db", "0 22 * * *", "full", log, clock),
        task("db", "*/5 * * * *", SHIPPING, log, clock),
    ]
    start = datetime.fromtimestamp(clock(), UTC)
    due = scheduler(tasks, clock).due_between(start, start + timedelta(minutes=1))
    assert kinds(due) == [("db", SHIPPING), ("db", "full")]
