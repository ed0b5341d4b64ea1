"""The state file: shared by the agent and an operator's one-shot commands."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from backup_agent.state import CHECK, DRILL, RETENTION, Run, State, backup_task

DB = backup_task("db", "full")
FILES = backup_task("files", "incremental")


def count_success(run: Run) -> None:
    run.successes += 1


def test_two_state_objects_on_one_file_keep_each_others_records(tmp_path: Path) -> None:
    """The agent's and an operator's State each update their own task, none is lost."""
    agent, operator = State(str(tmp_path)), State(str(tmp_path))
    agent.update(DB, lambda run: setattr(run, "last_success", 1.0))
    operator.update(FILES, lambda run: setattr(run, "last_success", 2.0))
    agent.update(DB, lambda run: setattr(run, "last_success", 3.0))
    again = State(str(tmp_path))
    assert again.run(DB).last_success == 3.0
    assert again.run(FILES).last_success == 2.0
    assert not State(str(tmp_path / "other")).known(FILES)
    agent.reload()
    assert agent.known(FILES)


def _count_many(directory: str, times: int) -> None:
    state = State(directory)
    for _ in range(times):
        state.update(DB, count_success)


def test_concurrent_updates_of_one_task_all_count(tmp_path: Path) -> None:
    """Runs that finish at the same moment in different processes are all counted
    (each change is applied to the file's current record under the lock)."""
    workers = [
        multiprocessing.Process(target=_count_many, args=(str(tmp_path), 50)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert State(str(tmp_path)).run(DB).successes == 200


def test_the_file_keeps_backups_maintenance_and_drills_apart(tmp_path: Path) -> None:
    state = State(str(tmp_path))
    for task in (DB, FILES, RETENTION, CHECK, DRILL):
        state.update(task, count_success)
    data = json.loads((tmp_path / "state.json").read_text())
    assert data["version"] == 2
    assert set(data["backup"]) == {"db", "files"}
    assert set(data["backup"]["files"]) == {"incremental"}
    assert set(data["maintenance"]) == {"retention", "check"}
    assert set(data["verifier"]) == {"drill"}


def test_a_version_1_file_is_read_and_rewritten(tmp_path: Path) -> None:
    """Files written before the structure (pseudo-services such as verifier/drill) still load."""
    old = {"successes": 3, "last_run": 5.0, "last_success": 6.0}
    (tmp_path / "state.json").write_text(
        json.dumps(
            {
                "jobs": {
                    "db/full": old,
                    "verifier/drill": old,
                    "retention/forget": old,
                    "check/check": old,
                }
            }
        )
    )
    state = State(str(tmp_path))
    assert {task: run.successes for task, run in state.runs.items()} == {
        DB: 3,
        DRILL: 3,
        RETENTION: 3,
        CHECK: 3,
    }
    state.update(CHECK, count_success)
    assert (
        json.loads((tmp_path / "state.json").read_text())["maintenance"]["check"]["successes"] == 4
    )


def test_an_unreadable_file_is_ignored_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text("{not json")
    assert State(str(tmp_path)).runs == {}
