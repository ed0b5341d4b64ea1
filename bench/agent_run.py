"""One agent run of ``restore_bench`` in a process of its own.

The bench samples this process's VmRSS from ``/proc/PID/status`` while it runs, so the
peak is the agent's alone (Python, the agent's modules and its run) and comparable
between sizes; in the bench's own process it followed the bench's memory, which grows
as it generates data. The run times itself, leaving out Python's start and imports.

    python -m bench.agent_run backup|drill|restore MANIFEST [TARGET_DIR]

The manifest's service ``db`` is backed up (``mysql.backup``), drilled (``drill.drill``)
or restored into TARGET_DIR (``mysql.restore``, what ``restore db --to DIR`` runs).
Prints one JSON line: a ``Sample`` without the peak, which only the bench can see.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from backup_agent import drill, heap, manifest
from backup_agent.jobs import mysql
from backup_agent.jobs.base import RestoreRequest
from backup_agent.manifest import Manifest

SERVICE = "db"


@dataclass
class Sample:
    """One timed run: wall seconds, CPU of the measured process and of its waited-for
    children, and for agent runs the agent process's VmRSS peak and its VmRSS when the
    run started. ``then_seconds``: work after the agent's part, included in ``seconds``
    (a physical restore: chown, starting the server, counting rows)."""

    seconds: float
    cpu_self: float
    cpu_children: float
    rss_peak_mib: float | None = None
    rss_before_mib: float | None = None
    then_seconds: float | None = None


def vmrss_kib(pid: int | str = "self") -> int:
    """VmRSS of a process in KiB (KeyError once it has exited: a zombie has none)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise KeyError("VmRSS")


def cpu_seconds(who: int) -> float:
    """User + system seconds of ``resource.RUSAGE_SELF`` or ``RUSAGE_CHILDREN``."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def timed(run: Callable[[], object]) -> Sample:
    """Run once in this process: wall seconds and CPU of this process and its children."""
    before = (cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN))
    started = time.monotonic()
    run()
    seconds = time.monotonic() - started
    after = (cpu_seconds(resource.RUSAGE_SELF), cpu_seconds(resource.RUSAGE_CHILDREN))
    return Sample(round(seconds, 2), round(after[0] - before[0], 2), round(after[1] - before[1], 2))


def backup(loaded: Manifest, target: str) -> None:
    mysql.backup(loaded, loaded.service(SERVICE), "full")


def drill_(loaded: Manifest, target: str) -> None:
    outcome = drill.drill(loaded, loaded.service(SERVICE))
    if not outcome.passed:
        raise RuntimeError(f"the drill failed: {outcome.error}")


def restore(loaded: Manifest, target: str) -> None:
    mysql.restore(loaded, loaded.service(SERVICE), RestoreRequest(target=target))


ACTIONS: dict[str, Callable[[Manifest, str], None]] = {
    "backup": backup,
    "drill": drill_,
    "restore": restore,
}


def main() -> None:
    action, path, target = [*sys.argv[1:], ""][:3]
    heap.keep_flat()  # as the agent's command line does
    loaded = manifest.load(path)
    before = round(vmrss_kib() / 1024, 1)
    sample = timed(lambda: ACTIONS[action](loaded, target))
    sample.rss_before_mib = before
    print(json.dumps(asdict(sample)), flush=True)


if __name__ == "__main__":
    main()
