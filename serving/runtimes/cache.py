"""Where runtimes keep what they derive from a model: exported ONNX graphs, trained digits models.

One directory, `HYBRIDSERVE_CACHE` (default ~/.cache/hybridserve), shared by every process on a
machine (Ray Serve replicas, local function workers). Writers publish files atomically (write to
a temporary name, then `os.replace`) so that two processes deriving the same file at once never
let a third read half of it; both derive the same bytes, so the last rename winning is harmless.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from typing import Iterator


def cache_dir(sub: str = "") -> str:
    """The cache directory (created if missing), or its subdirectory `sub`."""
    root = os.environ.get("HYBRIDSERVE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hybridserve")
    path = os.path.join(root, sub) if sub else root
    os.makedirs(path, exist_ok=True)
    return path


def file_digest(path: str, n_hex: int = 16) -> str:
    """A short sha256 of a file's bytes: names derived files so new weights never reuse a stale export."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n_hex]


@contextmanager
def atomic_path(final_path: str) -> Iterator[str]:
    """Yield a temporary path in the same directory; on success rename it onto `final_path`."""
    directory = os.path.dirname(final_path) or "."
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(final_path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=os.path.splitext(base)[1], dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, final_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
