"""pytest fixtures for S3 tests: one Ceph RGW per session, one prepared bucket per test.

``tests/conftest.py`` imports them. The bucket is set up the way the maintenance role
sets up a real one (see ``backup_agent.s3policy``): created by the maintenance user,
which owns it, turns on versioning, ignores public ACLs, expires old versions, puts
the append-only policy for one agent and one reader, and runs ``restic init``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backup_agent import restic, s3policy
from tests.ceph_rgw import CephRGW, S3User
from tests.s3_client import S3Client

_buckets = itertools.count(1)


@pytest.fixture(scope="session")
def ceph_rgw() -> Iterator[CephRGW]:
    """A single-node Ceph cluster with a RADOS Gateway for the whole session."""
    from tests.conftest import need

    for tool in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph"):
        need(tool)
    with CephRGW() as rgw:
        yield rgw


@dataclass(frozen=True)
class S3Repository:
    """A prepared bucket holding a restic repository, and its three roles."""

    rgw: CephRGW
    bucket: str
    url: str
    maintenance_user: S3User
    agent_user: S3User
    reader_user: S3User
    maintenance: restic.Repository
    agent: restic.Repository
    reader: restic.Repository

    def client(self, user: S3User) -> S3Client:
        return S3Client(self.rgw.endpoint, user.access_key, user.secret_key)

    def repo_as(self, user: S3User, tmp: Path, name: str) -> restic.Repository:
        """The repository opened with ``user``'s credentials file."""
        return repository_for(self.url, user, tmp, name, self.maintenance.password_file)


def write_credentials(path: Path, access_key: str, secret_key: str) -> str:
    """An AWS shared credentials file (mode 0600) with one ``[default]`` key pair."""
    path.touch(mode=0o600)
    path.write_text(
        f"[default]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n"
    )
    return str(path)


def repository_for(
    url: str, user: S3User, tmp: Path, name: str, password_file: str
) -> restic.Repository:
    credentials = write_credentials(tmp / f"{name}.credentials", user.access_key, user.secret_key)
    return restic.Repository(
        url, password_file, "testhost", str(credentials), str(tmp / f"cache-{name}")
    )


def prepare_bucket(rgw: CephRGW, tmp: Path, *, broad_agent_grant: bool = False) -> S3Repository:
    """A new bucket set up by its maintenance user, with an initialised repository.

    ``broad_agent_grant`` adds an Allow of ``s3:*`` for the agent, standing for an
    over-broad identity policy that the policy's Deny statements must override.
    """
    n = next(_buckets)
    bucket = f"restic-{n}"
    maintenance_user = rgw.create_user(f"maintenance-{n}")
    agent_user = rgw.create_user(f"agent-{n}", may_create_buckets=False)
    reader_user = rgw.create_user(f"reader-{n}", may_create_buckets=False)
    owner = S3Client(rgw.endpoint, maintenance_user.access_key, maintenance_user.secret_key)
    policy = s3policy.bucket_policy(
        bucket,
        maintenance=maintenance_user.arn,
        agents=[agent_user.arn],
        readers=[reader_user.arn],
    )
    if broad_agent_grant:
        policy["Statement"].append(
            {
                "Sid": "BroadGrant",
                "Effect": "Allow",
                "Principal": {"AWS": [agent_user.arn]},
                "Action": ["s3:*"],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        )
    for step, reply in [
        ("create bucket", owner.create_bucket(bucket)),
        ("versioning", owner.configure(bucket, "versioning", s3policy.versioning_configuration())),
        (
            "public access block",
            owner.configure(
                bucket, "publicAccessBlock", s3policy.public_access_block_configuration()
            ),
        ),
        ("lifecycle", owner.configure(bucket, "lifecycle", s3policy.lifecycle_configuration(30))),
        ("policy", owner.put_policy(bucket, policy)),
    ]:
        assert reply.status in (200, 204), f"{step}: {reply.status} {reply.body[:300]!r}"
    password = tmp / "restic-password"
    password.write_text("correct horse battery staple\n")
    url = rgw.restic_url(bucket)
    maintenance = repository_for(url, maintenance_user, tmp, "maintenance", str(password))
    restic.init(maintenance)
    return S3Repository(
        rgw=rgw,
        bucket=bucket,
        url=url,
        maintenance_user=maintenance_user,
        agent_user=agent_user,
        reader_user=reader_user,
        maintenance=maintenance,
        agent=repository_for(url, agent_user, tmp, "agent", str(password)),
        reader=repository_for(url, reader_user, tmp, "reader", str(password)),
    )


@pytest.fixture
def s3_repository(ceph_rgw: CephRGW, tmp_path: Path) -> S3Repository:
    """A fresh append-only S3 repository (own bucket and users) on the session's RGW."""
    return prepare_bucket(ceph_rgw, tmp_path)
