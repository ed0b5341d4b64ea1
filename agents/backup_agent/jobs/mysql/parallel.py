"""Load a logical dump into a server with its tables in parallel.

The dump is read once, in stream order, and split at the section comments that
mysqldump and mariadb-dump write (``-- Table structure for table `t```, ...):

- the preamble (session settings: character set, time zone, checks off) is put in
  front of every part, so each part runs like the original session;
- a database's head (``CREATE DATABASE``, ``USE``) runs at once, in order;
- each table section (structure, data, triggers) is spooled to a file of its own and
  loaded by a pool of client processes that follow the file as it grows, so a table
  starts loading as soon as it starts arriving, while the stream goes on;
- a table section that ``split.plan`` understands loads its rows in parallel too: its
  structure runs at once, its ``INSERT`` statements go in blocks of about ``BLOCK``
  bytes (whole statements) to the pool, and what follows them (with the secondary keys
  added back) runs once every block is loaded (``_Split``);
- everything else after a database's tables (views, events, routines) is collected
  in order and runs last, once every table is loaded.

Memory stays constant; the spool takes about as much scratch disk as the dump.
A dump without these comments ends up entirely in the preamble and loads serially.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO

from backup_agent import execute
from backup_agent.jobs.mysql import split

_MARKER = re.compile(
    rb"^-- (Current Database: `((?:[^`]|``)+)`|Table structure for table "
    rb"|Temporary (?:table|view) structure for view |Dumping events for database "
    rb"|Dumping routines for database |Final view structure for view )",
    re.MULTILINE,
)


FOLLOW_POLL = 0.05  # seconds between looks at a section file that is still growing
BLOCK = 16 << 20  # bytes of INSERT statements per block of a table loading in blocks
HEAD_LIMIT = 1 << 20  # bytes of a table section read for its first INSERT, at most
MAX_STATEMENT = 16 << 20  # a longer INSERT (mariadb-dump writes none) goes to the rest
_FIRST_INSERT = re.compile(rb"^INSERT ", re.MULTILINE)


class _Section:
    """A table section being spooled; ``done`` is set once it is complete on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: IO[bytes] = path.open("wb")
        self.done = threading.Event()

    def complete(self) -> None:
        self.file.close()
        self.done.set()


