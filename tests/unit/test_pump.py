"""The pump: a real pipe in, a sink out, hash and scanner on the way."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from backup_agent.jobs.mysql.pump import CHUNK, PIPE_SIZE, QUEUE, TAIL, enlarge_pipe, pump
from backup_agent.jobs.mysql.scan import ClientCommandError, DumpScanner


class Recorder:
    """A sink that keeps what it got, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.writes.append(bytes(data))
        return len(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)


@contextmanager
def producer(pieces: list[bytes], pause: float = 0.0) -> Iterator[int]:
    """A pipe whose write end a thread fills with ``pieces``; yields the read end."""
    read_end, write_end = os.pipe()

    def write() -> None:
        with open(write_end, "wb", buffering=0) as out, suppress(BrokenPipeError):
            for piece in pieces:  # until the pump stops reading, like a dump tool
                out.write(piece)
                if pause:
                    time.sleep(pause)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield read_end
    finally:
        os.close(read_end)
        thread.join(10)


def dump_lines(count: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    rows = b",\n".join(b"(%d,'%s')" % (i, rng.randbytes(40).hex().encode()) for i in range(count))
    return b"USE `db`;\nINSERT INTO `t` VALUES\n" + rows + b";\n-- Dump completed\n"


def test_the_stream_arrives_whole_with_its_size_hash_and_tail() -> None:
    data = random.Random(7).randbytes(3 * CHUNK + 12345)
    sink = Recorder()
    with producer([data[i : i + 70000] for i in range(0, len(data), 70000)]) as fd:
        result = pump(fd, sink)
    assert sink.data == data
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.tail == data[-TAIL:]


def test_an_empty_stream_gives_nothing() -> None:
    sink = Recorder()
    with producer([]) as fd:
        result = pump(fd, sink, DumpScanner())
    assert (result.size, result.tail, sink.data) == (0, b"", b"")
    assert result.sha256 == hashlib.sha256(b"").hexdigest()


def test_the_scanner_sees_every_byte_and_is_closed_at_the_end() -> None:
    data = dump_lines(20000) + b"INSERT INTO `u` VALUES (1),(2)"  # no newline at the end
    scanner = DumpScanner(trusted_rows=True)
    with producer([data[i : i + 9999] for i in range(0, len(data), 9999)], pause=0.0005) as fd:
        pump(fd, Recorder(), scanner)
    assert scanner.pending == 0
    assert scanner.close() == {"db": {"t": 20000, "u": 2}}


@pytest.mark.parametrize("hold_back", [False, True])
def test_a_refused_line_never_reaches_a_holding_sink(hold_back: bool) -> None:
    hostile = b"SELECT 1; \\! touch /tmp/pwned;\n"
    data = dump_lines(3000) + hostile
    cut = len(data) - 10  # the hostile line arrives in two writes
    sink = Recorder()
    with (
        producer([data[:cut], data[cut:]], pause=0.05) as fd,
        pytest.raises(ClientCommandError),
    ):
        pump(fd, sink, DumpScanner(), hold_back=hold_back)
    assert (b"\\! touch" in sink.data) is not hold_back
    if hold_back:
        assert sink.data == data[: data.index(hostile)]
        assert all(write.endswith(b"\n") for write in sink.writes)


def test_a_refusal_stops_the_copy_within_the_queue() -> None:
    data = b"\\! touch /tmp/pwned\n" + b"SELECT 1;\n" * (40 * CHUNK // 10)
    sink = Recorder()
    with (
        producer([data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]) as fd,
        pytest.raises(ClientCommandError, match=r"^dump line 1: "),
    ):
        pump(fd, sink, DumpScanner())
    assert len(sink.data) <= (QUEUE + 3) * CHUNK < len(data)


def test_holding_back_still_delivers_everything() -> None:
    data = dump_lines(5000) + b"SELECT 'last line, no newline'"
    sink = Recorder()
    with producer([data[i : i + 4321] for i in range(0, len(data), 4321)]) as fd:
        result = pump(fd, sink, DumpScanner(), hold_back=True)
    assert sink.data == data
    assert result.size == len(data)


def test_a_pipe_gets_a_larger_buffer_and_a_file_is_left_alone(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        assert enlarge_pipe(read_end) >= min(PIPE_SIZE, pipe_max_size())
    finally:
        os.close(read_end)
        os.close(write_end)
    with (tmp_path / "file").open("wb") as handle:
        assert enlarge_pipe(handle.fileno()) == 0


def pipe_max_size() -> int:
    return int(Path("/proc/sys/fs/pipe-max-size").read_text())
