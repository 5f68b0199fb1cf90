"""The claim check: big artifacts live in a content-addressed store; events carry uri + sha256.

A directory by default (shared by workers on one host or a shared volume); the uri scheme
leaves room for an S3-compatible store later.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from fixstream.errors import ArtifactError
from fixstream.schemas import Artifact


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Content-addressed files under ``root``: writing the same bytes twice stores them once."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> tuple[str, str]:
        """Store ``data``; returns (uri, sha256). Atomic: readers never see half a file."""
        digest = sha256_hex(data)
        path = self._path_for(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        return path.resolve().as_uri(), digest

    def get(self, uri: str, sha256: str) -> bytes:
        """The bytes behind ``uri``, checked against ``sha256``."""
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ArtifactError(f"unsupported artifact uri scheme {parsed.scheme!r} in {uri}")
        path = Path(unquote(parsed.path))
        # a report names the uri: only this store's own files, never /dev/zero or /etc/shadow
        if (
            not re.fullmatch(r"[0-9a-f]{64}", sha256)
            or path.resolve() != self._path_for(sha256).resolve()
        ):
            raise ArtifactError(f"artifact {uri} is not this store's file for sha256 {sha256}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"artifact {uri} cannot be read: {exc.strerror}") from None
        if sha256_hex(data) != sha256:
            raise ArtifactError(f"artifact {uri} does not match its sha256 {sha256}")
        return data

    async def aput(self, data: bytes) -> tuple[str, str]:
        return await asyncio.to_thread(self.put, data)

    async def aget(self, uri: str, sha256: str) -> bytes:
        return await asyncio.to_thread(self.get, uri, sha256)

    def claim_check(self, artifact: Artifact, inline_limit: int) -> Artifact:
        """The artifact itself if small; otherwise stored, with content replaced by uri + sha256."""
        if artifact.content is None:
            return artifact
        data = artifact.content.encode()
        if len(data) <= inline_limit:
            return artifact
        uri, digest = self.put(data)
        return artifact.model_copy(
            update={"content": None, "uri": uri, "sha256": digest, "size": len(data)}
        )

    async def text_of(self, artifact: Artifact) -> str:
        if artifact.content is not None:
            return artifact.content
        assert artifact.uri is not None and artifact.sha256 is not None
        data = await self.aget(artifact.uri, artifact.sha256)
        return data.decode(errors="replace")