class _Split:
    """A table section loading in blocks (``split.Plan``): its whole INSERT statements
    go to block files loaded at once by the pool; from the first other statement on,
    the section goes to the rest, loaded after every block."""

    def __init__(self, loader: ParallelLoader, plan: split.Plan, prefix: bytes) -> None:
        self.loader = loader
        self.plan = plan
        self.prefix = prefix  # the preamble and USE: each part runs like the original session
        self.pending = b""  # the start of a statement not read whole yet
        self.block: IO[bytes] | None = None
        self.blocks: list[Future[None]] = []
        self.rest: IO[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self.rest is not None:
            self.rest.write(data)
            return
        searched = max(0, len(self.pending) - 1)  # the pending part holds no ";\n"
        data = self.pending + data if self.pending else data
        pos = 0
        while pos < len(data):
            if not data.startswith(self.plan.insert, pos):
                self._to_rest(data[pos:])
                return
            end = data.find(b";\n", max(pos, searched)) + 2
            if end == 1:
                break
            if not self.plan.statement.fullmatch(data, pos, end):
                self._to_rest(data[pos:])
                return
            self._add(data[pos:end])
            pos = end
        self.pending = data[pos:]
        if len(self.pending) > MAX_STATEMENT:
            self._to_rest(self.pending)

    def _add(self, statement: bytes) -> None:
        """Add a statement to the open block; hand the block to the pool once it is full."""
        if self.block is None:
            self.loader.parts += 1
            self.block = (self.loader.spool / f"block-{self.loader.parts:05d}.sql").open("wb")
            self.block.write(self.prefix)
        self.block.write(statement)
        if self.block.tell() >= BLOCK:
            self._submit_block()

    def _submit_block(self) -> None:
        if self.block is not None:
            self.block.close()
            self.blocks.append(self.loader.pool.submit(self.loader.load_file, self.block.name))
            self.block = None

    def _to_rest(self, data: bytes) -> None:
        """From here on the section goes to the rest, in order."""
        self._submit_block()
        self.pending = b""
        self.loader.parts += 1
        self.rest = (self.loader.spool / f"rest-{self.loader.parts:05d}.sql").open("wb")
        self.rest.write(self.prefix + self.plan.rest)
        self.rest.write(data)

    def complete(self) -> Future[None]:
        """The section is complete: the job that loads the rest after every block."""
        if self.rest is None:
            self._to_rest(self.pending)
        assert self.rest is not None
        self.rest.close()
        return self.loader.pool.submit(self._load_rest, self.blocks, self.rest.name)

    def _load_rest(self, blocks: list[Future[None]], path: str) -> None:
        for block in blocks:
            block.result()  # a failed block fails the table before its rest runs
        self.loader.load_file(path)

    def abandon(self) -> None:
        """Close what is open (a failed or stopped load)."""
        for file in (self.block, self.rest):
            if file is not None:
                file.close()


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
        self.table_head = b""  # a table section until its first INSERT
        self.table: _Section | None = None
        self.split: _Split | None = None
        self.tail: IO[bytes] | None = None
        self.tail_database = b""
        self.carry = b""
        self.parts = 0

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
            self._table(data)
        else:
            if self.tail is None:
                self.tail = open(self.spool / "tail.sql", "wb")  # noqa: SIM115
                self.tail.write(self.preamble)
            if self.tail_database != self.database:
                self.tail.write(b"USE `" + self.database + b"`;\n")
                self.tail_database = self.database
            self.tail.write(data)

    def _prefix(self) -> bytes:
        return self.preamble + b"USE `" + self.database + b"`;\n"

    def _table(self, data: bytes) -> None:
        """A table section: held until its first INSERT shows whether it loads in blocks."""
        if self.split is not None:
            self.split.write(data)
        elif self.table is not None:
            self.table.file.write(data)
        else:
            self.table_head += data
            first = _FIRST_INSERT.search(self.table_head)
            if first is None and len(self.table_head) <= HEAD_LIMIT:
                return
            held, self.table_head = self.table_head, b""
            rows = first.start() if first else len(held)
            plan = split.plan(held[:rows]) if first else None
            if plan is None:
                self._serial_table(held)
                return
            execute.run(self.client_argv, input_data=self._prefix() + plan.structure)
            self.split = _Split(self, plan, self._prefix())
            self.split.write(held[rows:])

    def _serial_table(self, data: bytes) -> None:
        """Load the table section serially, following its file as it is spooled."""
        self.parts += 1
        self.table = _Section(self.spool / f"table-{self.parts:05d}.sql")
        self.table.file.write(self._prefix() + data)
        self.jobs.append(self.pool.submit(self._follow, self.table))

    def _close_section(self) -> None:
        """Run a finished head now; mark a table section complete for its loader."""
        if self.mode == "head" and self.head:
            execute.run(self.client_argv, input_data=self.preamble + self.head)
            self.head = b""
        elif self.mode == "table":
            if self.table_head:  # no INSERT: a table without rows
                self._serial_table(self.table_head)
                self.table_head = b""
            if self.table is not None:
                self.table.complete()
                self.table = None
            if self.split is not None:
                self.jobs.append(self.split.complete())
                self.split = None

    def _follow(self, section: _Section) -> None:
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

    def load_file(self, path: str) -> None:
        """Load a complete part with one client; remove it."""
        with open(path, "rb") as source:
            execute.Process(self.client_argv, stdin=source).check()
        os.unlink(path)

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
            self.load_file(self.tail.name)
        self.close()

    def close(self) -> None:
        """Stop the pool and remove the spool (also after a failure)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.table is not None:
            self.table.complete()  # lets a loader still following it finish
        if self.split is not None:
            self.split.abandon()
        if self.tail is not None and not self.tail.closed:
            self.tail.close()
        shutil.rmtree(self.spool, ignore_errors=True)
