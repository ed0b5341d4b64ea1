"""Copy a dump stream from a pipe to a sink, hashing and scanning it on the way.

Two ways, after what the sink does with the stream:

- a sink that stores it (``restic backup --stdin``): the copy loop only reads and
  writes, and hands the data in 1 MiB pieces to a second thread that hashes and
  scans it. The copy, the only part on the backup's critical path, never waits for
  either (hashing releases the GIL; scanning takes it for well under a millisecond
  at a time). The scanner's verdict comes at the end, before the caller lets the
  sink finish, so a refused dump still never becomes a snapshot.
- a sink that acts on it (``hold_back=True``: a ``mariadb`` client, the parallel
  loader): each piece is hashed and scanned first, and the sink only gets whole
  lines the scanner has read, so a refused command never reaches the client.

The buffers of the source pipe and of a sink that is a pipe are raised to 1 MiB
(``F_SETPIPE_SZ``): fewer, larger hand-overs between the processes. Memory stays
flat: at most ``QUEUE`` pieces wait for the hashing thread, and a held-back line is
as long as the longest line of the dump.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import queue
import threading
from dataclasses import dataclass
from typing import IO, Protocol

CHUNK = 1 << 20  # bytes asked for per read, and the size of the pieces hashed
PIPE_SIZE = 1 << 20  # the buffer asked for on the pipes
QUEUE = 8  # pieces waiting for the hashing thread, at most
TAIL = 512  # last bytes kept, to check a trailer


class Sink(Protocol):
    """Where a stream goes: a pipe to restic or a client, or the parallel loader."""

    def write(self, data: bytes, /) -> object: ...


class Scanner(Protocol):
    """What reads the stream on its way (``scan.DumpScanner``, alone or wrapped)."""

    @property
    def pending(self) -> int:
        """Bytes of the last, incomplete line fed (held back from an acting sink)."""
        ...

    def feed(self, chunk: bytes, /) -> None: ...

    def close(self) -> object: ...


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
    scanner: Scanner | None = None,
    *,
    hold_back: bool = False,
) -> Pumped:
    """Copy ``source`` to ``sink`` until end of file; hash, scan and count on the way.

    At end of file the scanner is closed (``close`` may be called again for the
    counts). Exceptions from the scanner (``ClientCommandError``) and the sink
    propagate; the caller stops the producer and the sink.
    """
    fd = source if isinstance(source, int) else source.fileno()
    enlarge_pipe(fd)
    fileno = getattr(sink, "fileno", None)
    if callable(fileno):
        enlarge_pipe(fileno())
    copy = _in_order if hold_back else _beside
    size, digest, tail = copy(fd, sink, scanner)
    if scanner is not None:
        scanner.close()  # reads a last line without newline (it may raise)
    return Pumped(size, digest, tail)


def _beside(fd: int, sink: Sink, scanner: Scanner | None) -> tuple[int, str, bytes]:
    """Copy; a second thread hashes and scans what was copied."""
    pieces: queue.Queue[bytes | None] = queue.Queue(QUEUE)
    digest = hashlib.sha256()
    failed: list[BaseException] = []

    def check() -> None:
        while (piece := pieces.get()) is not None:
            if failed:
                continue  # keep emptying the queue so that the copy never blocks
            try:
                digest.update(piece)
                if scanner is not None:
                    scanner.feed(piece)
            except BaseException as exc:  # handed to the copying thread
                failed.append(exc)

    worker = threading.Thread(target=check, name="pump-check", daemon=True)
    worker.start()
    size, tail, batch, batched = 0, b"", [], 0
    try:
        while not failed and (chunk := os.read(fd, CHUNK)):
            sink.write(chunk)
            size += len(chunk)
            tail = (tail + chunk[-TAIL:])[-TAIL:]
            batch.append(chunk)
            batched += len(chunk)
            if batched >= CHUNK:
                pieces.put(b"".join(batch))
                batch, batched = [], 0
        if batch:
            pieces.put(b"".join(batch))
    finally:
        pieces.put(None)
        worker.join()
    if failed:
        raise failed[0]
    return size, digest.hexdigest(), tail


def _in_order(fd: int, sink: Sink, scanner: Scanner | None) -> tuple[int, str, bytes]:
    """Hash and scan each piece, then give the sink the whole lines read so far."""
    digest = hashlib.sha256()
    size, tail = 0, b""
    held: list[bytes] = []  # read, not yet given to the sink: the last, incomplete line
    while chunk := os.read(fd, CHUNK):
        digest.update(chunk)
        size += len(chunk)
        tail = (tail + chunk[-TAIL:])[-TAIL:]
        if scanner is not None:
            scanner.feed(chunk)
        pending = scanner.pending if scanner is not None else 0
        if pending >= len(chunk):
            held.append(chunk)
            continue
        ready = chunk[:-pending] if pending else chunk
        sink.write(b"".join([*held, ready]) if held else ready)  # whole lines, in one write
        held = [chunk[-pending:]] if pending else []
    if held:
        if scanner is not None:
            scanner.close()  # the client would run a last line without newline too
        sink.write(b"".join(held))
    return size, digest.hexdigest(), tail
