"""The S3 bucket policy's shape; the store's enforcement is tested in integration/test_s3.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backup_agent import s3policy
from backup_agent.errors import BackupError

AGENT = s3policy.rgw_user_arn("agent-mysql")
READER = s3policy.rgw_user_arn("verifier")
OWNER = s3policy.rgw_user_arn("maintenance")


def statements(policy: dict[str, object]) -> dict[str, dict[str, object]]:
    return {s["Sid"]: s for s in policy["Statement"]}  # type: ignore[attr-defined]


def test_agents_delete_only_lock_files_under_the_prefix() -> None:
    by_sid = statements(
        s3policy.bucket_policy("backups", maintenance=OWNER, agents=[AGENT], prefix="/mysql/")
    )
    assert by_sid["EveryoneHandlesLocks"]["Resource"] == ["arn:aws:s3:::backups/mysql/locks/*"]
    assert by_sid["DenyDeleteOutsideLocks"] == {
        "Sid": "DenyDeleteOutsideLocks",
        "Effect": "Deny",
        "Principal": {"AWS": [AGENT]},
        "Action": ["s3:DeleteObject"],
        "NotResource": ["arn:aws:s3:::backups/mysql/locks/*"],
    }
    assert by_sid["AgentsAddObjects"]["Resource"] == ["arn:aws:s3:::backups/mysql/*"]
    assert "ReadersWriteOnlyLocks" not in by_sid


def test_no_deny_relies_on_not_action_and_history_cannot_be_erased() -> None:
    policy = s3policy.bucket_policy("b", maintenance=OWNER, agents=[AGENT], readers=[READER])
    assert "NotAction" not in json.dumps(policy)  # Ceph RGW 16 ignores it in a Deny
    denied = statements(policy)["DenyChangingTheBucket"]
    assert denied["Principal"] == {"AWS": sorted([AGENT, READER])}
    for action in ("s3:DeleteObjectVersion", "s3:PutBucketVersioning", "s3:PutBucketPolicy"):
        assert action in denied["Action"]  # type: ignore[operator]
    assert "s3:PutBucketOwnershipControls" not in denied["Action"]  # type: ignore[operator]
    aws = s3policy.bucket_policy("b", maintenance=OWNER, agents=[AGENT], store="aws")
    aws_denied = statements(aws)["DenyChangingTheBucket"]["Action"]
    assert "s3:PutBucketOwnershipControls" in aws_denied  # type: ignore[operator]
    assert statements(policy)["ReadersWriteOnlyLocks"]["Principal"] == {"AWS": [READER]}


def test_roles_must_be_distinct_and_present() -> None:
    with pytest.raises(BackupError, match="at least one agent"):
        s3policy.bucket_policy("b", maintenance=OWNER, agents=[])
    with pytest.raises(BackupError, match="cannot also be an agent"):
        s3policy.bucket_policy("b", maintenance=AGENT, agents=[AGENT])
    with pytest.raises(BackupError, match="at least 1"):
        s3policy.lifecycle_configuration(0)


def test_arns() -> None:
    assert s3policy.rgw_user_arn("u") == "arn:aws:iam:::user/u"
    assert s3policy.rgw_user_arn("u", "t") == "arn:aws:iam::t:user/u"
    assert s3policy.aws_user_arn("123456789012", "u") == "arn:aws:iam::123456789012:user/u"


def test_public_acls_are_ignored_and_only_aws_blocks_them() -> None:
    rgw = s3policy.public_access_block_configuration("rgw")
    assert "<IgnorePublicAcls>true</IgnorePublicAcls>" in rgw
    assert "<BlockPublicAcls>false</BlockPublicAcls>" in rgw  # blocks every agent PUT on RGW 16
    assert "<BlockPublicAcls>true</BlockPublicAcls>" in s3policy.public_access_block_configuration(
        "aws"
    )


# The examples shipped in s3/ (README): the bucket "agama-mysql" of the reference plan.
SHIPPED = Path(__file__).resolve().parents[2] / "s3"


@pytest.mark.parametrize("store", ["rgw", "aws"])
def test_the_shipped_policy_files_are_what_the_code_sets(store: s3policy.Store) -> None:
    """s3/bucket-policy.STORE.json is exactly what s3-setup puts (no second copy drifts)."""

    def user(name: str) -> str:
        if store == "rgw":
            return s3policy.rgw_user_arn(name)
        return s3policy.aws_user_arn("123456789012", name)

    principals = (user("backup-maintenance"), user("mysql-agent"), user("verifier"))
    maintenance, agent, verifier = principals
    expected = s3policy.bucket_policy(
        "agama-mysql", maintenance=maintenance, agents=[agent, verifier], store=store
    )
    shipped = json.loads((SHIPPED / f"bucket-policy.{store}.json").read_text())
    assert shipped == expected
