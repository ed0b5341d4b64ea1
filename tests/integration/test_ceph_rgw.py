"""The test store itself: it reports a failed start with its logs and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.ceph_rgw import CephError, CephRGW
from tests.conftest import need, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie awaiting its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_start_that_times_out_says_why_and_stops_everything() -> None:
    need("radosgw")
    rgw = CephRGW(start_timeout=0.5)
    with pytest.raises(CephError, match=r"did not start within 0 s") as caught:
        rgw.start()
    assert "--- mon.a.log" in str(caught.value)  # the tail of the logs comes along
    assert rgw.processes == {}
    assert not rgw.base.exists()


@pytest.mark.parametrize("ending", ["exit", "killed"])
def test_no_ceph_process_outlives_the_test_process(ending: str) -> None:
    """Interpreter exit runs stop(); a SIGKILLed parent takes its daemons along
    (PR_SET_PDEATHSIG)."""
    need("radosgw")
    end = "os.kill(os.getpid(), signal.SIGKILL)" if ending == "killed" else "sys.exit(0)"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from tests.ceph_rgw import CephRGW
        rgw = CephRGW()
        rgw.start()
        print(rgw.base, *(p.pid for p in rgw.processes.values()), flush=True)
        {end}
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    base, *pids = child.stdout.split()
    assert len(pids) == 3, child.stderr  # monitor, OSD, gateway
    try:
        wait_for("the Ceph daemons to end", lambda: not any(alive(int(p)) for p in pids), 15)
    finally:
        for pid in pids:
            if alive(int(pid)):
                os.kill(int(pid), 9)
        subprocess.run(["rm", "-rf", base], check=False)
    if ending == "exit":
        assert not Path(base).exists()
