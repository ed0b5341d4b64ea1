"""Reading an xbstream as it passes: the archive ``mariadb-backup --stream=xbstream``
and ``xtrabackup --stream=xbstream`` write, and ``mbstream -x`` / ``xbstream -x`` unpack.

The stream is a sequence of chunks, each ``XBSTCK01``, a flags byte, a type byte
(``P`` payload, ``E`` end of file), the path (4-byte little-endian length, then the
name), and for a payload its length and offset (8 bytes each), its CRC-32 (4 bytes)
and the bytes. A stream read back from a repository is hostile input, so the reader
is strict: names are relative and never contain ``..`` (nor empty or ``.`` parts, nor
NUL), headers and payloads are bounded, a file's chunks are contiguous and end once,
every CRC matches, and a complete backup holds ``backup-my.cnf`` and
``xtrabackup_checkpoints`` with every file ended. Nothing is buffered but an
incomplete header, so memory stays flat; the reader fits ``pump``'s ``Scanner``: with
``hold_back`` the unpacking tool only ever gets bytes whose header was accepted.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from backup_agent.errors import BackupError

MAGIC = b"XBSTCK01"
FIXED = struct.Struct("<8sBBI")  # magic, flags, type, path length
PAYLOAD = struct.Struct("<QQI")  # length, offset, CRC-32
MAX_PATH = 512  # FN_REFLEN: the longest name the tools write
MAX_PAYLOAD = 256 << 20  # one chunk; the tools write at most 10 MiB
MAX_FILES = 1_000_000
REQUIRED = ("backup-my.cnf", "xtrabackup_checkpoints")
PAYLOAD_TYPE, EOF_TYPE = ord("P"), ord("E")


class StreamError(BackupError):
    """The bytes are not a well-formed, complete xbstream backup."""


@dataclass(frozen=True)
class Contents:
    """What a complete stream held: its files and the bytes of their contents."""

    files: int
    payload_bytes: int


class XbstreamReader:
    """Feed the stream in pieces of any size; ``close`` at its end."""

    def __init__(self) -> None:
        self._header = bytearray()  # the incomplete header of the next chunk
        self._need = FIXED.size  # header bytes needed to know more
        self._remaining = 0  # payload bytes of the current chunk still to come
        self._crc = 0
        self._expected_crc = 0
        self._current = ""
        self._sizes: dict[str, int] = {}  # bytes so far, per open file
        self._ended: set[str] = set()
        self._payload = 0
        self._result: Contents | None = None

    @property
    def pending(self) -> int:
        """Bytes of a header not yet complete (held back from an unpacking tool)."""
        return len(self._header)

    def feed(self, chunk: bytes, /) -> None:
        view = memoryview(chunk)
        while view:
            if self._remaining:
                take = view[: self._remaining]
                self._crc = zlib.crc32(take, self._crc)
                self._remaining -= len(take)
                view = view[len(take) :]
                if not self._remaining:
                    self._end_payload()
                continue
            take = view[: self._need - len(self._header)]
            self._header += take
            view = view[len(take) :]
            if len(self._header) == self._need:
                self._header_grew()

    def close(self) -> Contents:
        """What the stream held; ``StreamError`` unless it is complete."""
        if self._result is not None:
            return self._result
        if self._header or self._remaining:
            raise StreamError("the xbstream is truncated in the middle of a chunk")
        unended = sorted(set(self._sizes) - self._ended)
        if unended:
            raise StreamError(f"the xbstream is truncated: {_shown(unended[0])} has no end")
        missing = [name for name in REQUIRED if name not in self._ended]
        if missing:
            raise StreamError(f"the xbstream is not a backup: no {', '.join(missing)}")
        self._result = Contents(len(self._ended), self._payload)
        return self._result

    def _header_grew(self) -> None:
        magic, flags, kind, length = FIXED.unpack_from(self._header)
        if magic != MAGIC:
            raise StreamError("not an xbstream: a chunk does not start with XBSTCK01")
        if flags & ~1:  # 1: "ignorable", the only flag defined
            raise StreamError(f"xbstream chunk with unknown flags {flags:#x}")
        if kind not in (PAYLOAD_TYPE, EOF_TYPE):
            raise StreamError(f"xbstream chunk of unknown type {chr(kind)!r}")
        if not 0 < length <= MAX_PATH:
            raise StreamError(f"xbstream chunk with a name of {length} bytes")
        full = FIXED.size + length + (PAYLOAD.size if kind == PAYLOAD_TYPE else 0)
        if len(self._header) < full:
            self._need = full
            return
        name = safe_name(bytes(self._header[FIXED.size : FIXED.size + length]))
        if kind == EOF_TYPE:
            self._end_file(name)
        else:
            size, offset, crc = PAYLOAD.unpack_from(self._header, FIXED.size + length)
            self._start_payload(name, size, offset, crc)
        self._header.clear()
        self._need = FIXED.size

    def _start_payload(self, name: str, size: int, offset: int, crc: int) -> None:
        if name in self._ended:
            raise StreamError(f"xbstream writes {_shown(name)} again after its end")
        if name not in self._sizes and len(self._sizes) >= MAX_FILES:
            raise StreamError(f"the xbstream holds more than {MAX_FILES} files")
        if size > MAX_PAYLOAD:
            raise StreamError(f"xbstream chunk of {size} bytes for {_shown(name)}")
        if offset != self._sizes.get(name, 0):
            raise StreamError(f"xbstream chunk of {_shown(name)} out of order (offset {offset})")
        self._sizes[name] = offset + size
        self._payload += size
        self._current, self._remaining = name, size
        self._crc, self._expected_crc = 0, crc
        if not size:
            self._end_payload()

    def _end_payload(self) -> None:
        if self._crc != self._expected_crc:
            raise StreamError(f"xbstream chunk of {_shown(self._current)} fails its CRC-32")

    def _end_file(self, name: str) -> None:
        if name in self._ended:
            raise StreamError(f"xbstream ends {_shown(name)} twice")
        if name not in self._sizes and len(self._sizes) >= MAX_FILES:
            raise StreamError(f"the xbstream holds more than {MAX_FILES} files")
        self._sizes.setdefault(name, 0)
        self._ended.add(name)


def safe_name(raw: bytes) -> str:
    """A chunk's file name, if it stays inside the directory it is unpacked into."""
    try:
        name = raw.decode()
    except UnicodeDecodeError:
        raise StreamError(f"xbstream file name {raw[:80]!r} is not UTF-8") from None
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise StreamError(f"xbstream file name {_shown(name)} leaves the target directory")
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        raise StreamError(f"xbstream file name {_shown(name)} holds control characters")
    return name


def _shown(name: str) -> str:
    """A name for a message, clipped and escaped."""
    return repr(name if len(name) <= 80 else f"{name[:77]}...")
