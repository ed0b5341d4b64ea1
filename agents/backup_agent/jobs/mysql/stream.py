"""Copying a dump stream between processes, hashing (and scanning) it on the way.

Used in both directions: from the dump tool into ``restic backup --stdin``, and from
``restic dump`` into the loader. The stream is never written to disk here and memory
stays constant (fixed-size chunks).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import IO, Protocol

from backup_agent.jobs.mysql.scan import DumpScanner

CHUNK = 1 << 20
TAIL = 512  # bytes kept to find the trailer


@dataclass(frozen=True)
class StreamStats:
    bytes: int
    sha256: str


class Sink(Protocol):
    """Where a dump stream goes: a pipe to restic or a client, or the parallel loader."""

    def write(self, data: bytes, /) -> int: ...


def copy_stream(
    source: IO[bytes], sink: Sink, scanner: DumpScanner | None = None
) -> tuple[StreamStats, bytes]:
    """Copy chunk by chunk, hashing (and scanning) on the way; return stats and last bytes."""
    digest = hashlib.sha256()
    size = 0
    tail = b""
    while chunk := source.read1(CHUNK):  # type: ignore[attr-defined]
        digest.update(chunk)
        if scanner is not None:
            scanner.feed(chunk)
        size += len(chunk)
        tail = (tail + chunk[-TAIL:])[-TAIL:]
        sink.write(chunk)
    return StreamStats(size, digest.hexdigest()), tail
