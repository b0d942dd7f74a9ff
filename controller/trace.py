"""Request traces: `second,requests` CSVs, by name (berkeley, wits) or path, and the slice,
rate scale and time compression a run asks for.

Scaling keeps totals exact and deterministic: the scaled counts are the differences of the
rounded cumulative sum, so 0.05 x a trace of 6.7 M requests is 334,600 requests, not a
Poisson draw around it.
"""
from __future__ import annotations

import io
import os

import numpy as np

from controller.config import REPO_ROOT

TRACES_DIR = os.path.join(REPO_ROOT, "configs", "traces")
NAMED = {"berkeley": "berkeley.csv", "wits": "wits.csv"}


class TraceError(Exception):
    """A trace that cannot be replayed; the message is one line naming the problem."""


def resolve(name_or_path: str) -> str:
    if name_or_path in NAMED:
        return os.path.join(TRACES_DIR, NAMED[name_or_path])
    return name_or_path


def load_trace(name_or_path: str) -> np.ndarray:
    """Per-second request counts (int64), validated."""
    path = resolve(name_or_path)
    if not os.path.isfile(path):
        known = ", ".join(NAMED)
        raise TraceError(f"trace {name_or_path!r} not found (a path to a `second,requests` CSV, or one of: {known})")
    with open(path) as fh:
        header = fh.readline().strip().replace(" ", "").lower()
        if header != "second,requests":
            raise TraceError(f"{path}: line 1 must be the header `second,requests`, got {header[:60]!r}")
        body = fh.read()
        if not body.strip():
            raise TraceError(f"{path}: no rows after the header")
        try:
            data = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
        except ValueError as e:
            raise TraceError(f"{path}: malformed row ({str(e).splitlines()[-1][:120]})") from None
    if data.size == 0:
        raise TraceError(f"{path}: no rows after the header")
    if data.shape[1] != 2:
        raise TraceError(f"{path}: expected 2 columns (second,requests), got {data.shape[1]}")
    seconds, counts = data[:, 0], data[:, 1]
    bad = np.flatnonzero((counts < 0) | (counts != np.floor(counts)))
    if bad.size:
        raise TraceError(f"{path}: row {bad[0] + 2}: requests must be a non-negative integer, got {counts[bad[0]]}")
    if np.any(np.diff(seconds) <= 0):
        i = int(np.flatnonzero(np.diff(seconds) <= 0)[0])
        raise TraceError(f"{path}: row {i + 3}: seconds must increase, got {seconds[i + 1]:g} after {seconds[i]:g}")
    # Seconds missing from the file had no requests.
    start = int(seconds[0])
    out = np.zeros(int(seconds[-1]) - start + 1, dtype=np.int64)
    out[(seconds - start).astype(np.int64)] = counts.astype(np.int64)
    return out


def prepare(counts: np.ndarray, start_s: int = 0, duration_s: int | None = None,
            rate_scale: float = 1.0, speedup: float = 1.0) -> np.ndarray:
    """Cut [start_s, start_s + duration_s) of the trace (in trace seconds), compress time by
    `speedup` (that many trace seconds per simulated second) and scale the rate."""
    if start_s >= len(counts):
        raise TraceError(f"slice start {start_s} s is past the trace's end ({len(counts)} s)")
    end = len(counts) if duration_s is None else min(len(counts), start_s + duration_s)
    sl = counts[start_s:end].astype(np.float64)
    if speedup != 1.0:
        # Sum the trace seconds that fall in each simulated second.
        edges = np.floor(np.arange(len(sl) + 1) / speedup + 1e-9)
        cum = np.concatenate([[0.0], np.cumsum(sl)])
        last = int(edges[-1]) + (1 if edges[-1] < len(sl) / speedup else 0)
        idx = np.searchsorted(edges, np.arange(last + 1), side="left")
        sl = np.diff(cum[np.minimum(idx, len(sl))])
    cum = np.round(np.cumsum(sl * rate_scale))
    return np.diff(np.concatenate([[0.0], cum])).astype(np.int64)
