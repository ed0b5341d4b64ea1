"""How the parallel loader splits a dump: every part runs like the original session."""

from __future__ import annotations

from pathlib import Path

import pytest

from backup_agent.errors import CommandError
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
