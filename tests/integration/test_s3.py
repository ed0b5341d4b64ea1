"""Repositories on S3: the agent and real restic 0.18 against a real Ceph RGW (16.2).

Every bucket is set up as the maintenance role sets up a real one (``backup-agent
s3-setup``, ``s3policy.setup``): created by the maintenance user, which owns it, with
versioning, public ACLs ignored, old versions expiring and the append-only policy;
agents back up with their own key pair from an AWS credentials file and can delete
nothing but their lock files; the verifier reads with a key pair of its own.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from backup_agent import agent, cli, manifest, restic, s3policy
from backup_agent import repository_errors as causes
from backup_agent.metrics import Metrics
from backup_agent.state import COPY, State
from tests.ceph_rgw import CephRGW, self_signed
from tests.conftest import files_spec, need
from tests.forge import forge
from tests.integration.conftest import mysql_service
from tests.mariadb_server import MariaDB
from tests.rest_server import RestServer
from tests.s3_client import S3Client
from tests.s3_fixtures import (
    PASSWORD,
    Roles,
    S3Repository,
    no_deletes_policy,
    policy_for,
    prepare_bucket,
    write_credentials,
)

pytestmark = pytest.mark.integration

TAGS = {"service": "files", "kind": "full"}


def make_source(path: Path, size: int = 300_000) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "random.bin").write_bytes(os.urandom(size))
    (path / "text.txt").write_text("Grüße ✓\n" * 1000)
    return path


def run_restic(repo: restic.Repository, *args: str) -> subprocess.CompletedProcess[str]:
    """restic as a child with the repository's environment; never raises on exit codes."""
    return subprocess.run(
        ["restic", "--json", *args],
        env={**os.environ, **repo.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def keys(client: S3Client, bucket: str, prefix: str) -> list[str]:
    return client.list_keys(bucket, prefix)


# --- the bucket policy, request by request ----------------------------------------------


@pytest.mark.parametrize("broad_grant", [False, True], ids=["as-shipped", "with-broad-grant"])
def test_the_store_enforces_the_policy(
    ceph_rgw: CephRGW, tmp_path: Path, broad_grant: bool
) -> None:
    """With the broad grant the Deny statements (by action name, and DeleteObject with
    NotResource) must win over an Allow. RGW 16 accepts a Deny with NotAction but never
    applies it, so the policy uses none."""
    s3 = prepare_bucket(ceph_rgw, tmp_path, broad_agent_grant=broad_grant)
    agent_, reader = s3.client(s3.users.agent), s3.client(s3.users.reader)
    owner, bucket = s3.owner, s3.bucket
    stranger = s3.client(ceph_rgw.create_user(f"stranger-{bucket}"))

    def refused(reply: Any) -> None:
        assert (reply.status, reply.error_code) == (403, "AccessDenied"), reply

    assert agent_.put(bucket, "data/00/pack", b"v1").status == 200
    assert agent_.put(bucket, "locks/mine", b"lock").status == 200
    assert agent_.get(bucket, "data/00/pack").body == b"v1"
    assert "data/00/pack" in agent_.list_keys(bucket)
    assert agent_.delete(bucket, "locks/mine").status == 204
    for reply in [
        agent_.delete(bucket, "data/00/pack"),
        agent_.delete(bucket, "config"),
        agent_.configure(bucket, "versioning", "<VersioningConfiguration/>"),
        agent_.put_policy(bucket, {"Version": "2012-10-17", "Statement": []}),
        agent_.request("DELETE", bucket, query={"policy": ""}),
        agent_.request("DELETE", bucket),
        agent_.configure(bucket, "lifecycle", "<LifecycleConfiguration/>"),
        agent_.configure(bucket, "publicAccessBlock", "<PublicAccessBlockConfiguration/>"),
        agent_.request(
            "PUT", bucket, "data/00/pack", query={"acl": ""}, headers={"x-amz-acl": "public-read"}
        ),
        agent_.request("PUT", bucket, query={"acl": ""}, headers={"x-amz-acl": "public-read"}),
        reader.put(bucket, "data/00/other", b"x"),
        reader.delete(bucket, "data/00/pack"),
        stranger.get(bucket, "data/00/pack"),
        stranger.put(bucket, "data/00/other", b"x"),
    ]:
        refused(reply)
    assert owner.versioning(bucket) == "Enabled"

    # Overwriting is possible; the old version stays, and only the owner may drop one.
    assert agent_.put(bucket, "data/00/pack", b"v2").status == 200
    versions = owner.versions(bucket, "data/00/pack")
    assert [v.size for v in versions] == [2, 2] and versions[0].is_latest
    refused(agent_.delete(bucket, "data/00/pack", versions[1].version_id))
    # A public ACL set at PUT time is accepted but ignored (public access block).
    public = {"x-amz-acl": "public-read"}
    assert agent_.request("PUT", bucket, "data/01/p", body=b"p", headers=public).status == 200
    refused(stranger.get(bucket, "data/01/p"))
    # Readers lock; the owner reads what agents wrote and may delete versions.
    assert reader.put(bucket, "locks/reader", b"l").status == 200
    assert reader.delete(bucket, "locks/reader").status == 204
    assert reader.get(bucket, "data/00/pack").body == b"v2"
    assert owner.get(bucket, "data/00/pack", versions[1].version_id).body == b"v1"
    assert owner.delete(bucket, "data/00/pack", versions[0].version_id).status == 204
    assert owner.get(bucket, "data/00/pack").body == b"v1"


# --- append-only: what an agent's key pair cannot do -----------------------------------


def test_an_agent_cannot_forget_or_prune_and_nothing_is_lost(
    s3_repository: S3Repository, tmp_path: Path
) -> None:
    source = make_source(tmp_path / "src")
    snapshot = restic.backup(s3_repository.agent, [str(source)], TAGS).snapshot_id
    bucket, owner = s3_repository.bucket, s3_repository.owner
    packs = keys(owner, bucket, "data/")

    # restic itself: forget exits 0 after the refusal; forget --prune exits 1.
    forget = run_restic(s3_repository.agent, "forget", snapshot)
    assert forget.returncode == 0
    assert "Remove(<snapshot/" in forget.stderr and "Access Denied." in forget.stderr
    prune = run_restic(s3_repository.agent, "forget", "--prune", snapshot)
    assert prune.returncode == 1
    assert json.loads(prune.stderr.strip().splitlines()[-1])["message"] == (
        "Fatal: client.RemoveObject: Access Denied."
    )
    # The agent's wrapper names the refusal.
    with pytest.raises(restic.ResticError) as caught:
        restic.forget(s3_repository.agent, [snapshot])
    assert caught.value.reason == causes.REFUSED
    assert "the store refuses deletions" in str(caught.value)

    assert [s.id for s in restic.snapshots(s3_repository.maintenance)] == [snapshot]
    assert set(packs) <= set(keys(owner, bucket, "data/"))
    assert keys(owner, bucket, "locks/") == []  # every run removed its own lock
    restic.check(s3_repository.maintenance, read_data_subset="100%")


def test_an_overwritten_pack_is_undone_from_its_previous_version(
    s3_repository: S3Repository, tmp_path: Path
) -> None:
    source = make_source(tmp_path / "src")
    snapshot = restic.backup(s3_repository.agent, [str(source)], TAGS).snapshot_id
    agent_ = s3_repository.client(s3_repository.users.agent)
    owner, bucket = s3_repository.owner, s3_repository.bucket
    pack = max(keys(owner, bucket, "data/"), key=lambda key: len(owner.get(bucket, key).body))

    # A compromised agent overwrites a pack: the store accepts the PUT...
    assert agent_.put(bucket, pack, b"garbage").status == 200
    damaged = run_restic(s3_repository.maintenance, "check", "--read-data")
    assert damaged.returncode == 1
    assert pack.rsplit("/", 1)[1][:8] in damaged.stdout + damaged.stderr
    # ...but cannot remove the version it replaced.
    bad, good = owner.versions(bucket, pack)
    assert (bad.size, bad.is_latest) == (len(b"garbage"), True)
    assert agent_.delete(bucket, pack, good.version_id).status == 403

    # The maintenance role deletes the bad version; the previous one is current again.
    assert owner.delete(bucket, pack, bad.version_id).status == 204
    assert [v.version_id for v in owner.versions(bucket, pack)] == [good.version_id]
    restic.check(s3_repository.maintenance, read_data_subset="100%")
    target = tmp_path / "restored"
    restic.restore(s3_repository.reader, snapshot, str(target))
    restored = target / source.relative_to("/") / "random.bin"
    assert restored.read_bytes() == (source / "random.bin").read_bytes()


# --- the agent on S3, from its manifest ---------------------------------------------------


@dataclass
class Deployment:
    """Per-service buckets on the test store, set up and initialised through the CLI."""

    rgw: CephRGW
    tmp: Path
    name: str
    users: dict[str, Any]  # role (maintenance, reader, agent-SERVICE) -> S3User

    def bucket(self, service: str) -> str:
        return f"{self.name}-{service}"

    @property
    def owner(self) -> S3Client:
        user = self.users["maintenance"]
        return S3Client(self.rgw.endpoint, user.access_key, user.secret_key)

    def repository(self, service: str, role: str) -> restic.Repository:
        return restic.Repository(
            self.rgw.restic_url(self.bucket(service)),
            str(self.tmp / "restic-password"),
            "agama",
            str(self.tmp / f"s3-{role}"),
            str(self.tmp / "cache"),
        )


def write_manifest(path: Path, data: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture
def deploy(ceph_rgw: CephRGW, tmp_path: Path) -> Callable[..., tuple[Deployment, str]]:
    """Write an S3 manifest for ``services`` (each with its own bucket and agent), then
    ``backup-agent s3-setup`` and ``init`` as the maintenance role."""

    def make(services: dict[str, Any], **top: Any) -> tuple[Deployment, str]:
        name = f"t{uuid.uuid4().hex[:8]}"
        users = {"maintenance": ceph_rgw.create_user(f"{name}-maintenance")}
        users["verifier"] = ceph_rgw.create_user(f"{name}-verifier", may_create_buckets=False)
        for service in services:
            users[f"agent-{service}"] = ceph_rgw.create_user(
                f"{name}-agent-{service}", may_create_buckets=False
            )
        for role, user in users.items():
            write_credentials(tmp_path / f"s3-{role}", user.access_key, user.secret_key)
        (tmp_path / "restic-password").write_text(f"{PASSWORD}\n")
        (tmp_path / "drill-key").write_text("k" * 32)
        data: dict[str, Any] = {
            "version": 1,
            "work_dir": str(tmp_path / "work"),
            "agent": {"state_dir": str(tmp_path / "state"), "metrics_port": 0},
            "repository": {
                "url": ceph_rgw.restic_url(f"{name}-{{service}}"),
                "password_file": str(tmp_path / "restic-password"),
                "credentials_file": str(tmp_path / "s3-agent-{service}"),
                "host": "agama",
                "cache_dir": str(tmp_path / "cache"),
                "s3": {"path_style": True},
            },
            "services": services,
            "retention": {"keep_within": "3w", "max_age": "31d"},
            "maintenance": {"credentials_file": str(tmp_path / "s3-maintenance")},
        }
        data.update(top)
        manifest_file = write_manifest(tmp_path / "manifest.yaml", data)
        arn = "arn:aws:iam:::user/"
        setup = ["-m", manifest_file, "s3-setup", "--maintenance", f"{arn}{name}-maintenance"]
        setup += ["--agent", f"{arn}{name}-agent-{{service}}"]
        setup += ["--verifier", f"{arn}{name}-verifier"]
        assert cli.main(setup) == 0
        assert cli.main(["-m", manifest_file, "--role", "maintenance", "init"]) == 0
        return Deployment(ceph_rgw, tmp_path, name, users), manifest_file

    return make


@pytest.fixture
def drill_section(scratch_mariadb: MariaDB, tmp_path: Path) -> dict[str, Any]:
    """Drills into the scratch server, with the verifier's own key pair."""
    return {
        "schedule": "0 6 * * 1",
        "report_file": str(tmp_path / "report.json"),
        "scratch_dir": str(tmp_path / "drill"),
        "file_sample": 10,
        "key_file": str(tmp_path / "drill-key"),
        "credentials_file": str(tmp_path / "s3-verifier"),
        "mysql": {
            "socket": scratch_mariadb.socket,
            "defaults_file": scratch_mariadb.defaults_file(tmp_path / "scratch.cnf", "root", ""),
        },
    }


def test_services_back_up_into_their_own_buckets_and_drills_prove_them(
    deploy: Callable[..., tuple[Deployment, str]],
    drill_section: dict[str, Any],
    mariadb: MariaDB,
    database: str,
    backup_defaults: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tree = make_source(tmp_path / "tree")
    services = {
        "db": mysql_service(mariadb, backup_defaults, database),
        "files": files_spec([str(tree)]),
    }
    site, manifest_file = deploy(services, drill=drill_section)
    owner = site.owner
    for service in services:
        assert owner.versioning(site.bucket(service)) == "Enabled"

    for service in services:
        assert cli.main(["-m", manifest_file, "backup", service]) == 0
    for service in services:
        assert keys(owner, site.bucket(service), "snapshots/")
        assert keys(owner, site.bucket(service), "locks/") == []
    # One bucket per service, one key pair per agent: the files agent cannot open db's.
    with pytest.raises(restic.ResticError) as caught:
        restic.snapshots(site.repository("db", "agent-files"))
    assert caught.value.reason == causes.REFUSED

    capsys.readouterr()
    assert cli.main(["-m", manifest_file, "drill"]) == 0, capsys.readouterr().out
    report = json.loads(Path(drill_section["report_file"]).read_text())
    for service in services:
        assert report["services"][service]["passed"], report["services"][service]
    assert report["repository_check"]["passed"]
    assert "2 tables present" in " / ".join(report["services"]["db"]["checks"])
    # The verifier wrote its signed drill records (it may add, as the agents may).
    for service in services:
        drilled = restic.snapshots(site.repository(service, "verifier"), {"kind": "drill"})
        assert len(drilled) == 1
        assert keys(owner, site.bucket(service), "locks/") == []


def test_retention_on_s3_deletes_with_the_maintenance_key_pair_only(
    deploy: Callable[..., tuple[Deployment, str]], tmp_path: Path
) -> None:
    tree = make_source(tmp_path / "tree")
    site, manifest_file = deploy({"files": files_spec([str(tree)])})
    assert cli.main(["-m", manifest_file, "backup", "files", "--kind", "full"]) == 0
    agent_repo = site.repository("files", "agent-files")
    old = forge(agent_repo, datetime.now(UTC) - timedelta(days=40), TAGS, b"old")
    listed = {s.id for s in restic.snapshots(agent_repo)}
    assert old in listed and len(listed) == 2

    # Retention with the agents' key pair: refused by the store, nothing removed.
    assert cli.main(["-m", manifest_file, "--role", "backup", "retention"]) == 1
    assert {s.id for s in restic.snapshots(agent_repo)} == listed
    # The maintenance role's own key pair may delete.
    assert cli.main(["-m", manifest_file, "retention"]) == 0
    assert {s.id for s in restic.snapshots(agent_repo)} == listed - {old}
    # Versioning keeps what was deleted until the lifecycle rule expires it.
    bucket = site.bucket("files")
    latest, *older = site.owner.versions(bucket, f"snapshots/{old}")
    assert latest.delete_marker and [v.delete_marker for v in older] == [False]
    assert keys(site.owner, bucket, "locks/") == []


def test_copy_to_s3_makes_a_second_copy_that_drills_pass_on(
    ceph_rgw: CephRGW,
    drill_section: dict[str, Any],
    mariadb: MariaDB,
    database: str,
    backup_defaults: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The local repository is copied to S3 with an append-only key pair; a manifest
    pointing at the copy restores from it (records follow their snapshots' new ids)."""
    need("restic")
    tree = make_source(tmp_path / "tree")
    services = {
        "db": mysql_service(mariadb, backup_defaults, database),
        "files": files_spec([str(tree)]),
    }
    name = f"c{uuid.uuid4().hex[:8]}"
    users = Roles.create(ceph_rgw, name)
    credentials = users.credentials(tmp_path)
    owner = S3Client(ceph_rgw.endpoint, users.maintenance.access_key, users.maintenance.secret_key)
    for service in services:
        bucket = f"{name}-{service}"
        list(s3policy.setup(owner, bucket, policy_for(bucket, users)))
    (tmp_path / "restic-password").write_text(f"{PASSWORD}\n")
    (tmp_path / "drill-key").write_text("k" * 32)
    copy_url = ceph_rgw.restic_url(f"{name}-{{service}}")
    base: dict[str, Any] = {
        "version": 1,
        "work_dir": str(tmp_path / "work"),
        "agent": {"state_dir": str(tmp_path / "state"), "metrics_port": 0},
        "services": services,
        "retention": {"keep_within": "3w", "max_age": "31d"},
    }
    local = {
        "url": str(tmp_path / "repos" / "{service}"),
        "password_file": str(tmp_path / "restic-password"),
        "host": "agama",
        "cache_dir": str(tmp_path / "cache"),
    }
    copy = {"url": copy_url, "credentials_file": credentials["agent"], "schedule": "0 7 * * *"}
    manifest_file = write_manifest(
        tmp_path / "manifest.yaml",
        {**base, "repository": local, "maintenance": {"copy": copy}},
    )
    assert cli.main(["-m", manifest_file, "init"]) == 0
    assert cli.main(["-m", manifest_file, "init", "--copy"]) == 0
    for service in services:
        assert cli.main(["-m", manifest_file, "backup", service]) == 0

    capsys.readouterr()
    assert cli.main(["-m", manifest_file, "copy"]) == 0
    printed = capsys.readouterr().out
    assert "db: newest trusted snapshot in the copy: 20" in printed
    copied = {
        s: restic.snapshots(repo_at(copy_url, s, credentials["reader"], tmp_path)) for s in services
    }
    assert {s: len(found) for s, found in copied.items()} == {"db": 2, "files": 1}  # dump + record
    assert all(snap.original for found in copied.values() for snap in found)

    # The scheduled task: nothing new to copy; the freshness metric is the newest trusted
    # snapshot of each service in the copy.
    registry = CollectorRegistry()
    loaded = manifest.load(manifest_file)
    tasks = agent.maintenance_tasks(loaded, State(loaded.agent.state_dir), Metrics(registry))
    next(task for task in tasks if task.id == COPY).run()
    assert registry.get_sample_value("backup_maintenance_last_success", {"task": "copy"}) == 1
    for service, found in copied.items():
        data = [s for s in found if s.tag("kind") != "meta"]
        value = registry.get_sample_value(
            "backup_copy_newest_snapshot_timestamp_seconds", {"service": service}
        )
        assert value == data[-1].time.timestamp()
        again = restic.snapshots(repo_at(copy_url, service, credentials["reader"], tmp_path))
        assert len(again) == len(found)  # restic copy skipped what it had copied
    for service in services:
        assert keys(owner, f"{name}-{service}", "locks/") == []

    # The copy on its own, as the plan of the copy's site (its maintenance with the
    # owner's key pair): drills with a read-only key pair pass (their records are not
    # written: that key pair may not add them).
    on_copy = {**local, "url": copy_url, "credentials_file": credentials["reader"]}
    drill = {k: v for k, v in drill_section.items() if k != "credentials_file"}
    copy_manifest = write_manifest(
        tmp_path / "copy.yaml",
        {
            **base,
            "repository": on_copy,
            "drill": drill,
            "maintenance": {"credentials_file": credentials["maintenance"]},
        },
    )
    capsys.readouterr()
    code = cli.main(["-m", copy_manifest, "drill"])
    assert code == 0, capsys.readouterr()


def repo_at(url: str, service: str, credentials: str, tmp_path: Path) -> restic.Repository:
    return restic.Repository(
        url.replace("{service}", service),
        str(tmp_path / "restic-password"),
        "agama",
        credentials,
        str(tmp_path / "cache"),
    )


# --- failures named from the first answer, through the agent's guard -------------------


@pytest.fixture(scope="module")
def skewed_gateway(ceph_rgw: CephRGW) -> str:
    """A second radosgw of the same cluster whose clock runs an hour behind (libfaketime).
    faketime around restic itself does nothing: Go reads the clock without libc."""
    need("faketime")
    if "skew" not in ceph_rgw.gateways:
        [library] = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
        env = {"LD_PRELOAD": library, "FAKETIME": "-1h", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        ceph_rgw.start_gateway("skew", env=env)
    return ceph_rgw.gateways["skew"]


@pytest.fixture
def rest_endpoint() -> Iterator[str]:
    """restic's rest-server: an HTTP server that is not an S3 store."""
    server = RestServer({"agent": "agent-pass"})
    try:
        yield f"http://{server.netloc}"
    finally:
        server.remove()


def opened_as(s3: S3Repository, tmp_path: Path, **change: Any) -> restic.Repository:
    """The agent's repository with another URL or credentials file."""
    return dataclasses.replace(s3.agent, **change)


@pytest.mark.parametrize(
    ("case", "reason", "says"),
    [
        ("bucket missing", causes.MISSING, "no S3 bucket no-such-bucket at "),
        ("stranger", causes.REFUSED, "refused access: S3 access denied"),
        ("wrong secret", causes.REFUSED, "refused access: S3 secret key wrong"),
        ("not an S3 store", causes.WRONG_ENDPOINT, "is not the S3 store of"),
        ("clock skew", causes.CLOCK_SKEW, "refuses this host's requests: the clocks differ"),
        ("lock deletes refused", causes.REFUSED, "refuses deleting lock files"),
    ],
)
def test_the_preflight_names_what_is_wrong_with_an_s3_repository(
    s3_repository: S3Repository,
    tmp_path: Path,
    case: str,
    reason: str,
    says: str,
    request: pytest.FixtureRequest,
) -> None:
    """Each failure restic would retry for 15 minutes is named at its first answer."""
    s3, rgw = s3_repository, s3_repository.rgw
    user = s3.users.agent
    if case == "bucket missing":
        repo = opened_as(s3, tmp_path, url=rgw.restic_url("no-such-bucket"))
    elif case == "stranger":
        stranger = rgw.create_user(f"stranger-{s3.bucket}", may_create_buckets=False)
        creds = write_credentials(tmp_path / "c", stranger.access_key, stranger.secret_key)
        repo = opened_as(s3, tmp_path, credentials_file=creds)
    elif case == "wrong secret":
        creds = write_credentials(tmp_path / "c", user.access_key, "not-the-secret")
        repo = opened_as(s3, tmp_path, credentials_file=creds)
    elif case == "not an S3 store":
        endpoint = request.getfixturevalue("rest_endpoint")
        repo = opened_as(s3, tmp_path, url=f"s3:{endpoint}/{s3.bucket}")
    elif case == "clock skew":
        endpoint = request.getfixturevalue("skewed_gateway")
        repo = opened_as(s3, tmp_path, url=f"s3:{endpoint}/{s3.bucket}")
    else:
        policy = no_deletes_policy(s3.bucket, s3.users)
        assert s3.owner.put_policy(s3.bucket, policy).status == 204
        repo = s3.agent
    started = time.monotonic()
    with pytest.raises(restic.ResticError) as caught:
        restic.preflight(repo)
    text = str(caught.value)
    assert caught.value.reason == reason, text
    assert says in text and "\n" not in text
    assert user.secret_key not in text
    # Named at once, not after the pre-flight's 20 s retry budget.
    assert time.monotonic() - started < 20
    if case == "lock deletes refused":
        assert len(keys(s3.owner, s3.bucket, "locks/")) == 1  # what every backup would leave


def test_tls_with_the_manifests_ca(s3_repository: S3Repository, tmp_path: Path) -> None:
    rgw = s3_repository.rgw
    if "tls" not in rgw.gateways:
        rgw.start_gateway("tls", tls=self_signed(rgw.base, rgw.host))
    url = f"s3:{rgw.gateways['tls']}/{s3_repository.bucket}"
    with pytest.raises(restic.ResticError) as caught:
        restic.preflight(opened_as(s3_repository, tmp_path, url=url))
    assert caught.value.reason == causes.REFUSED
    assert "TLS certificate signed by an unknown CA" in str(caught.value)
    restic.preflight(
        opened_as(s3_repository, tmp_path, url=url, cacert=str(rgw.base / "tls-cert.pem"))
    )


def test_the_credentials_file_wins_over_inherited_keys(
    s3_repository: S3Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """restic (minio-go) prefers AWS_ACCESS_KEY_ID to the file; the agent blanks it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "NOT-THE-AGENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-its-secret")
    restic.preflight(s3_repository.agent)
    assert keys(s3_repository.owner, s3_repository.bucket, "locks/") == []
