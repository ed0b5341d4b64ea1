"""Scheduler logic with a controlled clock: catch-up, one run per service, waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from backup_agent.errors import BackupError, Interrupted
from backup_agent.manifest import Schedule
from backup_agent.scheduler import Scheduler, Task, one_per_service

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

    return Task(service, Schedule(kind, cron, UTC_ZONE), run)


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
    scheduler = Scheduler(
        tasks, lambda t: last[t.service], lambda t, s: None, clock=clock, sleep=clock.sleep
    )

    due = scheduler.missed(T0)

    # Hours of missed minutely slots still give one run per service; files runs full.
    assert sorted((t.service, t.kind) for _, t in due) == [("db", "full"), ("files", "full")]


def test_a_service_that_never_ran_runs_at_start_up_once_and_full() -> None:
    clock, log = Clock(T0), list[str]()
    tasks = [
        task("files", "* * * * *", "incremental", log, clock),
        task("files", "0 0 * * 0", "full", log, clock),
        task("db", "0 22 * * *", "full", log, clock),
    ]
    records = {"files": None, "db": (T0 - timedelta(seconds=20)).timestamp()}
    scheduler = Scheduler(
        tasks, lambda t: records[t.service], lambda t, s: None, clock=clock, sleep=clock.sleep
    )
    assert [(when, t.service, t.kind) for when, t in scheduler.missed(T0)] == [
        (T0, "files", "full")
    ]


def test_a_task_without_first_run_waits_for_its_slot() -> None:
    clock = Clock(T0)
    drill = Task(
        "verifier", Schedule("drill", "0 6 * * 1", UTC_ZONE), lambda: None, first_run=False
    )
    scheduler = Scheduler(
        [drill], lambda t: None, lambda t, s: None, clock=clock, sleep=clock.sleep
    )
    assert scheduler.missed(T0) == []


def test_jobs_due_together_run_one_after_another_and_the_wait_is_reported() -> None:
    clock, log = Clock(T0), list[str]()
    waits: list[tuple[str, float]] = []
    tasks = [
        task("a", "* * * * *", "full", log, clock, took=20),
        task("b", "* * * * *", "full", log, clock),
    ]
    scheduler = Scheduler(
        tasks,
        lambda t: None,
        lambda t, s: waits.append((t.service, s)),
        clock=clock,
        sleep=clock.sleep,
    )

    due = scheduler.due_between(T0, T0 + timedelta(minutes=1))
    clock.now = due[0][0].timestamp()
    scheduler.run_due(due)

    assert log == ["a/full@12:01:00", "b/full@12:01:20"]
    assert [service for service, _ in waits] == ["b"]
    assert waits[0][1] == pytest.approx(20)


def test_a_failing_job_does_not_stop_the_others_but_an_interrupt_does() -> None:
    clock = Clock(T0)
    ran: list[str] = []

    def fail() -> None:
        raise BackupError("broken")

    def stop() -> None:
        raise Interrupted("SIGTERM")

    when = T0
    failing = Scheduler(
        [
            Task("a", Schedule("full", "* * * * *", UTC_ZONE), fail),
            Task("b", Schedule("full", "* * * * *", UTC_ZONE), lambda: ran.append("b")),
        ],
        lambda t: None,
        lambda t, s: None,
        clock=clock,
        sleep=clock.sleep,
    )
    failing.run_due([(when, t) for t in failing.tasks])
    assert ran == ["b"]

    interrupted = Scheduler(
        [
            Task("a", Schedule("full", "* * * * *", UTC_ZONE), stop),
            Task("b", Schedule("full", "* * * * *", UTC_ZONE), lambda: ran.append("b2")),
        ],
        lambda t: None,
        lambda t, s: None,
        clock=clock,
        sleep=clock.sleep,
    )
    with pytest.raises(Interrupted):
        interrupted.run_due([(when, t) for t in interrupted.tasks])
    assert ran == ["b"]


def test_run_forever_sleeps_until_each_slot_in_the_schedules_time_zone() -> None:
    start = datetime(2026, 11, 26, 21, 59, 0, tzinfo=UTC)
    clock, log = Clock(start), list[str]()
    helsinki = ZoneInfo("Europe/Helsinki")  # 22:00 in Helsinki is 20:00 UTC in winter

    def run() -> None:
        log.append(datetime.fromtimestamp(clock(), UTC).isoformat())
        if len(log) == 2:
            raise Interrupted("done")

    ticks = []
    scheduler = Scheduler(
        [Task("db", Schedule("full", "0 22 * * *", helsinki), run)],
        lambda t: start.timestamp(),  # ran just now: nothing to catch up
        lambda t, s: None,
        on_tick=lambda: ticks.append(clock()),
        clock=clock,
        sleep=clock.sleep,
    )
    with pytest.raises(Interrupted):
        scheduler.run_forever()
    assert log == ["2026-11-27T20:00:00+00:00", "2026-11-28T20:00:00+00:00"]
    # While idle the loop wakes every 30 s (the agent reloads its state file there).
    assert len(ticks) > 2 * 24 * 60 and max(b - a for a, b in pairwise(ticks)) <= 30


def test_one_per_service_keeps_the_earliest_time() -> None:
    a = Task("files", Schedule("incremental", "* * * * *", UTC_ZONE), lambda: None)
    b = Task("files", Schedule("full", "* * * * *", UTC_ZONE), lambda: None)
    early, late = T0, T0 + timedelta(minutes=1)
    assert one_per_service([(late, b), (early, a)]) == [(early, b)]


def test_a_run_of_any_kind_counts_for_the_service() -> None:
    """A full run after the last incremental slot means nothing is missed."""
    clock, log = Clock(T0), list[str]()
    tasks = [
        task("files", "0 * * * *", "incremental", log, clock),
        task("files", "0 0 1 1 *", "full", log, clock),
    ]
    records = {"incremental": None, "full": (T0 - timedelta(seconds=10)).timestamp()}
    scheduler = Scheduler(
        tasks, lambda t: records[t.kind], lambda t, s: None, clock=clock, sleep=clock.sleep
    )
    assert scheduler.missed(T0) == []
