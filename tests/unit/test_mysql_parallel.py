"""How the parallel loader splits a dump: every part runs like the original session."""

from __future__ import annotations

from pathlib import Path

import pytest

from backup_agent.errors import CommandError
from backup_agent.jobs.mysql import parallel
from backup_agent.jobs.mysql.parallel import ParallelLoader

DUMP = b"""-- MariaDB dump
/*!40101 SET NAMES utf8mb4 */;
/*!40014 SET FOREIGN_KEY_CHECKS=0 */;
--
-- Current Database: `shop`
--
CREATE DATABASE `shop`;
USE `shop`;
--
-- Table structure for table `a`
--
CREATE TABLE `a` (id int);
--
-- Dumping data for table `a`
--
INSERT INTO `a` VALUES (1);
--
-- Table structure for table `b`
--
CREATE TABLE `b` (id int);
INSERT INTO `b` VALUES (2);
--
-- Dumping routines for database 'shop'
--
CREATE PROCEDURE p() SELECT 1;
--
-- Current Database: `shop`
--
USE `shop`;
--
-- Final view structure for view `v`
--
CREATE VIEW v AS SELECT * FROM a;
-- Dump completed
"""


def run_loader(tmp_path: Path, chunk: int) -> list[bytes]:
    """Load DUMP with a 'client' that saves each part it is given; return the parts."""
    parts = tmp_path / "parts"
    parts.mkdir(exist_ok=True)
    client = ["sh", "-c", f'cat > "$(mktemp -p {parts})"']
    loader = ParallelLoader(client, str(tmp_path / "spool"), workers=2)
    for start in range(0, len(DUMP), chunk):
        loader.write(DUMP[start : start + chunk])
    loader.finish()
    assert not any((tmp_path / "spool").iterdir()), "spool left behind"
    return [p.read_bytes() for p in parts.iterdir()]


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_heads_tables_and_tail_become_separate_parts(tmp_path: Path, chunk: int) -> None:
    parts = run_loader(tmp_path, chunk)
    preamble = (
        b"-- MariaDB dump\n/*!40101 SET NAMES utf8mb4 */;\n/*!40014 SET FOREIGN_KEY_CHECKS=0 */;\n"
    )
    assert len(parts) == 5  # two heads, two tables, one tail
    assert all(part.startswith(preamble) for part in parts)

    def the(marker: bytes) -> bytes:
        (found,) = [part for part in parts if marker in part]
        return found

    assert b"INSERT INTO `a`" in the(b"CREATE TABLE `a`")
    assert b"`b`" not in the(b"CREATE TABLE `a`")
    assert the(b"CREATE TABLE `b`").count(b"USE `shop`;") == 1
    tail = the(b"CREATE PROCEDURE")
    assert tail.index(b"USE `shop`;") < tail.index(b"CREATE PROCEDURE") < tail.index(b"CREATE VIEW")
    assert b"CREATE TABLE" not in the(b"CREATE DATABASE")
    # Nothing of the dump is lost: every line is in some part.
    for line in DUMP.splitlines():
        assert any(line in part for part in parts), line


def test_a_failing_table_load_fails_the_restore(tmp_path: Path) -> None:
    loader = ParallelLoader(["sh", "-c", "cat >/dev/null; exit 3"], str(tmp_path / "spool"), 2)
    with pytest.raises(CommandError, match="exit code 3"):
        loader.write(DUMP)
        loader.finish()
    loader.close()
    assert not (tmp_path / "spool").exists() or not any((tmp_path / "spool").iterdir())


SPLIT_DUMP = b"""/*!40101 SET NAMES utf8mb4 */;
--
-- Current Database: `shop`
--
CREATE DATABASE `shop`;
USE `shop`;

--
-- Table structure for table `t`
--

DROP TABLE IF EXISTS `t`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!40101 SET character_set_client = utf8mb4 */;
CREATE TABLE `t` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `note` varchar(60) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `note` (`note`)
) ENGINE=InnoDB AUTO_INCREMENT=9 DEFAULT CHARSET=utf8mb4;
/*!40101 SET character_set_client = @saved_cs_client */;

--
-- Dumping data for table `t`
--

LOCK TABLES `t` WRITE;
/*!40000 ALTER TABLE `t` DISABLE KEYS */;
INSERT INTO `t` VALUES
(1,'one; INSERT INTO `t` VALUES (99,\\'x\\');'),
(2,'two\\n;');
INSERT INTO `t` VALUES (3,'three'),(4,'four');
INSERT INTO `t` VALUES
(5,'five'),
(6,'six');
INSERT INTO `t` VALUES (7,'seven');
/*!40000 ALTER TABLE `t` ENABLE KEYS */;
UNLOCK TABLES;
/*!50003 SET @saved_cs_client      = @@character_set_client */ ;
DELIMITER ;;
/*!50003 CREATE*/ /*!50003 TRIGGER `t_bi` BEFORE INSERT ON `t` FOR EACH ROW SET NEW.note = 'x' */;;
DELIMITER ;

--
-- Table structure for table `empty`
--

DROP TABLE IF EXISTS `empty`;
CREATE TABLE `empty` (
  `id` int(11) NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB;

--
-- Final view structure for view `v`
--
CREATE VIEW v AS SELECT * FROM t;
-- Dump completed
"""
PREAMBLE = b"/*!40101 SET NAMES utf8mb4 */;\n--\n"  # up to the first section marker
STATEMENTS = [
    b"INSERT INTO `t` VALUES\n(1,'one; INSERT INTO `t` VALUES (99,\\'x\\');'),\n(2,'two\\n;');\n",
    b"INSERT INTO `t` VALUES (3,'three'),(4,'four');\n",
    b"INSERT INTO `t` VALUES\n(5,'five'),\n(6,'six');\n",
    b"INSERT INTO `t` VALUES (7,'seven');\n",
]


