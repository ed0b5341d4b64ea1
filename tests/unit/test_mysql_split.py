"""Which table sections load their rows in blocks (``split.plan``), and which INSERT
statements may go to a block: only shapes read whole; anything else loads serially."""

from __future__ import annotations

import pytest

from backup_agent.jobs.mysql import split

COLUMNS = (
    b"  `id` int(11) NOT NULL AUTO_INCREMENT,\n"
    b"  `token` char(32) DEFAULT NULL,\n"
    b"  `customer` int(11) DEFAULT NULL COMMENT 'who; KEY `x` (`y`)',\n"
)
KEYS = b"  PRIMARY KEY (`id`),\n  UNIQUE KEY `token` (`token`),\n  KEY `customer` (`customer`)\n"
OPTIONS = b"ENGINE=InnoDB AUTO_INCREMENT=42 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci"


def head(
    columns: bytes = COLUMNS, keys: bytes = KEYS, options: bytes = OPTIONS, lock: bool = True
) -> bytes:
    """A table section's head as mariadb-dump 10.11 writes it."""
    return (
        b"-- Table structure for table `t`\n--\n\n"
        b"DROP TABLE IF EXISTS `t`;\n"
        b"/*!40101 SET @saved_cs_client     = @@character_set_client */;\n"
        b"/*!40101 SET character_set_client = utf8mb4 */;\n"
        b"CREATE TABLE `t` (\n" + columns + keys + b") " + options + b";\n"
        b"/*!40101 SET character_set_client = @saved_cs_client */;\n"
        b"\n--\n-- Dumping data for table `t`\n--\n\n"
        + (b"LOCK TABLES `t` WRITE;\n" if lock else b"")
        + b"/*!40000 ALTER TABLE `t` DISABLE KEYS */;\n"
    )


def test_a_dump_table_gets_a_plan_without_its_secondary_keys() -> None:
    plan = split.plan(head())
    assert plan is not None
    assert plan.insert == b"INSERT INTO `t` VALUES"
    create = plan.structure[plan.structure.index(b"CREATE TABLE") :]
    assert create.startswith(b"CREATE TABLE `t` (\n" + COLUMNS + b"  PRIMARY KEY (`id`)\n) ")
    assert b"KEY `token`" not in plan.structure
    assert b"LOCK TABLES" not in plan.structure  # the blocks' sessions would wait for it
    assert plan.structure.startswith(b"DROP TABLE IF EXISTS `t`;\n")
    # The keys come back in one statement, in their order, before the serial session's state.
    assert plan.rest.startswith(
        b"ALTER TABLE `t` ADD UNIQUE KEY `token` (`token`), ADD KEY `customer` (`customer`);\n"
    )
    assert plan.rest.index(b"@saved_cs_client") < plan.rest.index(b"LOCK TABLES `t` WRITE;\n")
    assert b"CREATE" not in plan.rest and b"DROP" not in plan.rest


def test_a_table_with_only_a_primary_key_adds_nothing_back() -> None:
    plan = split.plan(head(keys=b"  PRIMARY KEY (`id`)\n", lock=False))
    assert plan is not None
    assert b"ALTER TABLE `t` ADD" not in plan.rest
    assert b"LOCK TABLES" not in plan.rest


