"""The agent fixes glibc's mmap threshold so that streaming keeps its memory flat."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A child that frees a 1 MiB piece, then makes the next one and prints how many bytes
# glibc holds in mappings of their own (mallinfo2's hblkhd) before and after it.
PIECES = """
import ctypes, ctypes.util, sys
from backup_agent import heap
if sys.argv[1] == "flat":
    assert heap.keep_flat()
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Info
first = bytes(1 << 20)
del first
before = libc.mallinfo2().hblkhd
second = bytes(1 << 20)
print(libc.mallinfo2().hblkhd - before)
"""


def mapped_growth(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PIECES, mode], capture_output=True, check=True)
    return int(done.stdout)


@pytest.mark.parametrize(("mode", "own_mapping"), [("flat", True), ("default", False)])
def test_after_one_piece_is_freed_the_next_gets_its_own_mapping_only_when_kept_flat(
    mode: str, own_mapping: bool
) -> None:
    """glibc's default raises its threshold at the first free of a mapped piece, and the
    pieces after it come from its heaps, which grow with fragmentation when gigabytes
    pass in such pieces (the drill's VmRSS grew with the dump's size that way)."""
    assert (mapped_growth(mode) >= 1 << 20) is own_mapping
