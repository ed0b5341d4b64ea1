"""A minimal S3 client for tests: AWS Signature V4 over http.client, nothing else.

Enough to create buckets, set policies and versioning, and read, write, list and
delete objects and object versions as a given user, so that tests can see exactly
what the store allows and refuses (status code and S3 error code), without boto3.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REGION = "us-east-1"  # what minio-go (restic) signs with when the store names no region
S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def error_code(self) -> str:
        """The S3 error ``<Code>`` of a failed request, or ''."""
        if self.status < 300 or not self.body.startswith(b"<"):
            return ""
        code = ET.fromstring(self.body).find("Code")  # noqa: S314 - our own test server
        return code.text or "" if code is not None else ""

    def xml(self) -> ET.Element:
        return ET.fromstring(self.body)  # noqa: S314 - our own test server


@dataclass(frozen=True)
class ObjectVersion:
    key: str
    version_id: str
    is_latest: bool
    delete_marker: bool
    size: int


def _sign(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class S3Client:
    """Path-style requests to one endpoint as one user."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str) -> None:
        url = urllib.parse.urlsplit(endpoint)
        assert url.scheme == "http" and url.hostname and url.port, endpoint
        self.host, self.port = url.hostname, url.port
        self.access_key = access_key
        self.secret_key = secret_key

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
        """One signed request; ``now`` fakes the client's clock (to test skew)."""
        path = "/" + urllib.parse.quote(f"{bucket}/{key}" if key else bucket, safe="/-_.~")
        query_string = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted((query or {}).items())
        )
        when = now or datetime.datetime.now(datetime.UTC)
        stamp, day = when.strftime("%Y%m%dT%H%M%SZ"), when.strftime("%Y%m%d")
        all_headers = {
            "host": f"{self.host}:{self.port}",
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
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key_ = _sign(f"AWS4{self.secret_key}".encode(), day)
        for part in (REGION, "s3", "aws4_request"):
            key_ = _sign(key_, part)
        signature = hmac.new(key_, to_sign.encode(), hashlib.sha256).hexdigest()
        all_headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}"
        )
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            target = path + (f"?{query_string}" if query_string else "")
            conn.request(method, target, body=body, headers=all_headers)
            reply = conn.getresponse()
            return Response(reply.status, dict(reply.getheaders()), reply.read())
        finally:
            conn.close()

    # --- the few operations tests need ------------------------------------------------

    def create_bucket(self, bucket: str) -> Response:
        return self.request("PUT", bucket)

    def put_policy(self, bucket: str, policy: Mapping[str, Any]) -> Response:
        return self.request("PUT", bucket, query={"policy": ""}, body=json.dumps(policy).encode())

    def configure(self, bucket: str, subresource: str, body: str) -> Response:
        """PUT a bucket configuration (``versioning``, ``lifecycle``, ``publicAccessBlock``)."""
        data = body.encode()
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - S3 wants it
        return self.request(
            "PUT", bucket, query={subresource: ""}, body=data, headers={"Content-MD5": md5}
        )

    def versioning(self, bucket: str) -> str:
        """'Enabled', 'Suspended' or '' (never enabled)."""
        status = self.request("GET", bucket, query={"versioning": ""}).xml().find(f"{S3_NS}Status")
        return status.text or "" if status is not None else ""

    def put(self, bucket: str, key: str, body: bytes) -> Response:
        return self.request("PUT", bucket, key, body=body)

    def get(self, bucket: str, key: str, version_id: str | None = None) -> Response:
        query = {"versionId": version_id} if version_id else None
        return self.request("GET", bucket, key, query=query)

    def delete(self, bucket: str, key: str, version_id: str | None = None) -> Response:
        query = {"versionId": version_id} if version_id else None
        return self.request("DELETE", bucket, key, query=query)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every current key under ``prefix`` (one page is enough for tests)."""
        reply = self.request("GET", bucket, query={"prefix": prefix, "max-keys": "1000"})
        assert reply.status == 200, reply
        return [e.text or "" for e in reply.xml().iter(f"{S3_NS}Key")]

    def versions(self, bucket: str, key: str) -> list[ObjectVersion]:
        """Every version and delete marker of ``key``, newest first."""
        reply = self.request("GET", bucket, query={"versions": "", "prefix": key})
        assert reply.status == 200, reply
        found = []
        for element in reply.xml():
            tag = element.tag.removeprefix(S3_NS)
            if tag not in ("Version", "DeleteMarker"):
                continue
            if element.findtext(f"{S3_NS}Key") != key:
                continue
            found.append(
                ObjectVersion(
                    key=key,
                    version_id=element.findtext(f"{S3_NS}VersionId") or "",
                    is_latest=element.findtext(f"{S3_NS}IsLatest") == "true",
                    delete_marker=tag == "DeleteMarker",
                    size=int(element.findtext(f"{S3_NS}Size") or 0),
                )
            )
        return found
