"""pytest fixtures for S3 tests: one Ceph RGW per session, prepared buckets per test.

``tests/integration/conftest.py`` imports them. A bucket is set up the way the maintenance role
sets up a real one, by the agent's own code (``s3policy.setup``): created by the
maintenance user, which owns it, with versioning, public ACLs ignored, old versions
expiring, the append-only policy for one agent and one reader; then ``restic init``
by the maintenance user.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backup_agent import restic, s3policy
from tests.ceph_rgw import CephRGW, S3User
from tests.conftest import need
from tests.s3_client import S3Client

_buckets = itertools.count(1)
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="session")
def ceph_rgw() -> Iterator[CephRGW]:
    """A single-node Ceph cluster with a RADOS Gateway for the whole session."""
    for tool in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph"):
        need(tool)
    with CephRGW() as rgw:
        yield rgw


def write_credentials(path: Path, access_key: str, secret_key: str) -> str:
    """An AWS shared credentials file (mode 0600) with one ``[default]`` key pair."""
    path.touch(mode=0o600)
    path.write_text(
        f"[default]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n"
    )
    return str(path)


@dataclass(frozen=True)
class Roles:
    """The three users of a bucket: its owner (maintenance), an agent and a reader."""

    maintenance: S3User
    agent: S3User
    reader: S3User

    @classmethod
    def create(cls, rgw: CephRGW, name: str) -> Roles:
        return cls(
            maintenance=rgw.create_user(f"maintenance-{name}"),
            agent=rgw.create_user(f"agent-{name}", may_create_buckets=False),
            reader=rgw.create_user(f"reader-{name}", may_create_buckets=False),
        )

    def credentials(self, directory: Path) -> dict[str, str]:
        """Each role's credentials file, by role name."""
        return {
            role: write_credentials(directory / f"{role}.credentials", u.access_key, u.secret_key)
            for role, u in (
                ("maintenance", self.maintenance),
                ("agent", self.agent),
                ("reader", self.reader),
            )
        }


@dataclass(frozen=True)
class S3Repository:
    """A prepared bucket holding a restic repository, opened as each of its roles."""

    rgw: CephRGW
    bucket: str
    url: str
    users: Roles
    maintenance: restic.Repository
    agent: restic.Repository
    reader: restic.Repository

    def client(self, user: S3User) -> S3Client:
        return S3Client(self.rgw.endpoint, user.access_key, user.secret_key)

    @property
    def owner(self) -> S3Client:
        return self.client(self.users.maintenance)


def policy_for(bucket: str, users: Roles, broad_agent_grant: bool = False) -> dict[str, Any]:
    """The shipped policy for ``users``; ``broad_agent_grant`` adds an Allow of ``s3:*``
    for the agent, standing for an over-broad grant the Deny statements must override."""
    policy = s3policy.bucket_policy(
        bucket,
        maintenance=users.maintenance.arn,
        agents=[users.agent.arn],
        readers=[users.reader.arn],
    )
    if broad_agent_grant:
        policy["Statement"].append(
            {
                "Sid": "BroadGrant",
                "Effect": "Allow",
                "Principal": {"AWS": [users.agent.arn]},
                "Action": ["s3:*"],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        )
    return policy


def no_deletes_policy(bucket: str, users: Roles) -> dict[str, Any]:
    """The policy most people write first: agents may delete nothing at all, lock files
    included (restic then leaves every lock behind)."""
    policy = policy_for(bucket, users)
    for statement in policy["Statement"]:
        if statement["Sid"] == "DenyDeleteOutsideLocks":
            del statement["NotResource"]
            statement["Resource"] = [f"arn:aws:s3:::{bucket}/*"]
    return policy


def prepare_bucket(rgw: CephRGW, tmp: Path, *, broad_agent_grant: bool = False) -> S3Repository:
    """A new bucket set up by its maintenance user, with an initialised repository."""
    n = next(_buckets)
    bucket = f"restic-{n}"
    users = Roles.create(rgw, str(n))
    owner = S3Client(rgw.endpoint, users.maintenance.access_key, users.maintenance.secret_key)
    policy = policy_for(bucket, users, broad_agent_grant)
    done = list(s3policy.setup(owner, bucket, policy, keep_versions_days=30))
    assert done[0] == "created the bucket" and done[-1] == "bucket policy set", done
    password = tmp / "restic-password"
    password.write_text(f"{PASSWORD}\n")
    files = users.credentials(tmp)
    url = rgw.restic_url(bucket)

    def opened(role: str) -> restic.Repository:
        return restic.Repository(url, str(password), "testhost", files[role], str(tmp / role))

    maintenance = opened("maintenance")
    restic.init(maintenance)
    return S3Repository(rgw, bucket, url, users, maintenance, opened("agent"), opened("reader"))


@pytest.fixture
def s3_repository(ceph_rgw: CephRGW, tmp_path: Path) -> S3Repository:
    """A fresh append-only S3 repository (own bucket and users) on the session's RGW."""
    return prepare_bucket(ceph_rgw, tmp_path)
