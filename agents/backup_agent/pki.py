"""A small CA and the backup server's TLS certificate, made with openssl.

The CA signs one certificate: the backup server's, naming every name and address the
agents, the verifier and Prometheus reach it by. Agents verify it with the CA
certificate (``repository.cacert``). Keys are written by openssl straight into their
files (mode 0600 until the caller shares them) and are never printed; the CA key
stays in the secrets directory and the recovery kit, never in a machine's bundle.

A certificate is issued again when it is missing, names other names than wanted,
is not signed by the CA, or expires within ``RENEW_BEFORE``.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import tempfile
from collections.abc import Sequence
from pathlib import Path

from backup_agent import execute
from backup_agent.errors import BackupError, CommandError

log = logging.getLogger(__name__)

OPENSSL = "openssl"
CA_CERT, CA_KEY = "ca.pem", "ca.key"
SERVER_CERT, SERVER_KEY = "backup-server.pem", "backup-server.key"
CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_BEFORE = 30 * 86400  # seconds
_NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


def ensure_ca(directory: Path, name: str) -> bool:
    """Create the CA (``ca.pem``, ``ca.key``) unless both exist; True when created."""
    cert, key = directory / CA_CERT, directory / CA_KEY
    if cert.exists() and key.exists():
        return False
    if cert.exists() or key.exists():
        raise BackupError(f"{directory}: one of {CA_CERT} and {CA_KEY} is missing; restore it")
    _openssl(
        "req",
        "-x509",
        *_NEW_KEY,
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-days",
        str(CA_DAYS),
        "-subj",
        f"/CN={name} backup CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    log.info("created the CA %s", cert)
    return True


def ensure_server(directory: Path, dns: Sequence[str], ips: Sequence[str]) -> bool:
    """Issue the backup server's certificate and key unless a valid one names exactly
    ``dns`` and ``ips``; True when issued."""
    cert, key = directory / SERVER_CERT, directory / SERVER_KEY
    wanted = (set(dns), {str(ipaddress.ip_address(ip)) for ip in ips})
    reason = _needs_issue(directory, cert, key, wanted)
    if reason is None:
        return False
    with tempfile.TemporaryDirectory(dir=directory, prefix=".issue-") as scratch:
        request, extensions = Path(scratch) / "server.csr", Path(scratch) / "ext.cnf"
        new_key = Path(scratch) / SERVER_KEY
        alt = [f"DNS:{name}" for name in dns] + [f"IP:{ip}" for ip in sorted(wanted[1])]
        extensions.write_text(
            f"subjectAltName={','.join(alt)}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
        )
        _openssl(
            "req", "-new", *_NEW_KEY, "-keyout", str(new_key), "-out", str(request),
            "-subj", f"/CN={dns[0]}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(directory / CA_CERT),
            "-CAkey", str(directory / CA_KEY), "-set_serial", f"0x{secrets.token_hex(16)}",
            "-days", str(SERVER_DAYS), "-extfile", str(extensions),
            "-out", str(Path(scratch) / SERVER_CERT),
        )  # fmt: skip
        new_key.replace(key)
        (Path(scratch) / SERVER_CERT).replace(cert)
    log.info("issued the backup server's certificate (%s) for %s", reason, ", ".join(alt))
    return True


def names(cert: Path) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) in a certificate's subjectAltName."""
    out = _openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(cert)).decode()
    dns: set[str] = set()
    ips: set[str] = set()
    for item in " ".join(out.splitlines()[1:]).split(","):
        kind, _, value = item.strip().partition(":")
        if kind == "DNS":
            dns.add(value)
        elif kind == "IP Address":
            ips.add(str(ipaddress.ip_address(value)))
    return dns, ips


def _needs_issue(
    directory: Path, cert: Path, key: Path, wanted: tuple[set[str], set[str]]
) -> str | None:
    """Why the certificate must be issued (again), or None."""
    if not (cert.exists() and key.exists()):
        return "new"
    try:
        _openssl("verify", "-CAfile", str(directory / CA_CERT), str(cert))
    except CommandError:
        return "not signed by the CA"
    try:
        _openssl("x509", "-noout", "-checkend", str(RENEW_BEFORE), "-in", str(cert))
    except CommandError:
        return "expires soon"
    if names(cert) != wanted:
        return "names changed"
    return None


def _openssl(*args: str) -> bytes:
    return execute.run([OPENSSL, *args]).stdout
