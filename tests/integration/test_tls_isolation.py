"""The backup server as the machines reach it, for real: rest-server over TLS with a
certificate from ``pki``, ``--private-repos`` and one user per service, append-only;
restic through ``backup_agent.restic``. A wrong or missing certificate is one line
naming the server; a sidecar's credentials reach its own repository and no other."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backup_agent import pki, restic, secret_store
from backup_agent import repository_errors as causes
from backup_agent.errors import BackupError
from tests.conftest import need
from tests.forge import forge
from tests.net import HOST
from tests.rest_server import RestServer

pytestmark = pytest.mark.integration

USERS = {"mysql": "mysql-secret-0123456789", "grafana": "grafana-secret-0123456789"}


@dataclass
class Server:
    rest: RestServer
    tls: Path
    base: Path

    def repo(
        self,
        service: str,
        user: str | None = None,
        *,
        host: str = HOST,
        scheme: str = "https",
        cacert: Path | None = None,
    ) -> restic.Repository:
        """Service ``service``'s repository, reached with ``user``'s credentials."""
        user = user or service
        credentials = self.base / f"rest_{user}"
        credentials.write_text(f"{user}:{USERS[user]}\n")
        password = self.base / f"restic_password_{service}"
        password.write_text(f"password of {service}\n")
        return restic.Repository(
            url=f"rest:{scheme}://{host}:{self.rest.port}/{service}",
            password_file=str(password),
            host="agama",
            credentials_file=str(credentials),
            cache_dir=str(self.base / f"cache-{user}"),
            cacert=str(cacert or self.tls / pki.CA_CERT),
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """rest-server with TLS (names backup-server and 127.0.0.1), private repositories,
    append-only, and the repositories of mysql and grafana created by their users."""
    need("openssl")
    need("restic")
    tls = tmp_path / "tls"
    tls.mkdir()
    pki.ensure_ca(tls, "test")
    pki.ensure_server(tls, ["backup-server"], [HOST])
    tls_args = ["--tls", "--tls-cert", str(tls / pki.SERVER_CERT)]
    tls_args += ["--tls-key", str(tls / pki.SERVER_KEY)]
    rest = RestServer(USERS, extra=["--private-repos", *tls_args])
    found = Server(rest, tls, tmp_path)
    try:
        for service in USERS:
            restic.init(found.repo(service))
        yield found
    finally:
        rest.remove()


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and not any(p in text for p in USERS.values()), text
    return text


def test_each_sidecar_backs_up_into_its_own_repository_over_tls(server: Server) -> None:
    mysql = server.repo("mysql")
    restic.preflight(mysql)
    snapshot = restic.backup(mysql, [str(server.tls / pki.CA_CERT)], {"service": "mysql"})
    assert [s.id for s in restic.snapshots(mysql)] == [snapshot.snapshot_id]
    assert (server.rest.data / "mysql" / "config").is_file()
    assert (server.rest.data / "grafana" / "config").is_file()


def test_a_sidecar_can_neither_read_nor_write_another_services_repository(
    server: Server,
) -> None:
    theirs = server.repo("grafana")
    forge(theirs, restic.parse_time("2026-01-01T00:00:00Z"), {"service": "grafana", "kind": "full"})
    stolen = server.repo("grafana", user="mysql")  # mysql's credentials, grafana's password
    with pytest.raises(BackupError) as read:
        restic.snapshots(stolen)
    assert read.value.reason == causes.REFUSED
    assert one_line(read.value).startswith(
        f"backup server {HOST}:{server.rest.port} refused access"
    )
    with pytest.raises(BackupError) as write:
        restic.backup(stolen, [str(server.tls / pki.CA_CERT)], {"service": "grafana"})
    assert write.value.reason == causes.REFUSED
    assert len(restic.snapshots(theirs)) == 1  # nothing added


def test_nothing_is_deleted_through_the_endpoint(server: Server) -> None:
    mysql = server.repo("mysql")
    snapshot = forge(mysql, restic.parse_time("2026-01-01T00:00:00Z"), {"service": "mysql"})
    with pytest.raises(restic.ResticError) as caught:
        restic.forget(mysql, [snapshot])
    assert caught.value.reason == causes.REFUSED
    assert "refuses deletions (HTTP 403" in one_line(caught.value)
    assert [s.id for s in restic.snapshots(mysql)] == [snapshot]


def test_a_certificate_from_another_ca_is_refused_naming_the_server(
    server: Server, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca"
    other.mkdir()
    pki.ensure_ca(other, "someone else")
    with pytest.raises(BackupError) as caught:
        restic.preflight(server.repo("mysql", cacert=other / pki.CA_CERT))
    assert caught.value.reason == causes.REFUSED
    assert one_line(caught.value) == (
        f"backup server {HOST}:{server.rest.port} refused access: "
        "TLS certificate signed by an unknown CA"
    )


def test_a_certificate_for_other_names_is_refused_naming_the_server(server: Server) -> None:
    """A certificate for backup-server and 10.0.0.20 (the server moved), not the test
    address the agent reaches it at."""
    pki.ensure_server(server.tls, ["backup-server"], ["10.0.0.20"])
    server.rest.stop()
    server.rest.start()
    with pytest.raises(BackupError) as caught:
        restic.preflight(server.repo("mysql"))
    assert caught.value.reason == causes.REFUSED
    assert one_line(caught.value) == (
        f"backup server {HOST}:{server.rest.port} refused access: "
        "TLS certificate does not name this host"
    )


def test_a_missing_ca_certificate_is_named_with_the_server(server: Server, tmp_path: Path) -> None:
    with pytest.raises(BackupError) as caught:
        restic.preflight(server.repo("mysql", cacert=tmp_path / "nowhere.pem"))
    assert caught.value.reason == causes.REFUSED
    assert one_line(caught.value) == (
        f"backup server {HOST}:{server.rest.port}: cannot read the CA certificate "
        f"{tmp_path / 'nowhere.pem'} that must have signed its TLS certificate"
    )


def test_plain_http_to_the_tls_server_is_refused_naming_the_server(server: Server) -> None:
    with pytest.raises(BackupError) as caught:
        restic.preflight(server.repo("mysql", scheme="http"))
    assert caught.value.reason == causes.REFUSED
    assert one_line(caught.value).startswith(f"backup server {HOST}:{server.rest.port} refused")


def test_the_server_certificate_is_issued_again_only_when_it_must(tmp_path: Path) -> None:
    need("openssl")
    pki.ensure_ca(tmp_path, "test")
    assert pki.ensure_server(tmp_path, ["backup-server", "b.example.org"], ["10.0.0.20"])
    first = (tmp_path / pki.SERVER_CERT).read_bytes()
    assert not pki.ensure_server(tmp_path, ["backup-server", "b.example.org"], ["10.0.0.20"])
    assert (tmp_path / pki.SERVER_CERT).read_bytes() == first
    assert pki.names(tmp_path / pki.SERVER_CERT) == (
        {"backup-server", "b.example.org"},
        {"10.0.0.20"},
    )
    assert pki.ensure_server(tmp_path, ["backup-server"], ["10.0.0.21"])  # the address moved
    assert pki.names(tmp_path / pki.SERVER_CERT) == ({"backup-server"}, {"10.0.0.21"})
    for name in (pki.CA_CERT, pki.CA_KEY):
        (tmp_path / name).unlink()
    pki.ensure_ca(tmp_path, "a new CA")
    assert pki.ensure_server(tmp_path, ["backup-server"], ["10.0.0.21"])  # not signed by it


def test_keys_are_never_printed_and_stay_private(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    need("openssl")
    pki.ensure_ca(tmp_path, "test")
    pki.ensure_server(tmp_path, ["backup-server"], [HOST])
    out, err = capfd.readouterr()
    assert "PRIVATE KEY" not in out + err
    assert (tmp_path / pki.CA_KEY).stat().st_mode & 0o077 == 0
    secret_store.share(tmp_path / pki.CA_KEY)
    assert (tmp_path / pki.CA_KEY).stat().st_mode & 0o777 == 0o600
