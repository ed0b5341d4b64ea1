"""The S3 bucket policy that makes an S3 bucket an append-only restic repository.

restic needs only list, read and write for a backup, but it also deletes its own lock
files under ``locks/``; denying every delete breaks locking (backups exit 0 but leave
their lock behind, the next ``forget`` exits 11, and a long backup whose lock refresh
fails for ~22 minutes aborts). So the policy gives the roles:

agents (backup writers)
    list the bucket, read and write objects under the repository's prefix, delete
    only under ``PREFIX/locks/`` (a Deny with ``NotResource``). Every action that
    changes the bucket or deletes history is denied by name, which also overrides
    any broader grant an identity policy may give: no ``DeleteObjectVersion``,
    ``PutBucketVersioning``, ``PutBucketPolicy``, ``PutLifecycleConfiguration``,
    ``PutObjectRetention``, ``PutObjectAcl``, ``DeleteBucket``...
readers (restore drills, the verifier)
    list and read, and write and delete lock files only (restic locks to read).
maintenance (the bucket's owner)
    everything: it alone runs ``forget --prune``, and it needs an explicit grant to
    read objects the agents wrote (Ceph RGW keeps per-object owners; on AWS the
    default "bucket owner enforced" ownership makes it redundant but harmless).

What stays possible for an agent: overwriting an existing object with a PUT (S3
has no "create only" permission that Ceph RGW 16 enforces), and granting read of
the objects it wrote to another named user with ``x-amz-grant-read`` at PUT time
(RGW does not check ``PutObjectAcl`` then; the data is restic-encrypted, and the
agent holds it in plain anyway). The maintenance role therefore also sets, once:
versioning (``versioning_configuration``), so every overwrite and every deletion
is a new version it can restore; a public access block
(``public_access_block_configuration``), so a ``public-read`` ACL is ignored; and
a lifecycle rule (``lifecycle_configuration``) that expires old versions after a
grace period, which is how long an overwrite can still be undone.

Principals are ARNs: ``rgw_user_arn("agent-mysql")`` for Ceph RGW users,
``aws_user_arn("123456789012", "agent-mysql")`` (or a role ARN) for AWS.
``backup-agent s3-setup`` applies all of it (``setup``); ``s3/`` in the repository
holds the policy as JSON for both stores.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from backup_agent.errors import BackupError
from backup_agent.s3 import Client, Response

Store = Literal["rgw", "aws"]

# Everything that changes the bucket's configuration, object metadata that protects
# or exposes data, or deletes history. Denied by name: Ceph RGW 16 accepts a Deny
# with NotAction but never applies it (measured), and rejects a policy naming an
# action it does not know (InvalidArgument), hence the per-store additions.
DENIED_ACTIONS = (
    "s3:DeleteObjectVersion",
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketPolicy",
    "s3:PutBucketVersioning",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketAcl",
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
    "s3:PutReplicationConfiguration",
    "s3:DeleteReplicationConfiguration",
    "s3:PutBucketPublicAccessBlock",
    "s3:DeleteBucketPublicAccessBlock",
    "s3:PutBucketTagging",
    "s3:PutBucketWebsite",
    "s3:DeleteBucketWebsite",
    "s3:PutBucketCORS",
    "s3:PutBucketNotification",
    "s3:PutBucketLogging",
    "s3:PutObjectTagging",
    "s3:DeleteObjectTagging",
    "s3:PutObjectVersionTagging",
    "s3:DeleteObjectVersionTagging",
    "s3:PutBucketRequestPayment",
    "s3:PutAccelerateConfiguration",
)
DENIED_ACTIONS_AWS_ONLY = (
    "s3:PutBucketOwnershipControls",
    "s3:PutEncryptionConfiguration",
)


def rgw_user_arn(uid: str, tenant: str = "") -> str:
    """A Ceph RGW user as a policy principal."""
    return f"arn:aws:iam::{tenant}:user/{uid}"


def aws_user_arn(account: str, name: str) -> str:
    """An AWS IAM user as a policy principal."""
    return f"arn:aws:iam::{account}:user/{name}"


def _resources(bucket: str, prefix: str) -> tuple[str, str, str]:
    """ARNs of the bucket, of the repository's objects and of its lock files."""
    base = f"arn:aws:s3:::{bucket}"
    path = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    return base, f"{base}/{path}*", f"{base}/{path}locks/*"


