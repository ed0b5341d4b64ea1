"""The program ``restic backup --stdin-from-command`` runs for a sealed backup
(``restic.SealedBackup``): it passes on one document that the agent hands over later.

    python -I .../backup_agent/sealed.py FD

The document comes on the inherited pipe ``FD`` framed as its length in ASCII digits,
a newline, exactly that many bytes, then end of file. Only a whole frame is written
to stdout, with exit 0; anything else (the agent gave up or died: end of file early,
or a malformed frame) exits 1 with the reason on stderr, and restic then saves no
snapshot. So a record exists only when the agent sealed it.
"""

from __future__ import annotations

import os
import sys

MAX_BYTES = 16 << 20  # far above any record; bounds what this process holds
_DIGITS = 9  # a length of at most 999999999, plus the newline


def frame(document: bytes) -> bytes:
    """What the agent writes for ``document``."""
    return b"%d\n" % len(document) + document


def unframe(data: bytes) -> bytes:
    """The document of a whole frame; ``ValueError`` says why ``data`` is not one."""
    head, newline, document = data.partition(b"\n")
    if not newline or not head.isdigit() or len(head) > _DIGITS:
        raise ValueError("no length line: the agent handed nothing over")
    if int(head) != len(document):
        raise ValueError(f"{len(document)} bytes after a length of {int(head)}")
    return document


def _read_all(fd: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while chunk := os.read(fd, 1 << 16):
        size += len(chunk)
        if size > MAX_BYTES + _DIGITS + 1:
            raise ValueError(f"more than {MAX_BYTES} bytes")
        parts.append(chunk)
    return b"".join(parts)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -I sealed.py FD", file=sys.stderr)
        return 2
    try:
        document = unframe(_read_all(int(argv[0])))
    except (OSError, ValueError) as exc:
        print(f"sealed: not saved: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(document)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
