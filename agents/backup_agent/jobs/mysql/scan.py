"""Follow a mysqldump / mariadb-dump stream: count its rows, refuse client commands.

Row counts are read from the dump itself, so they are exactly consistent with it:
an ``INSERT`` whose tuples each sit on a line of their own (mariadb-dump 10.11)
holds one row per line; a statement on one line (Oracle's mysqldump, or one row per
``INSERT``) holds one row more than it has ``),(`` separators outside string
literals. ``CREATE TABLE`` names the tables, so empty tables count 0.

Client commands. The ``mariadb``/``mysql`` client that loads a dump runs commands
of its own before the server sees anything: ``\\!`` starts a shell, ``\\.`` reads a
local file, ``\\r`` connects elsewhere. The scanner reads the dump the way the
client does (``client/mysql.cc``: ``read_and_execute``, ``add_line``,
``find_command``) and ``feed``/``close`` raise ``ClientCommandError`` (one line:
the dump's line number and what was found, never the line itself) on:

- a backslash command outside string literals (every ``\\x`` but ``\\N``, which
  is NULL), also inside ``/*! */`` and ``/*M! */`` comments, which the client reads
  as text; only the sandbox command ``\\-`` on mariadb-dump's first line passes;
- a statement whose first word is a client command name (``system``, ``source``,
  ``connect``..., in any letter case, after blanks and comments): the client runs
  those when they start a line or end at the delimiter;
- ``DELIMITER`` other than the ``DELIMITER ;;``/``DELIMITER ;`` lines (or more
  semicolons, for events) that dumps of routines and triggers write, ``USE``
  other than ``USE `db`;`` lines;
- what would make the client read the rest unlike the scanner: a NUL byte,
  ``--`` followed by neither a blank nor the line end, a ``sql_mode`` change other
  than the literal ``SET`` statements dumps write, ``PREPARE``/``EXECUTE`` outside
  ``CREATE`` statements.

Strings and comments are followed as the client follows them: ``'``, ``"`` and
backquoted strings (backslash escapes, except in backquotes, in any string under
``NO_BACKSLASH_ESCAPES`` and in ``"`` strings under ``ANSI_QUOTES``: both modes are
tracked through the dump's ``SET sql_mode`` statements), ``#`` and ``-- ``
comments to the end of the line, ``/* */`` comments across lines (with the
client's quirks around ``/*!``), ``\\r\\n`` line ends, a byte order mark. This
assumes what the loading code provides: the client reads the dump in batch mode,
without ``--comments`` or ``--named-commands``, with an ASCII-compatible character
set, from a server whose global ``sql_mode`` has neither mode. A routine body
copied verbatim into the dump is read like any other text; one statement that
changes ``sql_mode`` hidden behind another inside a ``CREATE`` under a custom
delimiter is not followed (the client's ``--binary-mode`` is the backstop).

Rows of an ``INSERT`` that starts a statement are read one of two ways:

- exactly (the default; restores and drills, where the dump is hostile input):
  every line is lexed, runs of ordinary row lines by one regular expression;
- ``trusted_rows=True`` (backups, whose stream comes from mariadb-dump): row data
  is escaped by the dump tool, so no row line can hold a command or a string that
  spans lines; lines are counted with ``bytes.count`` up to the one that ends the
  statement. Everything else (DDL, routine and trigger bodies, which dumps copy
  verbatim from the server) is still read exactly.

Memory stays constant: only the last, incomplete line is carried between chunks
(``pending`` says how long it is, so a pump can hold it back from the client).
"""

from __future__ import annotations

import re
from collections import defaultdict

from backup_agent.errors import BackupError

# Long names of the client's commands (client/mysql.cc, commands[]).
COMMANDS = (
    "?", "charset", "clear", "connect", "delimiter", "edit", "ego", "exit", "go", "help",
    "nopager", "notee", "nowarning", "pager", "print", "prompt", "quit", "rehash",
    "sandbox", "source", "status", "system", "tee", "use", "warnings",
)  # fmt: skip
MAX_STATEMENT = 1 << 16  # bytes of a non-INSERT statement kept for the checks at its end
_BLANK = b" \t\r\x0b\x0c"


def _spelling(name: str) -> bytes:
    """How the client matches a command name: latin1_swedish_ci, so any case, and a
    byte above 0x7f may fold to any letter; leading such bytes may be blanks."""
    letters = b"".join(b"[" + re.escape(c.lower().encode() + c.upper().encode()) + rb"\x80-\xff]"
                       for c in name)  # fmt: skip
    return rb"[\x80-\xff]*?" + letters


