"""The arrival history a predictor keeps: per-second counts folded into fixed buckets.

Every predictor forecasts over the VM procurement horizon in units of *bucket rates*: the mean
requests/s over consecutive `bucket_s`-second buckets (10 s by default, the control tick). The
per-second counts are summed into buckets as they arrive, so `observe` is O(len(counts)) and the
state is one ring of bucket rates (two days of 10-s buckets = 17,280 floats, 138 kB).

Buckets are aligned to the first second ever observed (second 0 of a trace in the simulator),
so a tick every `bucket_s` seconds closes exactly one bucket.
"""
from __future__ import annotations

import numpy as np


class BucketHistory:
    """A ring of the most recent `capacity` completed bucket rates (requests/s)."""

    def __init__(self, bucket_s: int, capacity: int):
        if bucket_s < 1 or capacity < 1:
            raise ValueError(f"bucket_s ({bucket_s}) and capacity ({capacity}) must be >= 1")
        self.bucket_s = int(bucket_s)
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity)
        self.num_done = 0  # completed buckets ever (bucket k is stored at k % capacity)
        self.origin_s: int | None = None  # start of bucket 0
        self.end_s: int | None = None  # first second not yet observed
        self._partial_sum = 0.0  # requests in the open bucket so far
        self._partial_n = 0  # seconds in the open bucket so far

    # --- writing -------------------------------------------------------------------------------
    def observe(self, now_s: float, counts_per_s: np.ndarray) -> None:
        """Append the per-second counts of seconds [now_s - len, now_s).

        Seconds skipped since the last call count as zero arrivals (nothing was reported);
        seconds observed twice are an error, since a double count would inflate the forecast.
        """
        counts = np.asarray(counts_per_s, dtype=float)
        if counts.ndim != 1:
            raise ValueError(f"counts_per_s must be 1-D (one model's counts), got shape {counts.shape}")
        if counts.size and (not np.all(np.isfinite(counts)) or counts.min() < 0):
            raise ValueError("counts_per_s must be finite and >= 0")
        end_s = int(round(now_s))
        if abs(now_s - end_s) > 1e-6:
            raise ValueError(f"now_s must fall on a whole second, got {now_s}")
        start_s = end_s - counts.size
        if self.end_s is None:
            self.origin_s = self.end_s = start_s
        if start_s < self.end_s:
            raise ValueError(f"counts for seconds [{start_s}, {end_s}) overlap seconds already "
                             f"observed (up to {self.end_s}); time must not go backwards")
        if start_s > self.end_s:
            self._feed_zeros(start_s - self.end_s)
        self._feed(counts)
        self.end_s = end_s

    def _feed(self, counts: np.ndarray) -> None:
        bs = self.bucket_s
        need = bs - self._partial_n
        if counts.size < need:
            self._partial_sum += float(counts.sum())
            self._partial_n += counts.size
            return
        first = self._partial_sum + float(counts[:need].sum())
        rest = counts[need:]
        num_full = rest.size // bs
        sums = np.concatenate(([first], rest[:num_full * bs].reshape(num_full, bs).sum(axis=1)))
        self._push(sums / bs)
        tail = rest[num_full * bs:]
        self._partial_sum = float(tail.sum())
        self._partial_n = tail.size

    def _feed_zeros(self, num_s: int) -> None:
        # A long silence need not allocate num_s zeros: close the open bucket, then push at most
        # `capacity` empty buckets while counting all of them.
        bs = self.bucket_s
        need = bs - self._partial_n
        if num_s < need:
            self._partial_n += num_s
            return
        self._push(np.array([self._partial_sum / bs]))
        num_full, self._partial_n = divmod(num_s - need, bs)
        self._partial_sum = 0.0
        if num_full > self.capacity:
            self.num_done += num_full - self.capacity
            num_full = self.capacity
        self._push(np.zeros(num_full))

    def _push(self, rates: np.ndarray) -> None:
        if rates.size > self.capacity:
            self.num_done += rates.size - self.capacity
            rates = rates[-self.capacity:]
        idx = (self.num_done + np.arange(rates.size)) % self.capacity
        self._buf[idx] = rates
        self.num_done += rates.size

    # --- reading -------------------------------------------------------------------------------
    @property
    def num_kept(self) -> int:
        return min(self.num_done, self.capacity)

    def recent(self, n: int | None = None) -> np.ndarray:
        """The last min(n, kept) completed bucket rates, oldest first (a copy)."""
        kept = self.num_kept if n is None else min(n, self.num_kept)
        if kept <= 0:
            return np.zeros(0)
        idx = (self.num_done - kept + np.arange(kept)) % self.capacity
        return self._buf[idx]

    def bucket_end_s(self, k: np.ndarray | int) -> np.ndarray | float:
        """End time (exclusive, in observed seconds) of bucket index k."""
        return (self.origin_s or 0) + (np.asarray(k) + 1) * self.bucket_s