def load(tmp_path: Path, dump: bytes, chunk: int) -> list[bytes]:
    """Load ``dump`` in ``chunk``-byte writes with a 'client' that saves each part."""
    parts = tmp_path / "parts"
    parts.mkdir()
    client = ["sh", "-c", f'cat > "$(mktemp -p {parts})"']
    loader = ParallelLoader(client, str(tmp_path / "spool"), workers=2)
    for start in range(0, len(dump), chunk):
        loader.write(dump[start : start + chunk])
    loader.finish()
    assert not any((tmp_path / "spool").iterdir()), "spool left behind"
    return [p.read_bytes() for p in parts.iterdir()]


def blocks_of(parts: list[bytes]) -> list[bytes]:
    """The parts that hold only INSERT statements (after the preamble and USE)."""
    head = PREAMBLE + b"USE `shop`;\n"
    return [part for part in parts if part.startswith(head + b"INSERT INTO `t`")]


@pytest.mark.parametrize("chunk", [1, 7, 50, 4096])
def test_a_big_table_loads_in_blocks_of_whole_statements(
    tmp_path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "BLOCK", 120)
    parts = load(tmp_path, SPLIT_DUMP, chunk)
    blocks = blocks_of(parts)
    # A block is handed on once it holds BLOCK bytes: statements 1, 2 and 3, 4.
    assert len(blocks) == 3
    bodies = {block[len(PREAMBLE + b"USE `shop`;\n") :] for block in blocks}
    assert bodies == {STATEMENTS[0], STATEMENTS[1] + STATEMENTS[2], STATEMENTS[3]}
    (structure,) = [part for part in parts if b"CREATE TABLE `t`" in part]
    assert b"KEY `note`" not in structure and b"INSERT" not in structure
    assert b"LOCK TABLES" not in structure
    (rest,) = [part for part in parts if b"UNLOCK TABLES" in part]
    assert rest.startswith(PREAMBLE + b"USE `shop`;\nALTER TABLE `t` ADD KEY `note` (`note`);\n")
    assert rest.index(b"LOCK TABLES `t` WRITE;") < rest.index(b"ENABLE KEYS")
    assert rest.index(b"UNLOCK TABLES;") < rest.index(b"TRIGGER `t_bi`")  # after the data
    assert b"INSERT INTO" not in rest
    (empty,) = [part for part in parts if b"CREATE TABLE `empty`" in part]
    assert b"`t`" not in empty
    (tail,) = [part for part in parts if b"CREATE VIEW" in part]
    assert b"TRIGGER" not in tail


def test_without_lock_tables_the_rest_takes_no_lock(tmp_path: Path) -> None:
    dump = SPLIT_DUMP.replace(b"LOCK TABLES `t` WRITE;\n", b"").replace(b"UNLOCK TABLES;\n", b"")
    parts = load(tmp_path, dump, 4096)
    assert len(blocks_of(parts)) == 1
    (rest,) = [part for part in parts if b"ENABLE KEYS" in part]
    assert b"LOCK TABLES" not in rest


def test_a_statement_not_read_whole_ends_the_blocks_and_the_rest_runs_it_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "BLOCK", 1)
    odd = b"INSERT INTO `t` VALUES (5,'a\n;\nDROP DATABASE shop;\n');\n"
    dump = SPLIT_DUMP.replace(STATEMENTS[2], odd)
    parts = load(tmp_path, dump, 7)
    blocks = blocks_of(parts)
    assert sorted(blocks) == sorted(
        PREAMBLE + b"USE `shop`;\n" + statement for statement in STATEMENTS[:2]
    )
    (rest,) = [part for part in parts if b"UNLOCK TABLES" in part]
    # The session of a serial load at this point: its SETs and its lock, then the rest as is.
    assert rest.index(b"LOCK TABLES `t` WRITE;\n") < rest.index(odd + STATEMENTS[3])
    assert rest.index(odd + STATEMENTS[3]) < rest.index(b"ENABLE KEYS")


def test_an_unexpected_table_loads_serially_in_one_part(tmp_path: Path) -> None:
    dump = SPLIT_DUMP.replace(b"ENGINE=InnoDB AUTO_INCREMENT", b"ENGINE=MyISAM AUTO_INCREMENT")
    parts = load(tmp_path, dump, 4096)
    assert not blocks_of(parts)
    (table,) = [part for part in parts if b"CREATE TABLE `t`" in part]
    section = SPLIT_DUMP[SPLIT_DUMP.index(b"-- Table structure for table `t`") :]
    section = section[: section.index(b"-- Table structure for table `empty`")]
    assert table.endswith(section.replace(b"InnoDB AUTO", b"MyISAM AUTO"))


def test_a_failing_block_fails_the_load_and_its_rest_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "BLOCK", 1)
    parts = tmp_path / "parts"
    parts.mkdir()
    client = ["sh", "-c", f'f="$(mktemp -p {parts})"; cat > "$f"; ! grep -q six "$f"']
    loader = ParallelLoader(client, str(tmp_path / "spool"), workers=2)
    with pytest.raises(CommandError, match="exit code 1"):
        loader.write(SPLIT_DUMP)
        loader.finish()
    loader.close()
    assert not any(b"UNLOCK TABLES" in p.read_bytes() for p in parts.iterdir())