_COMMAND_NAMES = {name: re.compile(_spelling(name)) for name in COMMANDS}
_COMMAND_WORD = re.compile(b"|".join(_spelling(name) for name in COMMANDS))
_WORD = re.compile(rb"[A-Za-z_?\x80-\xff]*")
_NAME = rb"`((?:[^`\n]|``)+)`"
_USE = re.compile(rb"USE " + _NAME + rb";[ \t\r]*\n")
_DELIMITER = re.compile(rb"DELIMITER (;+)\r?\n")
_CREATE_TABLE = re.compile(rb"CREATE TABLE (?:IF NOT EXISTS )?" + _NAME)
_INSERT = re.compile(
    rb"(?:INSERT(?: IGNORE)?|REPLACE) INTO " + _NAME
    + rb" (?:\((?:[^()`]|`(?:[^`]|``)*`)*\) )?VALUES(?=[ \n\r])"
)  # fmt: skip
_STATEMENT_END = re.compile(rb";\n")  # found faster by re than by bytes.find
_STRING = re.compile(rb"'(?:[^'\\]++|\\.)*+'")
# Where the client's reading can change: outside strings, and inside /* */.
_SPECIAL = re.compile(rb"""[-'"`\\#;/*]""")
_IN_COMMENT = re.compile(rb"[*/]")
# Text that leaves the client outside strings and comments, before any delimiter
# (default sql_mode, delimiter ';'); whole lines of it are the bulk of row data.
_TOKENS = (
    rb"""[^-'"`\\#;/\n]++|'(?:[^'\\\n]++|\\[^\n\r])*+'|"(?:[^"\\\n]++|\\[^\n\r])*+\""""
    rb"""|`[^`\n]*+`|-(?!-)|/(?!\*)"""
)
_PLAIN_TEXT = re.compile(rb"(?:" + _TOKENS + rb")*+")
_PLAIN_LINES = re.compile(rb"(?:(?:" + _TOKENS + rb")*+\n)++")
# What a statement's text is checked for when it ends.
_LEAD = re.compile(rb"\s*(?:/\*M?!\d*\s*)?([A-Za-z]*)")
# String literals and quoted names, by (NO_BACKSLASH_ESCAPES, ANSI_QUOTES).
_ESCAPED = {True: rb"(?:[^{q}\\]|\\.)*", False: rb"[^{q}]*"}
_QUOTED = {
    (no_backslash, ansi): re.compile(
        rb"`(?:[^`]|``)*`|'"
        + _ESCAPED[not no_backslash].replace(b"{q}", b"'")
        + b"'|\""
        + _ESCAPED[not (no_backslash or ansi)].replace(b"{q}", b'"')
        + rb'"',
        re.S,
    )
    for no_backslash in (False, True)
    for ansi in (False, True)
}
_SQL_MODE = re.compile(rb"sql_mode", re.I)
_DYNAMIC = re.compile(rb"\b(?:EXECUTE|PREPARE)\b", re.I)
_SET = re.compile(rb"\s*(?:/\*M?!\d*\s*)?SET\s+(.*?)\s*(?:\*/\s*)?\Z", re.I | re.S)
_ASSIGNMENT = re.compile(
    rb"(@{0,2}(?:session\.)?[\w$]+)\s*:?=\s*('(?:[^'\\]|\\.)*'|@{1,2}[\w$.]+)\s*(?:,\s*|\Z)", re.I
)
_ANSI_QUOTES = {b"ANSI_QUOTES", b"ANSI", b"DB2", b"MAXDB", b"MSSQL", b"ORACLE", b"POSTGRESQL"}
_MODE_NAMES = (b"sql_mode", b"@@sql_mode", b"@@session.sql_mode")


class ClientCommandError(BackupError):
    """The dump holds something the client would act on itself, or read unlike us."""

    reason = "client_command"

    def __init__(self, line: int, what: str) -> None:
        self.line = line
        self.what = what
        super().__init__(f"dump line {line}: refused: {what}")


def _show(data: bytes) -> str:
    """A few attacker-controlled bytes, printable."""
    return "".join(chr(b) if 0x20 < b < 0x7F else f"\\x{b:02x}" for b in data[:8])


