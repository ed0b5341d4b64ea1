"""A small S3 client for setting buckets up: AWS Signature V4 over http.client.

restic moves the data; this client only does what restic does not: create a bucket
and configure it (versioning, public access block, lifecycle rule, bucket policy), as
the maintenance role, for ``backup-agent s3-setup``. The key pair is read from the
role's credentials file and kept in this process (never argv, environment or a log).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import ssl
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from backup_agent.errors import BackupError
from backup_agent.restic import Repository, read_s3_credentials

DEFAULT_REGION = "us-east-1"  # what restic (minio-go) signs with when none is set
NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
TIMEOUT = 30.0


@dataclass(frozen=True)
class Location:
    """Where an ``s3:`` repository lives: the endpoint URL, the bucket, the path in it."""

    endpoint: str  # scheme://host[:port]
    bucket: str
    prefix: str


def location(url: str) -> Location:
    """Split a restic ``s3:`` URL as restic does: ``s3:http[s]://HOST/BUCKET[/PATH]`` or
    ``s3:HOST/BUCKET[/PATH]`` (HTTPS)."""
    rest = url.removeprefix("s3:")
    if not url.startswith("s3:") or not rest:
        raise BackupError(f"not an s3: repository URL: {url}")
    if rest.startswith(("http://", "https://")):
        parts = urllib.parse.urlsplit(rest)
        endpoint, path = f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")
    else:
        host, _, path = rest.removeprefix("//").partition("/")
        endpoint = f"https://{host}"
    bucket, _, prefix = path.partition("/")
    if not bucket:
        raise BackupError(f"no bucket in the S3 repository URL {url}")
    return Location(endpoint, bucket, prefix.strip("/"))


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def error_code(self) -> str:
        """The S3 error ``<Code>`` of a failed request, or ''."""
        return self._field("Code")

    def describe(self) -> str:
        """One line: the status and the store's error code and message."""
        detail = " ".join(part for part in (self.error_code, self._field("Message")) if part)
        return f"HTTP {self.status}{f' {detail}' if detail else ''}"

    def _field(self, name: str) -> str:
        if self.status < 300 or not self.body.lstrip().startswith(b"<"):
            return ""
        try:
            found = ET.fromstring(self.body).find(name)  # noqa: S314 - our own request's answer
        except ET.ParseError:
            return ""
        return (found.text or "") if found is not None else ""

    def xml(self) -> ET.Element:
        return ET.fromstring(self.body)  # noqa: S314 - our own request's answer


def _sign(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


class Client:
    """Signed requests to one S3 endpoint as one key pair.

    ``path_style``: the bucket in the path (``https://HOST/BUCKET/KEY``, Ceph RGW,
    MinIO, IP addresses) or in the host name (``https://BUCKET.HOST/KEY``, AWS).
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        region: str | None = None,
        path_style: bool = True,
        cacert: str | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise BackupError(f"not an S3 endpoint: {endpoint}")
        self.scheme, self.host, self.port = url.scheme, url.hostname, url.port
        self.access_key, self.secret_key = access_key, secret_key
        self.region = region or DEFAULT_REGION
        self.path_style = path_style
        self.context = ssl.create_default_context(cafile=cacert) if url.scheme == "https" else None
        self.timeout = timeout

    def request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        query: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        now: datetime.datetime | None = None,
    ) -> Response:
        """One signed request; ``now`` stands for the client's clock (tests skew it)."""
        host = self.host if self.path_style else f"{bucket}.{self.host}"
        if self.port:
            host = f"{host}:{self.port}"
        path = f"/{bucket}/{key}" if self.path_style else f"/{key}"
        path = urllib.parse.quote(path.rstrip("/") if not key else path, safe="/-_.~") or "/"
        query_string = "&".join(
            f"{_quote(k)}={_quote(v)}" for k, v in sorted((query or {}).items())
        )
        when = now or datetime.datetime.now(datetime.UTC)
        stamp, day = when.strftime("%Y%m%dT%H%M%SZ"), when.strftime("%Y%m%d")
        all_headers = {
            "host": host,
            "x-amz-date": stamp,
            "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
            **{k.lower(): v for k, v in (headers or {}).items()},
        }
        signed = ";".join(sorted(all_headers))
        canonical = "\n".join(
            [
                method,
                path,
                query_string,
                *(f"{k}:{all_headers[k].strip()}" for k in sorted(all_headers)),
                "",
                signed,
                all_headers["x-amz-content-sha256"],
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, digest])
        signing_key = _sign(f"AWS4{self.secret_key}".encode(), day)
        for part in (self.region, "s3", "aws4_request"):
            signing_key = _sign(signing_key, part)
        signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        all_headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        connection = self._connect(host.rpartition(":")[0] if self.port else host)
        try:
            target = path + (f"?{query_string}" if query_string else "")
            connection.request(method, target, body=body, headers=all_headers)
            reply = connection.getresponse()
            return Response(reply.status, dict(reply.getheaders()), reply.read())
        except OSError as exc:
            raise BackupError(
                f"S3 store {self.host}{f':{self.port}' if self.port else ''}: {exc}"
            ) from exc
        finally:
            connection.close()

    @classmethod
    def for_repository(cls, repo: Repository) -> Client:
        """A client for the store of an ``s3:`` repository, with its credentials file."""
        if not repo.credentials_file:
            raise BackupError(f"{repo.url}: no credentials_file for the S3 store")
        key, secret = read_s3_credentials(repo.credentials_file)
        return cls(
            location(repo.url).endpoint,
            key,
            secret,
            region=repo.s3_region,
            path_style=repo.s3_path_style is not False,
            cacert=repo.cacert,
        )

    def _connect(self, host: str) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                host, self.port, timeout=self.timeout, context=self.context
            )
        return http.client.HTTPConnection(host, self.port, timeout=self.timeout)

    # --- bucket set-up --------------------------------------------------------------------

    def bucket_status(self, bucket: str) -> int:
        """HTTP status of HEAD on the bucket: 200 it is there and ours to use, 404 it is
        not there, 403 someone else's (or ours without the right)."""
        return self.request("HEAD", bucket).status

    def create_bucket(self, bucket: str) -> Response:
        """Create ``bucket`` in this client's region."""
        body = b""
        if self.region != DEFAULT_REGION:
            body = (
                f'<CreateBucketConfiguration xmlns="{NAMESPACE}">'
                f"<LocationConstraint>{self.region}</LocationConstraint>"
                "</CreateBucketConfiguration>"
            ).encode()
        return self.request("PUT", bucket, body=body)

    def configure(self, bucket: str, subresource: str, body: str) -> Response:
        """PUT one bucket configuration (``versioning``, ``lifecycle``,
        ``publicAccessBlock``); S3 wants a Content-MD5 on some of them."""
        data = body.encode()
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - S3 wants it
        return self.request(
            "PUT", bucket, query={subresource: ""}, body=data, headers={"Content-MD5": md5}
        )

    def put_policy(self, bucket: str, policy: Mapping[str, Any]) -> Response:
        return self.request("PUT", bucket, query={"policy": ""}, body=json.dumps(policy).encode())

    def versioning(self, bucket: str) -> str:
        """'Enabled', 'Suspended' or '' (never enabled)."""
        reply = self.request("GET", bucket, query={"versioning": ""})
        status = reply.xml().find(f"{{{NAMESPACE}}}Status") if reply.status == 200 else None
        return (status.text or "") if status is not None else ""
