"""Batch queue in front of the function tier (INFless's built-in batching), pure.

Per model (and configuration), requests are gathered up to `batch_size` for at most `wait_ms`,
then one function invocation runs the whole batch. INFless accounts a request's latency as

    queue wait + batch execution (at that batch size and memory) + cold start (if any) <= SLO,

so a request may wait in the queue at most its *hold budget*

    hold_ms = min(wait_ms, slo_ms - exec_ms(batch_size) - cold_ms), never below 0.

resnet50 at 3008 MB, batch 8 (220 ms), warm, SLO 300 ms, wait 100 ms: hold = min(100, 80) = 80 ms.
The execution time at the full batch size bounds every smaller batch (latency does not fall
with batch size), so the budget holds whatever size the batch ends up. A batch is sent when it
is full or when its earliest-closing member's hold budget runs out, whichever comes first: the
queue never holds a request past the point where its SLO can still be met. A request whose
budget is already negative (no wait fits) is sent at once.

Two front ends over one rule:
- `plan_batches` (vectorised, for the simulator): given sorted arrival offsets within a window
  (e.g. one second) and the queue carried over from the previous window, the dispatch times,
  sizes and per-request waits of every batch sent within the window, and what carries over;
- `BatchQueue` (event-driven, for the live router): `offer(now_s, request, slo_ms)` and
  `due(now_s)` return the batches to send now; `next_due_s()` says when to call `due` next.
Neither reads a clock: time comes in as `now_s` or as arrival offsets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def hold_budget_ms(slo_ms, wait_ms: float, exec_ms: float, cold_ms: float = 0.0):
    """How long a request may wait in the queue: min(wait_ms, slo - exec - cold), at least 0.
    Scalar or per-request array of SLOs."""
    h = np.minimum(float(wait_ms), np.asarray(slo_ms, dtype=float) - exec_ms - cold_ms)
    h = np.maximum(h, 0.0)
    return float(h) if h.ndim == 0 else h


# --- vectorised -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CarryOver:
    """Requests still queued at the end of a window, offsets relative to the next window."""

    arrival_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hold_s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return int(self.arrival_s.size)


@dataclass(frozen=True)
class BatchPlan:
    dispatch_s: np.ndarray  # per batch, offset within the window
    size: np.ndarray  # per batch
    first: np.ndarray  # per batch: index of its first request (carried requests come first)
    wait_s: np.ndarray  # per dispatched request, in order (carried first): dispatch - arrival
    carry: CarryOver  # queued requests not yet sent at the window's end

    @property
    def num_dispatched(self) -> int:
        return int(self.wait_s.size)


def plan_batches(arrival_s, hold_s, batch_size: int, horizon_s: float = np.inf,
                 carry: CarryOver | None = None) -> BatchPlan:
    """Form batches FIFO from sorted `arrival_s` (offsets in the window) with per-request hold
    budgets `hold_s` (scalar or array; see `hold_budget_ms`), sending those whose dispatch
    time falls before `horizon_s`; the rest carry over (offsets shifted by -horizon_s).

    A batch starting at request i closes at c = min over its members j of (a_j + hold_j); it
    takes each next request that arrives by the running close time, up to `batch_size`.
    Full, it is sent when its last member arrives; otherwise at c. The loop runs once per
    batch, each step vectorised over at most `batch_size` requests."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    a = np.asarray(arrival_s, dtype=float)
    h = np.broadcast_to(np.asarray(hold_s, dtype=float), a.shape)
    if carry is not None and len(carry):
        a = np.concatenate([carry.arrival_s, a])
        h = np.concatenate([carry.hold_s, h])
    n = a.size
    if n > 1 and np.any(np.diff(a) < 0):
        raise ValueError("arrival_s must be sorted (carried-over requests first)")
    h = np.maximum(h, 0.0)
    close_at = a + h
    dispatch, sizes, firsts = [], [], []
    wait = np.empty(n)
    i = 0
    while i < n:
        end = min(i + batch_size, n)
        close = np.minimum.accumulate(close_at[i:end])
        # member k >= 1 joins iff it arrives by the close time of the first k members, and that
        # batch was not already due when member k-1 arrived (a live queue sends a batch whose
        # budget is spent at once, before a simultaneous arrival); the first refusal ends it
        joins = (a[i + 1:end] <= close[:-1]) & (close[:-1] > a[i:end - 1])
        count = 1 + (int(np.argmin(joins)) if not joins.all() else joins.size)
        t = a[i + count - 1] if count == batch_size else close[count - 1]
        if t >= horizon_s or (i + count == n and count < batch_size and close[count - 1] >= horizon_s):
            break  # not sent in this window: it and everything after carries over
        dispatch.append(t)
        sizes.append(count)
        firsts.append(i)
        wait[i:i + count] = t - a[i:i + count]
        i += count
    rest = slice(i, n)
    shift = horizon_s if np.isfinite(horizon_s) else 0.0
    return BatchPlan(np.asarray(dispatch, dtype=float), np.asarray(sizes, dtype=int), np.asarray(firsts, dtype=int),
                     wait[:i], CarryOver(a[rest] - shift, h[rest].copy()))


