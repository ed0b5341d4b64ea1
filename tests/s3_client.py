"""The agent's S3 client (``backup_agent.s3``) with what tests also need: reading,
writing, listing and deleting objects and object versions as a given user, so that
tests see exactly what the store allows and refuses (status and S3 error code)."""

from __future__ import annotations

from dataclasses import dataclass

from backup_agent import s3
from backup_agent.s3 import NAMESPACE, Response

NS = f"{{{NAMESPACE}}}"


@dataclass(frozen=True)
class ObjectVersion:
    key: str
    version_id: str
    is_latest: bool
    delete_marker: bool
    size: int


class S3Client(s3.Client):
    """Path-style requests to one endpoint as one user, with object operations."""

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
        return [e.text or "" for e in reply.xml().iter(f"{NS}Key")]

    def versions(self, bucket: str, key: str) -> list[ObjectVersion]:
        """Every version and delete marker of ``key``, newest first."""
        reply = self.request("GET", bucket, query={"versions": "", "prefix": key})
        assert reply.status == 200, reply
        found = []
        for element in reply.xml():
            tag = element.tag.removeprefix(NS)
            if tag not in ("Version", "DeleteMarker") or element.findtext(f"{NS}Key") != key:
                continue
            found.append(
                ObjectVersion(
                    key=key,
                    version_id=element.findtext(f"{NS}VersionId") or "",
                    is_latest=element.findtext(f"{NS}IsLatest") == "true",
                    delete_marker=tag == "DeleteMarker",
                    size=int(element.findtext(f"{NS}Size") or 0),
                )
            )
        return found
