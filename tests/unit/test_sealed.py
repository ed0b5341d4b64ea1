"""The feeder of a sealed backup: only a whole frame becomes restic's input."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backup_agent import sealed


@given(st.binary(max_size=4096))
def test_a_whole_frame_gives_back_its_document(document: bytes) -> None:
    assert sealed.unframe(sealed.frame(document)) == document


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "no length line"),
        (b"12", "no length line"),
        (b"x2\nab", "no length line"),
        (b"1234567890\n", "no length line"),  # longer than any length allowed
        (b"5\nabc", "3 bytes after a length of 5"),
        (b"2\nabc", "3 bytes after a length of 2"),
    ],
)
def test_anything_but_a_whole_frame_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        sealed.unframe(data)


def feed(data: bytes | None) -> subprocess.CompletedProcess[bytes]:
    """Run the feeder as restic would (by its path), on a pipe it inherits; ``None``: the writer
    goes away without writing."""
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", sealed.__file__, str(read_end)],
            pass_fds=(read_end,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(read_end)
    with open(write_end, "wb") as pipe:
        if data is not None:
            pipe.write(data)
    out, err = child.communicate(timeout=60)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def test_the_feeder_writes_a_sealed_document_and_exits_0() -> None:
    done = feed(sealed.frame(b'{"sha256": "ab"}'))
    assert (done.returncode, done.stdout) == (0, b'{"sha256": "ab"}')


@pytest.mark.parametrize("data", [None, b'40\n{"sha256"', b"garbage"])
def test_the_feeder_exits_1_and_writes_nothing_without_a_whole_frame(data: bytes | None) -> None:
    done = feed(data)
    assert (done.returncode, done.stdout) == (1, b"")
    assert b"not saved" in done.stderr


def test_the_feeder_refuses_a_bad_command_line() -> None:
    assert sealed.main(["not-a-descriptor"]) == 2