@pytest.mark.parametrize(
    ("columns", "keys", "options"),
    [
        (COLUMNS, b"  UNIQUE KEY `token` (`token`)\n", OPTIONS),  # no primary key
        (COLUMNS, KEYS, b"ENGINE=MyISAM DEFAULT CHARSET=utf8mb4"),
        (COLUMNS, KEYS, OPTIONS + b" WITH SYSTEM VERSIONING"),
        (COLUMNS, KEYS + b"  FULLTEXT KEY `f` (`token`)\n", OPTIONS),
        (
            COLUMNS,
            KEYS.rstrip(b"\n") + b",\n  CONSTRAINT `c` FOREIGN KEY (`customer`)"
            b" REFERENCES `c` (`id`)\n",
            OPTIONS,
        ),
        (COLUMNS + b"  `g` int(11) GENERATED ALWAYS AS (`id` * 2) VIRTUAL,\n", KEYS, OPTIONS),
        (COLUMNS + b"  `h` int(11) DEFAULT NULL INVISIBLE,\n", KEYS, OPTIONS),
        # A string spanning lines: its second line only looks like a key.
        (COLUMNS + b"  `s` varchar(9) DEFAULT 'a\n  KEY `s` (`s`),\n", KEYS, OPTIONS),
        (COLUMNS + b"  `c` int(11) /* comment */ DEFAULT NULL,\n", KEYS, OPTIONS),
        # The auto-increment column is not the first one.
        (b"  `a` int(11) NOT NULL,\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n", KEYS, OPTIONS),
        (COLUMNS, KEYS, OPTIONS + b"\n/*!50100 PARTITION BY HASH (`id`) PARTITIONS 4 */"),
    ],
)
def test_unexpected_create_table_shapes_load_serially(
    columns: bytes, keys: bytes, options: bytes
) -> None:
    assert split.plan(head(columns, keys, options)) is None


@pytest.mark.parametrize(
    "change",
    [
        (b"DROP TABLE IF EXISTS `t`;\n", b"DROP TABLE IF EXISTS `t`;\nSET @x = 1;\n"),
        (b"LOCK TABLES `t` WRITE;\n", b"LOCK TABLES `t` WRITE, `u` WRITE;\n"),
        (b"LOCK TABLES `t` WRITE;\n", b"LOCK TABLES `t` WRITE;\nSET unique_checks = 1;\n"),
        (b"CREATE TABLE `t`", b"CREATE TABLE `u`"),
        (b"-- Dumping data for table `t`", b"-- Dumping data for table `u`"),
    ],
)
def test_a_head_with_anything_else_loads_serially(change: tuple[bytes, bytes]) -> None:
    assert split.plan(head().replace(*change)) is None


ROWS = (
    b"INSERT INTO `t` VALUES\n"
    b"(1,'it''s; INSERT INTO `t` VALUES (9)',-3.5e+2),\n"
    b"(2,_binary 'a\\'b\\n;',0x00FF),\n"
    b"(3,NULL,b'0101');\n"
)


@pytest.mark.parametrize(
    "statement",
    [ROWS, b"INSERT INTO `t` VALUES (1,'a'),(2,'b');\n", b"INSERT INTO `t` VALUES (7);\n"],
)
def test_literal_rows_may_go_to_a_block(statement: bytes) -> None:
    plan = split.plan(head())
    assert plan is not None
    assert plan.statement.fullmatch(statement)


@pytest.mark.parametrize(
    "statement",
    [
        b"INSERT INTO `t` VALUES (1,NOW());\n",  # a function
        b"INSERT INTO `t` VALUES (1,@n);\n",  # a session variable
        b"INSERT INTO `t` VALUES (1,(SELECT 2));\n",  # a subquery
        b"INSERT INTO `t` VALUES (1,DEFAULT);\n",
        b"INSERT INTO `t` VALUES (NULL,'a');\n",  # an auto-increment value, generated
        b"INSERT INTO `t` VALUES (0,'a');\n",  # generated too, without NO_AUTO_VALUE_ON_ZERO
        b"INSERT INTO `t` VALUES (2-1,'a');\n",
        b"INSERT INTO `t` VALUES (1,'a\n;\n",  # a string spanning lines, cut at its ";\n"
        b"INSERT INTO `t` VALUES (1,'a') ON DUPLICATE KEY UPDATE `id` = 2;\n",
        b"INSERT IGNORE INTO `t` VALUES (1,'a');\n",
        b"INSERT INTO `t` (`id`) VALUES (1);\n",
        b"INSERT INTO `u` VALUES (1,'a');\n",
        b"INSERT INTO `t` VALUES (1,'a');SELECT 1;\n",
        b"INSERT INTO `t` VALUES (1,'a') -- comment;\n",
    ],
)
def test_anything_but_literal_rows_ends_the_blocks(statement: bytes) -> None:
    plan = split.plan(head())
    assert plan is not None
    assert not plan.statement.fullmatch(statement)