# --- event-driven -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    dispatch_s: float
    requests: tuple  # the offered request objects, oldest first
    wait_ms: tuple[float, ...]  # per request: dispatch - arrival

    @property
    def size(self) -> int:
        return len(self.requests)


@dataclass
class _Queued:
    arrival_s: float
    close_s: float  # arrival + hold budget
    request: Any


class BatchQueue:
    """One model's (one configuration's) batch queue for a live router.

    exec_ms: execution latency at `batch_size` for this configuration's memory size; cold_ms:
    the cold start to budget for (0 where a warm instance is expected)."""

    def __init__(self, batch_size: int, wait_ms: float, exec_ms: float, cold_ms: float = 0.0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if wait_ms < 0:
            raise ValueError(f"wait_ms must be >= 0, got {wait_ms}")
        self.batch_size = int(batch_size)
        self.wait_ms = float(wait_ms)
        self.exec_ms = float(exec_ms)
        self.cold_ms = float(cold_ms)
        self._queue: list[_Queued] = []
        self._close_s = np.inf  # the earliest close time of the queued requests

    def __len__(self) -> int:
        return len(self._queue)

    def next_due_s(self) -> float | None:
        """When the queued batch must be sent (None when empty): call `due` then."""
        return self._close_s if self._queue else None

    def _flush(self, t: float) -> Batch:
        q, self._queue, self._close_s = self._queue, [], np.inf
        return Batch(t, tuple(x.request for x in q), tuple((t - x.arrival_s) * 1000.0 for x in q))

    def due(self, now_s: float) -> list[Batch]:
        """Batches whose time has come by `now_s`, sent at their close time (the shell calls
        this at `next_due_s()`; if late, the wait is still reported from the close time)."""
        if self._queue and now_s >= self._close_s:
            return [self._flush(self._close_s)]
        return []

    def offer(self, now_s: float, request: Any, slo_ms: float) -> list[Batch]:
        """Queue `request` (arriving now with its SLO); returns the batches to send now: the
        previous batch if its time passed before this arrival, and this one if it is full or
        its hold budget is zero."""
        out = self.due(now_s) if self._queue and now_s > self._close_s else []
        hold_s = hold_budget_ms(slo_ms, self.wait_ms, self.exec_ms, self.cold_ms) / 1000.0
        self._queue.append(_Queued(now_s, now_s + hold_s, request))
        self._close_s = min(self._close_s, now_s + hold_s)
        if len(self._queue) >= self.batch_size or self._close_s <= now_s:
            out.append(self._flush(now_s))
        return out


__all__ = ["hold_budget_ms", "CarryOver", "BatchPlan", "plan_batches", "Batch", "BatchQueue"]
