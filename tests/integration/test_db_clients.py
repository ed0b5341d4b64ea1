"""images/agent/db-clients.sh: the database image's clients, carried into the agent image.

The agent image copies mysqldump/mysql (or mariadb-dump/mariadb) out of the stack's
database image, with their libraries, because Debian has only MariaDB's. Here the
host (Debian bookworm, MariaDB 10.11 clients) plays the database image of another
distribution and the agent image (trixie) must run its clients.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import docker_with, need

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "images" / "agent" / "db-clients.sh"
AGENT_IMAGE = os.environ.get("AGENT_IMAGE", "local/backup-agent:dev")
GLIBC = ("libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2", "libpthread.so.0")


def clients(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False
    )


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    """The host's MariaDB clients, exported as from a database image."""
    need("mariadb-dump")
    dest = tmp_path / "db-clients"
    result = clients("export", str(dest))
    assert result.returncode == 0, result.stderr
    return dest


def host_version(program: str) -> str:
    """``--version`` of a host program, without its path (the first word)."""
    out = subprocess.run([program, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split(maxsplit=1)[1].strip()


def test_export_takes_the_clients_and_their_libraries_but_not_glibc(exported: Path) -> None:
    exported_programs = {p.name for p in (exported / "bin").iterdir()}
    assert {"mariadb-dump", "mariadb", "mariadb-backup", "mbstream"} <= exported_programs
    libs = {p.name for p in (exported / "lib").iterdir()}
    assert "libssl.so.3" in libs  # what the dump tool links, besides glibc
    assert not libs & set(GLIBC)


def test_installed_wrappers_run_the_exported_programs(exported: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    result = clients("install", str(exported), str(bin_dir))
    assert result.returncode == 0, result.stderr  # install ran each one's --version
    assert host_version("mariadb-dump") in result.stdout
    assert "based on MariaDB server" in result.stdout + result.stderr  # mariadb-backup ran
    # The wrapper runs the exported program with the exported libraries.
    program = exported / "bin" / "mariadb-dump"
    program.write_text('#!/bin/sh\necho "$0 $LD_LIBRARY_PATH $*"\n')
    out = subprocess.run(
        [str(bin_dir / "mariadb-dump"), "--opt"], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [str(program), str(exported / "lib"), "--opt"]


def test_an_image_without_a_dump_program_fails_the_export(tmp_path: Path) -> None:
    tools = tmp_path / "tools"  # a PATH with coreutils only, no database client
    tools.mkdir()
    for tool in ("mkdir", "cp"):
        (tools / tool).symlink_to(need(tool))
    result = clients("export", str(tmp_path / "out"), env={"PATH": str(tools)})
    assert result.returncode == 1
    assert "neither mysqldump nor mariadb-dump" in result.stderr


def test_clients_of_another_distribution_run_in_the_agent_image(exported: Path) -> None:
    client = docker_with(AGENT_IMAGE)
    script = (
        "sh /usr/local/lib/backup-images/db-clients.sh install /mnt/clients /tmp >/dev/null"
        " && /tmp/mariadb-dump --version && command -v mysqldump"
    )
    container = client.containers.run(
        AGENT_IMAGE,
        ["-c", script],
        entrypoint="sh",
        user="root",
        volumes={str(exported): {"bind": "/mnt/clients", "mode": "ro"}},
        detach=True,
    )
    try:
        code = container.wait(timeout=60)["StatusCode"]
        out = container.logs().decode()
    finally:
        container.remove(force=True, v=True)  # and the image's anonymous state volume
        client.close()
    assert code == 0, out
    assert host_version("mariadb-dump") in out  # bookworm's client on trixie's glibc
    # The image's own wrappers (from its DB_IMAGE) come before Debian's programs.
    assert out.splitlines()[-1] == "/usr/local/bin/mysqldump"