class DumpScanner:
    """Feed chunks in stream order; ``close`` returns ``{database: {table: rows}}``."""

    def __init__(self, trusted_rows: bool = False) -> None:
        self.trusted_rows = trusted_rows
        self.rows: dict[tuple[str, str], int] = defaultdict(int)
        self._partial: list[bytes] = []
        self._line = 0  # number of the line being read (1-based), or of the last one read
        self._database = ""
        # The client's reading state.
        self._delimiter = b";"
        self._quote = 0  # the quote byte of the string we are in, or 0
        self._comment = False  # inside /* */
        self._empty = True  # the statement has no text yet, only blanks and comments
        self._no_backslash = False  # sql_mode NO_BACKSLASH_ESCAPES
        self._ansi = False  # sql_mode ANSI_QUOTES
        self._saved: dict[bytes, tuple[bool, bool] | None] = {}
        # Text of the current statement (None: not kept), and where it goes on in the line.
        self._text: bytearray | None = None
        self._text_from = 0
        # The INSERT being read: its table, its lines after the first, and what
        # followed VALUES on the first.
        self._insert: tuple[str, str] | None = None
        self._insert_lines = 0
        self._insert_first = b""

    @property
    def pending(self) -> int:
        """Bytes fed but not read yet: the incomplete last line."""
        return sum(map(len, self._partial))

    def feed(self, chunk: bytes) -> None:
        if b"\0" in chunk:
            line = self._line + 1 + chunk.count(b"\n", 0, chunk.index(b"\0"))
            raise ClientCommandError(line, "NUL byte")
        first = chunk.find(b"\n") + 1
        if not first:
            self._partial.append(chunk)
            return
        if self._partial:  # join the carried line with its end; the rest is read in place
            head = b"".join(self._partial) + chunk[:first]
            self._partial = []
            self._scan(head, 0, len(head))
        else:
            first = 0
        end = chunk.rfind(b"\n") + 1
        self._scan(chunk, first, end)
        if end < len(chunk):
            self._partial.append(chunk[end:])

    def close(self) -> dict[str, dict[str, int]]:
        """Read the last line; return the row counts per database and table.

        Calling it again returns the same counts.
        """
        if self._partial:  # the client reads a last line without newline too
            last = b"".join(self._partial) + b"\n"
            self._partial = []
            self._scan(last, 0, len(last))
        if self._insert is not None:
            self._end_insert(b"")
        counts: dict[str, dict[str, int]] = {}
        for (database, table), rows in self.rows.items():
            counts.setdefault(database, {})[table] = rows
        return counts

    def _scan(self, data: bytes, pos: int, end: int) -> None:
        """Read the complete lines of ``data[pos:end]``."""
        while pos < end:
            if self._insert is not None and self.trusted_rows:
                pos = self._count_rows(data, pos, end)
            elif self._plain_lines_possible():
                match = _PLAIN_LINES.match(data, pos, end)
                if match:
                    lines = data.count(b"\n", pos, match.end())
                    self._line += lines
                    self._insert_lines += lines
                    if self._text is not None:
                        self._keep(data[pos : match.end()])
                    pos = match.end()
                    continue
            if pos < end:
                newline = data.index(b"\n", pos, end)
                self._line += 1
                self._insert_lines += 1
                self._read_line(data, pos, newline)
                pos = newline + 1

    def _plain_lines_possible(self) -> bool:
        return not (
            self._empty or self._quote or self._comment or self._no_backslash or self._ansi
        ) and (self._delimiter == b";")

    def _count_rows(self, data: bytes, pos: int, end: int) -> int:
        """Trusted rows: count lines up to the one ending the statement with ``;``."""
        found = _STATEMENT_END.search(data, pos, end)
        last = found.end() if found else 0
        stop = last or end
        lines = data.count(b"\n", pos, stop)
        self._line += lines
        self._insert_lines += lines
        if last:
            self._end_insert(b";")
            self._empty = True
        return stop

    def _read_line(self, data: bytes, start: int, newline: int) -> None:
        """One line, the way ``add_line`` reads it (its ss_comment is per line too)."""
        end = newline - 1 if newline > start and data[newline - 1] == 0x0D else newline
        if self._line == 1 and data.startswith(b"\xef\xbb\xbf", start):
            start += 3  # the client skips a UTF-8 byte order mark
        self._text_from = start
        pos = start
        executable = False  # inside /*! */ on this line
        while pos < end:
            if self._comment:
                pos, executable = self._in_comment(data, pos, end, executable)
            elif self._quote:
                pos = self._in_string(data, pos, end)
            elif self._empty and not self._comment_starts(data, pos, end):
                pos = self._skip_blanks(data, pos, end)
                if pos < end and data[pos] == 0x5C and data[pos + 1 : pos + 2] != b"N":
                    # A backslash command adds nothing to the statement: still empty.
                    pos, executable = self._special(data, pos, end, executable)
                elif pos < end and not self._comment_starts(data, pos, end):
                    pos = self._start_statement(data, start, pos, end, newline)
            else:
                if not executable and self._plain_lines_possible():
                    plain = _PLAIN_TEXT.match(data, pos, end)
                    assert plain is not None
                    pos = plain.end()
                match = _SPECIAL.search(data, pos, end)
                if not match:
                    break
                pos, executable = self._special(data, match.start(), end, executable)
        if self._text is not None:
            self._keep(data[self._text_from : end] + b"\n")

    def _comment_starts(self, data: bytes, pos: int, end: int) -> bool:
        """A comment the client drops (not ``/*!``/``/*M!``, which it reads as text)."""
        if data.startswith((b"#", b"--"), pos, end):
            return True
        return data.startswith(b"/*", pos, end) and not data.startswith((b"/*!", b"/*M!"), pos)

    @staticmethod
    def _skip_blanks(data: bytes, pos: int, end: int) -> int:
        while pos < end and data[pos] in _BLANK:
            pos += 1
        return pos

    def _in_comment(self, data: bytes, pos: int, end: int, executable: bool) -> tuple[int, bool]:
        match = _IN_COMMENT.search(data, pos, end)
        if not match:
            return end, executable
        pos = match.start()
        if data.startswith(b"/*!", pos):
            return pos + 1, True  # the client's ss_comment, even inside a comment
        if data.startswith(b"/*", pos) and not data.startswith(b"/*M!", pos):
            return pos + 2, executable
        if data.startswith(b"*/", pos):
            if executable:
                return pos + 1, False  # this */ closes the /*!, not the comment
            self._comment = False
            return pos + 2, executable
        return pos + 1, executable

    def _in_string(self, data: bytes, pos: int, end: int) -> int:
        quote = bytes((self._quote,))
        escapes = not (
            self._quote == 0x60 or self._no_backslash or (self._quote == 0x22 and self._ansi)
        )
        while True:
            closing = data.find(quote, pos, end)
            if escapes:
                backslash = data.find(b"\\", pos, closing if closing >= 0 else end)
                if backslash >= 0:
                    pos = backslash + 2  # skip the escaped byte (or the line end)
                    if pos >= end:
                        return end
                    continue
            if closing < 0:
                return end  # the string goes on on the next line
            self._quote = 0
            return closing + 1

    def _special(self, data: bytes, pos: int, end: int, executable: bool) -> tuple[int, bool]:
        """The byte at ``pos`` may change the reading (see ``_SPECIAL``)."""
        char = data[pos]
        if char == 0x5C:  # backslash
            if pos + 1 >= end:
                return end, executable  # the client drops a backslash ending a line
            command = data[pos + 1 : pos + 2]
            if not (command == b"N" or (command == b"-" and self._line == 1)):
                raise ClientCommandError(self._line, f"client command '\\{_show(command)}'")
            return pos + 2, executable
        if data.startswith(self._delimiter, pos):
            self._end_statement(data, pos)
            self._text_from = pos + len(self._delimiter)
            return pos + len(self._delimiter), executable
        if char == 0x23:  # '#': comment to the end of the line
            return end, executable
        if char == 0x2D:  # '-'
            if not data.startswith(b"--", pos):
                return pos + 1, executable
            after = data[pos + 2 : min(pos + 3, end)]
            if after and after not in _BLANK:
                raise ClientCommandError(self._line, f"'--{_show(after)}', read as comment or not")
            return end, executable
        if char == 0x2F:  # '/'
            if data.startswith(b"/*!", pos):
                return pos + 1, True
            if data.startswith(b"/*", pos) and not data.startswith(b"/*M!", pos):
                self._comment = True
                return pos + 2, executable
            return pos + 1, executable
        if char == 0x2A:  # '*'
            return pos + 1, executable and not data.startswith(b"*/", pos)
        if char in b"'\"`":
            self._quote = char
        return pos + 1, executable

    def _start_statement(self, data: bytes, line: int, pos: int, end: int, newline: int) -> int:
        """A statement's first text is at ``pos``: check its first word.

        Returns where reading goes on: past the line for a command that takes it.
        """
        self._empty = False
        at_line_start = not data[line:pos].strip(_BLANK)
        if at_line_start and data.startswith(b"DELIMITER ", pos):
            match = _DELIMITER.match(data, pos, newline + 1)
            if not match:
                raise ClientCommandError(self._line, "DELIMITER other than semicolons")
            self._delimiter = match.group(1)
            self._empty = True
            return end
        if at_line_start and data.startswith(b"USE ", pos):
            match = _USE.match(data, pos, newline + 1)
            if not match:
                raise ClientCommandError(self._line, "USE other than 'USE `db`;'")
            self._database = _name(match.group(1))
            self._empty = True
            return end
        word = _WORD.match(data, pos, end)
        assert word is not None
        if _COMMAND_WORD.fullmatch(word.group()):
            raise ClientCommandError(self._line, f"client command {_command(word.group())!r}")
        insert = _INSERT.match(data, pos, newline + 1)
        if insert:
            self._insert = self._key(insert.group(1))
            self._insert_lines = 0
            self._insert_first = data[insert.end() : end]
            self.rows[self._insert] += 0
            if self.trusted_rows:  # the rest of the line is row data
                if self._insert_first.rstrip().endswith(b";"):
                    self._end_insert(b";")
                    self._empty = True
                return end
            if self._delimiter == b";":
                return pos  # with ';' it is one INSERT: nothing to check at its end
        else:
            table = _CREATE_TABLE.match(data, pos, end)
            if table:
                self.rows[self._key(table.group(1))] += 0
        self._text = bytearray()
        self._text_from = pos
        return pos

    def _keep(self, text: bytes) -> None:
        assert self._text is not None
        if len(self._text) <= MAX_STATEMENT:
            self._text += text

    def _end_statement(self, data: bytes, pos: int) -> None:
        """The delimiter at ``pos`` ended a statement."""
        self._empty = True
        if self._text is not None:
            text = bytes(self._text) + data[self._text_from : pos]
            self._text = None
            self._check_statement(text)
        if self._insert is not None:
            self._end_insert(self._delimiter)

    def _check_statement(self, text: bytes) -> None:
        """What the server will run may change how the client reads what follows."""
        lead = _LEAD.match(text)
        first = lead.group(1).upper() if lead else b""
        if first == b"CREATE":
            return  # routine bodies run later, with their own sql_mode
        if len(text) > MAX_STATEMENT:
            raise ClientCommandError(self._line, "statement too long to check")
        bare = _QUOTED[self._no_backslash, self._ansi].sub(b"''", text)
        if _DYNAMIC.search(bare):
            raise ClientCommandError(self._line, "PREPARE/EXECUTE outside CREATE")
        if _SQL_MODE.search(bare):
            self._follow_sql_mode(text if first == b"SET" else b"")

    def _follow_sql_mode(self, text: bytes) -> None:
        """Follow the ``SET ... sql_mode = '...'`` forms dumps write; refuse the rest."""
        match = _SET.match(text)
        body, pos = (match.group(1), 0) if match else (b"", -1)
        while 0 <= pos < len(body):
            assignment = _ASSIGNMENT.match(body, pos)
            if not assignment:
                break
            self._assign(assignment.group(1).lower(), assignment.group(2))
            pos = assignment.end()
        if pos != len(body) or not body:
            raise ClientCommandError(self._line, "sql_mode change the scanner cannot follow")

    def _assign(self, target: bytes, value: bytes) -> None:
        mode: tuple[bool, bool] | None
        if value.startswith(b"'"):
            words = {word.strip().upper() for word in value[1:-1].split(b",")}
            mode = (b"NO_BACKSLASH_ESCAPES" in words, bool(words & _ANSI_QUOTES))
        elif value.lower() in _MODE_NAMES[1:]:
            mode = (self._no_backslash, self._ansi)
        else:
            mode = self._saved.get(value.lower())
        if target in _MODE_NAMES:
            if mode is None:
                raise ClientCommandError(self._line, "sql_mode change the scanner cannot follow")
            self._no_backslash, self._ansi = mode
        elif target.startswith(b"@") and not target.startswith(b"@@"):
            self._saved[target] = mode
        elif b"sql_mode" in target:
            raise ClientCommandError(self._line, "sql_mode change the scanner cannot follow")

    def _end_insert(self, delimiter: bytes) -> None:
        """Count the rows of the INSERT that just ended."""
        assert self._insert is not None
        table, self._insert = self._insert, None
        if self._insert_lines == 0:  # the whole statement on its first line
            values = self._insert_first.rstrip()
            if delimiter and values.endswith(delimiter):
                values = values[: -len(delimiter)]
            body = _STRING.sub(b"", values) if b"'" in values else values
            self.rows[table] += body.count(b"),(") + (b"(" in body)
        else:  # one row per line; the first line may hold the first one
            self.rows[table] += self._insert_lines + bool(self._insert_first.strip())

    def _key(self, table: bytes) -> tuple[str, str]:
        return self._database, _name(table)


def _command(word: bytes) -> str:
    """The client command a first word stands for (never the dump's own bytes)."""
    return next(name for name, spelled in _COMMAND_NAMES.items() if spelled.fullmatch(word))


def _name(quoted: bytes) -> str:
    return quoted.replace(b"``", b"`").decode("utf-8", errors="replace")
