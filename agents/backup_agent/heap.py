"""Keep the agent's memory flat while it streams gigabytes.

The agent moves data in 1 MiB pieces across threads (the pump, the loader's clients).
glibc serves a block that large with its own mapping, returned on free, but after the
first such free it raises that threshold (up to 32 MiB) and serves later pieces from
its heaps, which then grow with fragmentation: a drill's RSS grew by 20 MiB per 300
MB of dump that way (bench/restore_bench.py). Fixing the threshold at glibc's default
(128 KiB) turns the adjustment off; other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value


def keep_flat() -> bool:
    """Fix glibc's mmap threshold for this process; False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return False
    return bool(mallopt and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)
