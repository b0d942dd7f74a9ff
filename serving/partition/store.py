"""Object stores for intermediate tensors too large for an invocation payload.

`ObjectStore` is the narrow seam: put, get, list and delete by prefix. Implementations:
`LocalDirObjectStore` here (the embedded default: a directory on this machine, shared by the
function worker processes) and `S3ObjectStore` in procurement/providers/aws_s3.py (boto3
through aws.py, the one module that imports it). Keys are
`<prefix><request id>/<hop>-<attempt>.npy`, so the driver of a chain can remove everything a
request wrote, even objects written by an attempt that failed before it could say so, with one
`delete_prefix`.
"""
from __future__ import annotations

import os
import tempfile
from typing import Protocol


class ObjectStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` (overwrites)."""

    def get(self, key: str) -> bytes:
        """The bytes under `key`; KeyError when there are none."""

    def list_keys(self, prefix: str = "") -> list[str]:
        """Every key starting with `prefix`, sorted."""

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with `prefix`; return how many were deleted."""


class LocalDirObjectStore:
    """Keys as files under `root` ("a/b.npy" -> root/a/b.npy); writes are atomic renames, so a
    reader in another process never sees half an object."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def _path(self, key: str) -> str:
        path = os.path.abspath(os.path.join(self.root, key))
        if not key or not path.startswith(self.root + os.sep):
            raise ValueError(f"object key escapes the store: {key!r}")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".put.", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def get(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise KeyError(key) from None

    def list_keys(self, prefix: str = "") -> list[str]:
        keys = []
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                if name.startswith(".put."):
                    continue  # a write in flight
                key = os.path.relpath(os.path.join(dirpath, name), self.root).replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        for key in keys:
            try:
                os.unlink(self._path(key))
            except FileNotFoundError:
                pass
        self._prune_empty_dirs()
        return len(keys)

    def _prune_empty_dirs(self) -> None:
        for dirpath, dirs, files in os.walk(self.root, topdown=False):
            if dirpath != self.root and not dirs and not files:
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass  # another request wrote into it meanwhile
