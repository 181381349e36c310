"""A content-addressed store for uploaded files, shared by every service (docs/uploads.md).

A blob's key is the SHA-256 of its bytes and its path is ``<root>/<first two hex>/<key>``:
no name or path a user gave ever reaches the file system, the same photo uploaded twice is
stored once, and a key found in a message can be checked against the content. Writes go to
a temporary file in the same directory, are flushed to disk, then renamed into place, so a
reader never sees half a file and a crash leaves at most a stray ``.tmp-*`` file.

The store only keeps bytes. Who may read a blob is decided by the service that serves it,
from its own case data (services/common/uploads.py ``send_blob``).
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BlobNotFound(LookupError):
    pass


def valid_key(key) -> bool:
    return isinstance(key, str) and bool(SHA256.match(key))


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """Where blob ``key`` lives; refuses anything but 64 lowercase hex digits."""
        if not valid_key(key):
            raise BlobNotFound(f"not a blob key: {key!r}")
        return self.root / key[:2] / key

    def put(self, data: bytes) -> str:
        """Store ``data`` (atomically; a no-op if already there) and return its key."""
        key = hashlib.sha256(data).hexdigest()
        target = self.path(key)
        if target.exists():
            return key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return key

    def exists(self, key: str) -> bool:
        return valid_key(key) and self.path(key).is_file()

    def read(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def head(self, key: str, size: int = 64) -> bytes:
        """The first ``size`` bytes (to sniff the type without reading the whole file)."""
        try:
            with self.path(key).open("rb") as blob:
                return blob.read(size)
        except FileNotFoundError:
            raise BlobNotFound(key) from None


def store_for(settings) -> BlobStore:
    return BlobStore(settings.blob_root)