def bucket_policy(
    bucket: str,
    *,
    maintenance: str,
    agents: Sequence[str],
    readers: Sequence[str] = (),
    prefix: str = "",
    store: Store = "rgw",
) -> dict[str, Any]:
    """The bucket policy for a restic repository at ``bucket``/``prefix``.

    ``maintenance``, ``agents`` and ``readers`` are principal ARNs (see the module doc);
    ``store`` picks the action names the store accepts.
    """
    if not agents:
        raise BackupError("a bucket policy needs at least one agent principal")
    if maintenance in agents or maintenance in readers:
        raise BackupError("the maintenance principal cannot also be an agent or a reader")
    bucket_arn, objects, locks = _resources(bucket, prefix)
    limited = sorted({*agents, *readers})
    denied = DENIED_ACTIONS + (DENIED_ACTIONS_AWS_ONLY if store == "aws" else ())

    def statement(sid: str, effect: str, who: Sequence[str], **rest: Any) -> dict[str, Any]:
        return {"Sid": sid, "Effect": effect, "Principal": {"AWS": list(who)}, **rest}

    statements = [
        statement(
            "MaintenanceOwnsEverything",
            "Allow",
            [maintenance],
            Action=["s3:*"],
            Resource=[bucket_arn, f"{bucket_arn}/*"],
        ),
        statement(
            "ListTheBucket",
            "Allow",
            limited,
            Action=["s3:ListBucket", "s3:GetBucketLocation"],
            Resource=[bucket_arn],
        ),
        statement(
            "ReadTheRepository", "Allow", limited, Action=["s3:GetObject"], Resource=[objects]
        ),
        statement(
            "AgentsAddObjects",
            "Allow",
            list(agents),
            Action=["s3:PutObject", "s3:AbortMultipartUpload"],
            Resource=[objects],
        ),
        statement(
            "EveryoneHandlesLocks",
            "Allow",
            limited,
            Action=["s3:PutObject", "s3:DeleteObject"],
            Resource=[locks],
        ),
        statement(
            "DenyChangingTheBucket",
            "Deny",
            limited,
            Action=list(denied),
            Resource=[bucket_arn, f"{bucket_arn}/*"],
        ),
        statement(
            "DenyDeleteOutsideLocks",
            "Deny",
            limited,
            Action=["s3:DeleteObject"],
            NotResource=[locks],
        ),
    ]
    if readers:
        statements.append(
            statement(
                "ReadersWriteOnlyLocks",
                "Deny",
                list(readers),
                Action=["s3:PutObject", "s3:AbortMultipartUpload"],
                NotResource=[locks],
            )
        )
    return {"Version": "2012-10-17", "Statement": statements}


def versioning_configuration() -> str:
    """The ``PutBucketVersioning`` body the maintenance role sends once."""
    return (
        '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        "<Status>Enabled</Status></VersioningConfiguration>"
    )


def public_access_block_configuration(store: Store = "rgw") -> str:
    """The ``PutPublicAccessBlock`` body: public ACLs an agent sets on its objects
    (``x-amz-acl: public-read``) are ignored. On Ceph RGW 16 only ``IgnorePublicAcls``:
    its ``BlockPublicAcls`` refuses every PUT of a policy-granted user (measured)."""
    block = "true" if store == "aws" else "false"
    return (
        '<PublicAccessBlockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<BlockPublicAcls>{block}</BlockPublicAcls><IgnorePublicAcls>true</IgnorePublicAcls>"
        f"<BlockPublicPolicy>{block}</BlockPublicPolicy>"
        f"<RestrictPublicBuckets>{block}</RestrictPublicBuckets>"
        "</PublicAccessBlockConfiguration>"
    )


def lifecycle_configuration(noncurrent_days: int) -> str:
    """A ``PutBucketLifecycleConfiguration`` body: overwritten and deleted objects stay
    restorable for ``noncurrent_days``, then go (prune frees space only then)."""
    if noncurrent_days < 1:
        raise BackupError("noncurrent_days must be at least 1")
    return (
        '<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        "<Rule><ID>expire-old-versions</ID><Filter><Prefix></Prefix></Filter>"
        "<Status>Enabled</Status>"
        f"<NoncurrentVersionExpiration><NoncurrentDays>{noncurrent_days}</NoncurrentDays>"
        "</NoncurrentVersionExpiration>"
        "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>"
        "</Rule></LifecycleConfiguration>"
    )


def setup(
    client: Client,
    bucket: str,
    policy: Mapping[str, Any],
    *,
    store: Store = "rgw",
    keep_versions_days: int = 30,
) -> Iterator[str]:
    """Create ``bucket`` if it is missing and configure it, as its owner (the
    maintenance role): versioning, public access block, lifecycle, then the policy
    last (it takes the agents' rights away from anything set before). Yields what was
    done; the first refusal raises, naming the step and the store's answer."""
    found = client.bucket_status(bucket)
    if found == 404:
        _expect("create the bucket", client.create_bucket(bucket))
        yield "created the bucket"
    elif found == 200:
        yield "the bucket exists"
    else:
        raise BackupError(
            f"bucket {bucket}: HTTP {found} to HEAD: it belongs to someone else, or the key "
            "pair may not use it"
        )
    steps = [
        ("versioning", versioning_configuration(), "versioning enabled"),
        ("publicAccessBlock", public_access_block_configuration(store), "public ACLs ignored"),
        (
            "lifecycle",
            lifecycle_configuration(keep_versions_days),
            f"old versions expire after {keep_versions_days} days",
        ),
    ]
    for subresource, body, done in steps:
        _expect(f"set {subresource}", client.configure(bucket, subresource, body))
        yield done
    _expect("put the bucket policy", client.put_policy(bucket, policy))
    yield "bucket policy set"


def _expect(step: str, reply: Response) -> None:
    if reply.status not in (200, 204):
        raise BackupError(f"S3 store refused to {step}: {reply.describe()}")
