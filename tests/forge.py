"""Snapshots written the way an attacker with an agent's credentials could: by restic
itself, with any content, tags, host name and date."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime

from backup_agent import restic


def forge(
    repo: restic.Repository,
    when: datetime,
    tags: Mapping[str, str],
    content: bytes = b"x",
    *,
    host: str | None = None,
    filename: str = "data",
) -> str:
    """A real snapshot of ``content`` as ``/filename``, dated ``when``; returns its id."""
    stamp = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    args = ["restic", "--json", "backup", "--stdin", "--stdin-filename", filename]
    args += ["--host", host or repo.host, "--time", stamp, *restic.tag_args(tags)]
    env = {**os.environ, **repo.env(), "TZ": "UTC"}
    out = subprocess.run(args, input=content, env=env, capture_output=True, check=True).stdout
    return str(restic.summary_of(restic.parse_messages(out))["snapshot_id"])
