"""The xbstream reader on good, truncated and hostile streams, alone and in the pump."""

from __future__ import annotations

import zlib

import pytest

from backup_agent.jobs.mysql.pump import pump
from backup_agent.jobs.mysql.xbstream import (
    FIXED,
    MAGIC,
    MAX_PATH,
    MAX_PAYLOAD,
    PAYLOAD,
    Contents,
    StreamError,
    XbstreamReader,
)
from tests.unit.test_pump import Recorder, producer


def chunk(name: bytes, data: bytes = b"", offset: int = 0, *, end: bool = False) -> bytes:
    """One chunk as mariadb-backup writes it."""
    head = FIXED.pack(MAGIC, 0, ord("E" if end else "P"), len(name)) + name
    if end:
        return head
    return head + PAYLOAD.pack(len(data), offset, zlib.crc32(data)) + data


def stored(name: bytes, data: bytes, piece: int = 1000) -> bytes:
    """A whole file: its payload chunks, then its end."""
    parts = [chunk(name, data[i : i + piece], i) for i in range(0, len(data), piece)]
    return b"".join(parts) + chunk(name, end=True)


GOOD = (
    stored(b"ibdata1", bytes(range(256)) * 20)
    + stored(b"shop/t.ibd", b"x" * 3000)
    + stored(b"xtrabackup_checkpoints", b"backup_type = full-backuped\n")
    + stored(b"backup-my.cnf", b"[mysqld]\n")
    + chunk(b"empty", end=True)
)


def read(data: bytes, piece: int) -> Contents:
    reader = XbstreamReader()
    for i in range(0, len(data), piece):
        reader.feed(data[i : i + piece])
    return reader.close()


@pytest.mark.parametrize("piece", [1, 7, 14, 4096, len(GOOD)])
def test_a_good_stream_is_read_in_pieces_of_any_size(piece: int) -> None:
    assert read(GOOD, piece) == Contents(files=5, payload_bytes=5120 + 3000 + 28 + 9)


def test_every_truncation_is_refused_but_one_between_whole_files() -> None:
    """A stream has no end marker: cut between files, after the required ones, it reads as
    complete (the tool's exit code and success line, and the recorded SHA-256, catch that)."""
    accepted = []
    for cut in range(len(GOOD)):
        try:
            read(GOOD[:cut], 4096)
        except StreamError as exc:
            assert "truncated" in str(exc) or "not a backup" in str(exc)
        else:
            accepted.append(cut)
    assert accepted == [len(GOOD) - len(chunk(b"empty", end=True))]


def test_a_stream_without_the_backup_files_is_not_a_backup() -> None:
    with pytest.raises(StreamError, match=r"no backup-my\.cnf"):
        read(stored(b"xtrabackup_checkpoints", b"x"), 100)


@pytest.mark.parametrize(
    "name",
    [
        b"/etc/cron.d/evil",
        b"../evil",
        b"shop/../../evil",
        b"shop/..",
        b"./ibdata1",
        b"shop//t.ibd",
        b"shop/",
        b"\xff\xfe",
        b"a\nb",
        b"a\x00b",
    ],
)
def test_names_that_leave_the_directory_are_refused_at_their_header(name: bytes) -> None:
    reader = XbstreamReader()
    reader.feed(GOOD)
    with pytest.raises(StreamError, match="file name"):
        reader.feed(chunk(name, b"payload"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"XBSTCK02" + GOOD[8:], "does not start with XBSTCK01"),
        (FIXED.pack(MAGIC, 0, ord("S"), 4) + b"abcd", "unknown type 'S'"),
        (FIXED.pack(MAGIC, 2, ord("P"), 4) + b"abcd", "unknown flags"),
        (FIXED.pack(MAGIC, 0, ord("P"), MAX_PATH + 1), "name of 513 bytes"),
        (FIXED.pack(MAGIC, 0, ord("P"), 0), "name of 0 bytes"),
        (
            FIXED.pack(MAGIC, 0, ord("P"), 1) + b"a" + PAYLOAD.pack(MAX_PAYLOAD + 1, 0, 0),
            "chunk of 268435457 bytes",
        ),
        (chunk(b"a", b"12") + chunk(b"a", b"34", 5), "out of order"),
        (stored(b"a", b"12") + chunk(b"a", b"34", 2), "again after its end"),
        (chunk(b"a", end=True) * 2, "twice"),
        (chunk(b"a", b"1234")[:-4] + b"1235", "CRC-32"),
    ],
)
def test_malformed_streams_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(StreamError, match=message):
        read(data + GOOD, 4096)


def test_an_unended_file_is_a_truncated_stream() -> None:
    with pytest.raises(StreamError, match=r"'shop/u\.ibd' has no end"):
        read(GOOD + chunk(b"shop/u.ibd", b"more"), 4096)


def test_the_unpacking_tool_never_gets_the_header_of_a_refused_chunk() -> None:
    """Held back by the pump: bytes of a header only go on once it was accepted."""
    hostile = GOOD + chunk(b"../../root/.ssh/authorized_keys", b"ssh-ed25519 AAAA")
    sink = Recorder()
    pieces = [hostile[i : i + 501] for i in range(0, len(hostile), 501)]
    with (
        producer(pieces, pause=0.01) as fd,
        pytest.raises(StreamError, match="leaves the target directory"),
    ):
        pump(fd, sink, XbstreamReader(), hold_back=True)
    assert sink.data and GOOD.startswith(sink.data)  # read before it, and nothing of it


def test_the_reader_passes_a_good_stream_through_the_pump_unchanged() -> None:
    sink = Recorder()
    reader = XbstreamReader()
    with producer([GOOD[:10], GOOD[10:333], GOOD[333:]]) as fd:
        stats = pump(fd, sink, reader, hold_back=True)
    assert sink.data == GOOD and stats.size == len(GOOD)
    assert reader.close().files == 5
