"""Load a logical dump into a server with its tables in parallel.

The dump is read once, in stream order, and split at the section comments that
mysqldump and mariadb-dump write (``-- Table structure for table `t```, ...):

- the preamble (session settings: character set, time zone, checks off) is put in
  front of every part, so each part runs like the original session;
- a database's head (``CREATE DATABASE``, ``USE``) runs at once, in order;
- each table section (structure, data, triggers) is spooled to a file of its own and
  loaded by a pool of client processes that follow the file as it grows, so a table
  starts loading as soon as it starts arriving, while the stream goes on;
- everything else after a database's tables (views, events, routines) is collected
  in order and runs last, once every table is loaded.

Memory stays constant; the spool takes about as much scratch disk as the dump.
A dump without these comments ends up entirely in the preamble and loads serially.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO

from backup_agent import execute

_MARKER = re.compile(
    rb"^-- (Current Database: `((?:[^`]|``)+)`|Table structure for table "
    rb"|Temporary (?:table|view) structure for view |Dumping events for database "
    rb"|Dumping routines for database |Final view structure for view )",
    re.MULTILINE,
)


FOLLOW_POLL = 0.05  # seconds between looks at a section file that is still growing


class _Section:
    """A table section being spooled; ``done`` is set once it is complete on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] = path.open("wb")
        self.done = threading.Event()

    def complete(self) -> None:
        self.file.close()
        self.done.set()


class ParallelLoader:
    """A file-like sink: ``write`` the dump, then ``finish`` (or ``abort``)."""

    def __init__(self, client_argv: Sequence[str], spool_dir: str, workers: int) -> None:
        self.client_argv = list(client_argv)
        Path(spool_dir).mkdir(parents=True, exist_ok=True)
        self.spool = Path(tempfile.mkdtemp(prefix="load-", dir=spool_dir))
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers))
        self.jobs: list[Future[None]] = []
        self.preamble = b""
        self.head = b""
        self.mode = "preamble"
        self.database = b""
        self.table: _Section | None = None
        self.tail: IO[bytes] | None = None
        self.tail_database = b""
        self.carry = b""
        self.sections = 0

    def write(self, chunk: bytes) -> int:
        data = self.carry + chunk
        cut = data.rfind(b"\n") + 1  # markers are whole lines: keep a partial line back
        self.carry = data[cut:]
        self._route(data[:cut])
        return len(chunk)

    def _route(self, data: bytes) -> None:
        if b"\n-- " not in data and not data.startswith(b"-- "):
            self._emit(data)  # most chunks are table data: skip the marker search
            return
        start = 0
        for match in _MARKER.finditer(data):
            self._emit(data[start : match.start()])
            self._switch(match)
            start = match.start()
        self._emit(data[start:])

    def _switch(self, match: re.Match[bytes]) -> None:
        self._close_section()
        if match.group(2) is not None:
            self.mode, self.database = "head", match.group(2)
        elif match.group(1).startswith(b"Table structure"):
            self.mode = "table"
            self.sections += 1
            self.table = _Section(self.spool / f"table-{self.sections:05d}.sql")
            self.table.file.write(self.preamble + b"USE `" + self.database + b"`;\n")
            self.jobs.append(self.pool.submit(self._load, self.table))
        else:
            self.mode = "tail"

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        if self.mode == "preamble":
            self.preamble += data
        elif self.mode == "head":
            self.head += data
        elif self.mode == "table":
            assert self.table is not None
            self.table.file.write(data)
        else:
            if self.tail is None:
                self.tail = open(self.spool / "tail.sql", "wb")  # noqa: SIM115
                self.tail.write(self.preamble)
            if self.tail_database != self.database:
                self.tail.write(b"USE `" + self.database + b"`;\n")
                self.tail_database = self.database
            self.tail.write(data)

    def _close_section(self) -> None:
        """Run a finished head now; mark a table section complete for its loader."""
        if self.mode == "head" and self.head:
            execute.run(self.client_argv, input_data=self.preamble + self.head)
            self.head = b""
        elif self.mode == "table" and self.table is not None:
            self.table.complete()
            self.table = None

    def _load(self, section: _Section) -> None:
        """Feed one section to a client, following its file until it is complete."""
        client = execute.Process(self.client_argv, stdin=execute.PIPE)
        assert client.popen.stdin is not None
        try:
            with section.path.open("rb") as source:
                while True:
                    finished = section.done.is_set()  # read before the data it promises
                    chunk = source.read(1 << 20)
                    if chunk:
                        client.popen.stdin.write(chunk)
                    elif finished:
                        break
                    else:
                        section.done.wait(FOLLOW_POLL)
        except BrokenPipeError:
            pass  # the client stopped reading: its exit code says why
        finally:
            with contextlib.suppress(BrokenPipeError):
                client.popen.stdin.close()
        client.check()
        section.path.unlink()

    def _wait_jobs(self) -> None:
        jobs, self.jobs = self.jobs, []
        for job in jobs:
            job.result()  # re-raises the first load error

    def finish(self) -> None:
        """Load what is left: the last section, the table queue, then the tail."""
        self._route(self.carry)
        self.carry = b""
        if self.mode == "preamble":  # no sections at all: load serially
            self.mode, self.head = "head", self.preamble
            self.preamble = b""
        self._close_section()
        self._wait_jobs()
        if self.tail is not None:
            self.tail.close()
            with open(self.tail.name, "rb") as source:
                execute.Process(self.client_argv, stdin=source).check()
        self.close()

    def close(self) -> None:
        """Stop the pool and remove the spool (also after a failure)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.table is not None:
            self.table.complete()  # lets a loader still following it finish
        if self.tail is not None and not self.tail.closed:
            self.tail.close()
        shutil.rmtree(self.spool, ignore_errors=True)
