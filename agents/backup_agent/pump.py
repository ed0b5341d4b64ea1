"""Copy a dump stream from a pipe to a sink, hashing and scanning it on the way.

The copy is the agent's whole share of a backup's critical path, so it is kept
cheap per byte and per read: the buffers of the source pipe and of a sink that is
a pipe are raised to 1 MiB (``F_SETPIPE_SZ``) and, when a read comes back short,
the pump waits a few milliseconds (never longer than it takes the producer to fill
half the pipe) so that the next read brings a large piece instead of the few KiB
the producer wrote since. Each piece is read once into a ``bytes`` object that the hash, the scanner
and the sink all use as is.

``hold_back`` is for sinks that act on what they read (a ``mariadb`` client): they
only get bytes the scanner has read, so a command is refused before any of its
line reaches the client. A sink that only stores (``restic backup --stdin``) takes
everything at once; the caller then checks the scanner's verdict before it lets the
sink finish.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from dataclasses import dataclass
from typing import IO, Protocol

from backup_agent.dumpscan import DumpScanner

CHUNK = 1 << 20  # bytes asked for per read
PIPE_SIZE = 1 << 20  # the buffer asked for on the source pipe
TAIL = 512  # last bytes kept, to check a trailer
MAX_WAIT = 0.01  # seconds, at most, between a short read and the next


class Sink(Protocol):
    """Where a stream goes: a pipe to restic or a client, or the parallel loader."""

    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True)
class Pumped:
    """What went through: its size in bytes, SHA-256 (hex) and last ``TAIL`` bytes."""

    size: int
    sha256: str
    tail: bytes


def enlarge_pipe(fd: int, size: int = PIPE_SIZE) -> int:
    """Ask for a pipe buffer of ``size`` bytes; the size the pipe has afterwards.

    Unprivileged processes may get at most ``/proc/sys/fs/pipe-max-size`` (1 MiB by
    default); a file that is not a pipe is left alone (0).
    """
    try:
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except OSError:
        try:
            return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
        except OSError:
            return 0


def pump(
    source: IO[bytes] | int,
    sink: Sink,
    scanner: DumpScanner | None = None,
    *,
    hold_back: bool = False,
) -> Pumped:
    """Copy ``source`` to ``sink`` until end of file; hash, scan, count on the way.

    At end of file the scanner is closed (``close`` may be called again for the
    counts). Exceptions from the scanner (``ClientCommandError``) and the sink
    propagate; the caller stops the producer and the sink.
    """
    fd = source if isinstance(source, int) else source.fileno()
    capacity = enlarge_pipe(fd)
    fileno = getattr(sink, "fileno", None)
    if callable(fileno):  # fewer, larger hand-overs to the reader at the other end too
        enlarge_pipe(fileno())
    digest = hashlib.sha256()
    size = 0
    tail = b""
    held: list[bytes] = []  # read but not given to the sink yet (hold_back)
    last = time.monotonic()
    while chunk := os.read(fd, CHUNK):
        now = time.monotonic()
        digest.update(chunk)
        size += len(chunk)
        tail = (tail + chunk[-TAIL:])[-TAIL:]
        if scanner is not None:
            scanner.feed(chunk)
        if hold_back and scanner is not None:
            _release(sink, held, chunk, scanner.pending)
        else:
            sink.write(chunk)
        if len(chunk) < CHUNK // 2 and capacity >= CHUNK:
            # At this pace the pipe is half full after `half`: read again then.
            half = (now - last) * capacity / 2 / len(chunk)
            time.sleep(min(MAX_WAIT, half))
        last = now
    if scanner is not None:
        scanner.close()  # reads a last line without newline (it may raise)
    if held:
        sink.write(b"".join(held))
    return Pumped(size, digest.hexdigest(), tail)


def _release(sink: Sink, held: list[bytes], chunk: bytes, pending: int) -> None:
    """Give the sink what the scanner has read; keep its ``pending`` last bytes."""
    if pending >= len(chunk):
        held.append(chunk)
        return
    ready = chunk[:-pending] if pending else chunk
    sink.write(b"".join([*held, ready]) if held else ready)  # whole lines, in one write
    held[:] = [chunk[-pending:]] if pending else []
