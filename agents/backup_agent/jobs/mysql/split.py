"""Which table sections of a dump may load their rows in several sessions at once.

A table section as mariadb-dump writes it (``parallel`` cuts the dump there)::

    -- Table structure for table `t`
    --

    DROP TABLE IF EXISTS `t`;
    /*!40101 SET @saved_cs_client     = @@character_set_client */;
    /*!40101 SET character_set_client = utf8mb4 */;
    CREATE TABLE `t` (
      `id` int(11) NOT NULL AUTO_INCREMENT,
      ...
      PRIMARY KEY (`id`),
      UNIQUE KEY `u` (`u`),
      KEY `k` (`k`)
    ) ENGINE=InnoDB ...;
    /*!40101 SET character_set_client = @saved_cs_client */;

    --
    -- Dumping data for table `t`
    --

    LOCK TABLES `t` WRITE;
    /*!40000 ALTER TABLE `t` DISABLE KEYS */;
    INSERT INTO `t` VALUES (...),(...);
    ...
    /*!40000 ALTER TABLE `t` ENABLE KEYS */;
    UNLOCK TABLES;
    (the table's triggers)

``plan`` reads a section's head, everything before its first ``INSERT``. Only a head
of exactly this shape gets a plan: an InnoDB table with a primary key, whose column,
key and option lines are each of a form matched here whole (so that no string or
comment spans lines). Any other section loads serially, as the dump says.

An ``INSERT`` of such a table whose rows hold only literals (numbers, strings, hex,
bits, NULL; the auto-increment column, if any, must be the first one and a positive
integer) does the same whatever session runs it and in whatever order: no value is
computed, generated or read from the session. Those statements may be loaded in
blocks by several sessions at once. The plan says what runs around them:

- ``structure``, once, before the rows: the head's statements but the lock, with the
  secondary keys (``UNIQUE KEY``, ``KEY``) left out of the ``CREATE TABLE``: building
  them once at the end by sorting is faster than updating them row by row;
- ``rest``, once, after all rows: one ``ALTER TABLE`` adding those keys back, verbatim
  and in their order, so that ``SHOW CREATE TABLE`` is the serial load's; then the
  head's statements but ``DROP`` and ``CREATE`` (the session state, and the table lock,
  that a serial load has at this point); then what the section holds from the first
  statement that is not such an ``INSERT`` on (``ENABLE KEYS``, ``UNLOCK TABLES``,
  triggers).

Rows that would break a unique key fail the ``ALTER TABLE``, so the load fails; a
serial load under the dump's ``UNIQUE_CHECKS=0`` might have let them in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = rb"`(?:[^`\n]|``)+`"
_STRING = rb"'(?:[^'\\\n]++|\\[^\n])*+'"
_HEAD = re.compile(
    rb"-- Table structure for table (?P<name>" + _NAME + rb")\n--\n\n"
    rb"(?P<drop>DROP TABLE IF EXISTS (?P=name);\n)"
    rb"(?P<save>/\*!40101 SET @saved_cs_client     = @@character_set_client \*/;\n)"
    rb"(?P<charset>/\*!40101 SET character_set_client = \w+ \*/;\n)"
    rb"CREATE TABLE (?P=name) \(\n(?P<body>(?:  [^\n]*\n)+)\) (?P<options>ENGINE=InnoDB[^\n]*);\n"
    rb"(?P<restore>/\*!40101 SET character_set_client = @saved_cs_client \*/;\n)"
    rb"\n--\n-- Dumping data for table (?P=name)\n--\n\n"
    rb"(?P<lock>LOCK TABLES (?P=name) WRITE;\n)?"
    rb"(?P<disable>/\*!40000 ALTER TABLE (?P=name) DISABLE KEYS \*/;\n)?"
)
_OPTIONS = re.compile(
    rb"ENGINE=InnoDB(?: (?:[A-Z_]+=\w+|DEFAULT CHARSET=\w+|COMMENT=" + _STRING + rb"))*"
)
_PARTS = rb"\((?:" + _NAME + rb"(?:\(\d+\))?(?: DESC)?,)*" + _NAME + rb"(?:\(\d+\))?(?: DESC)?\)"
_PRIMARY = re.compile(rb"  PRIMARY KEY " + _PARTS + rb",?\n")
_KEY = re.compile(rb"  (?P<key>(?:UNIQUE )?KEY " + _NAME + rb" " + _PARTS + rb"),?\n")
# A column as SHOW CREATE TABLE writes it, with only attributes that do not compute a
# stored value from anything but the row (no generated, invisible or system columns).
_TYPE = rb"[a-z]+(?:\((?:\d+(?:,\d+)?|" + _STRING + rb"(?:," + _STRING + rb")*)\))?"
_ATTRIBUTE = (
    rb" (?:unsigned|zerofill|NOT NULL|NULL|CHARACTER SET \w+|COLLATE \w+|AUTO_INCREMENT"
    rb"|DEFAULT (?:NULL|-?[\d.]+|" + _STRING + rb"|current_timestamp\(\d?\))"
    rb"|ON UPDATE current_timestamp\(\d?\)|COMMENT " + _STRING
    + rb"|CHECK \(json_valid\(" + _NAME + rb"\)\))"
)  # fmt: skip
_COLUMN = re.compile(rb"  " + _NAME + rb" " + _TYPE + rb"(?:" + _ATTRIBUTE + rb")*,?\n")
# The inside of a row: literals (numbers, hex, bits, NULL, strings, ``_binary`` strings);
# outside strings no parenthesis, blank, ``@`` or letter beyond hex digits, x and NULL, so
# at most arithmetic on literals or a name of the row's own column: nothing that reads
# the session or other rows, or calls a function.
_VALUES = rb"(?:[-0-9A-Fa-fxNUL.+,]++|" + _STRING + rb"|_binary " + _STRING + rb")*+"
_EXPLICIT = rb"[1-9]\d*+(?=[,)])"  # a value the auto-increment column takes as given


@dataclass(frozen=True)
class Plan:
    """How one table section loads: ``structure`` once, then the statements that
    ``statement`` matches whole (in any sessions and order), then ``rest``."""

    insert: bytes  # how each of the table's INSERT statements starts
    structure: bytes
    statement: re.Pattern[bytes]
    rest: bytes


def plan(head: bytes) -> Plan | None:
    """The plan for a table section whose head is ``head``; None: load it serially."""
    match = _HEAD.fullmatch(head)
    if match is None or not _OPTIONS.fullmatch(match["options"]):
        return None
    columns: list[bytes] = []
    keys: list[bytes] = []
    kept: list[bytes] = []
    primary = False
    for line in match["body"].splitlines(keepends=True):
        key = _KEY.fullmatch(line)
        if key:
            keys.append(key["key"])
        elif _PRIMARY.fullmatch(line):
            primary = True
            kept.append(line)
        elif _COLUMN.fullmatch(line) and not keys and not primary:
            columns.append(line)
            kept.append(line)
        else:
            return None
    if not primary:
        return None
    automatic = [index for index, line in enumerate(columns) if _is_auto_increment(line)]
    if automatic not in ([], [0]):
        return None
    name = match["name"]
    kept[-1] = kept[-1].rstrip(b",\n") + b"\n"
    create = b"CREATE TABLE " + name + b" (\n" + b"".join(kept) + b") " + match["options"] + b";\n"
    structure = match["drop"] + match["save"] + match["charset"] + create + match["restore"]
    add_keys = b""
    if keys:
        add_keys = b"ALTER TABLE " + name + b" " + b", ".join(b"ADD " + k for k in keys) + b";\n"
    session = match["save"] + match["charset"] + match["restore"]
    session += (match["lock"] or b"") + (match["disable"] or b"")
    insert = b"INSERT INTO " + name + b" VALUES"
    return Plan(insert, structure, _statement(insert, bool(automatic)), add_keys + session)


def _is_auto_increment(column: bytes) -> bool:
    """Whether a column line (matched by ``_COLUMN``) says AUTO_INCREMENT outside strings."""
    return b" AUTO_INCREMENT" in re.sub(_STRING, b"''", column)


def _statement(insert: bytes, automatic: bool) -> re.Pattern[bytes]:
    """One whole ``INSERT`` of literal rows, to its ``;\\n``; with
    ``automatic``, each row's first value must be an ``_EXPLICIT`` one."""
    row = rb"\(" + (_EXPLICIT if automatic else b"") + _VALUES + rb"\)"
    return re.compile(re.escape(insert) + rb"[ \n]" + row + rb"(?:,\n?" + row + rb")*+;\n")
