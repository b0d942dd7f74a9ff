"""Batch queues in front of the live function tier (INFless's built-in batching, issue 12).

The asyncio shell over `procurement.batching.BatchQueue` (the pure rule the simulator shares):
per model, requests are gathered up to `batch_size` for at most `wait_ms`, then ONE function
invocation runs the concatenated batch (the provider's `invoke(model, N×C×H×W, timeout_s)` runs
a whole batch in one instance; it blocks, so it runs in a thread), the reply is split back to
each caller, and a failed invocation fails every caller of that batch.

SLO (INFless's accounting: queue wait + batch execution + cold start <= SLO): a request may
wait at most `min(wait_ms, slo_left_ms - slack_ms - exec_ms - cold_ms)` (`hold_budget_ms`), where
- slo_left_ms is what the router has left of the request's SLO when it reaches the queue;
- slack_ms (`serving.functions.batch_slack_ms`) is kept for the path around the invocation
  that the router does not see (proxy, reply, network): without it a request held to the last
  millisecond misses its SLO by that path's time (37% of requests did on this loaded machine);
- exec_ms is the expected execution of a full batch, from this model's measured warm
  invocations (`exec_ms`; unknown before the first: no hold, the request goes at once);
- cold_ms is 0 when a warm instance of the model is idle, else the model's measured cold start
  (unknown: no hold).
The batch is sent when full or when its earliest member's budget runs out, whichever is first.
E.g. SLO 200 ms, 10 ms spent in the router, slack 0, batch of 8 measured at 40 ms, warm, wait
100 ms: hold = min(100, 190 - 40) = 100 ms; with a 120 ms SLO: min(100, 110 - 40) = 70 ms.

Non-uniform configurations: several `BatchConfig`s for one model each take a band
[rate_lo_per_s, rate_hi_per_s) of its spill rate, filled from the bottom (as the simulator's
`controller/sim/function_tier.py`). The rate is measured over the last `window_s` of requests
offered here; each request goes to a band in proportion to the band's share of that rate, by
smooth weighted round robin (deterministic, exact proportions, no RNG). At 8 req/s with bands
[0, 5) and [5, inf): 5 of every 8 requests to the bottom configuration, 3 to the top one.

Limits: the local provider holds one memory size per model, so a model's configurations share
the bottom band's memory and differ in batch size and wait. A request that already carries
several samples is a batch of its own: it is sent at once, alone. One configuration of batch
size 1 (the default) is exactly the unbatched path: one invoke per request, nothing queued.

Billing: each invocation is charged once; a request's share of it is `1 / shared_by` of the
invocation's charge (`BatchedResult.shared_by`).
"""
from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Awaitable, Callable, Protocol, Sequence

import numpy as np

from procurement.batching import BatchQueue
from procurement.providers.base import InvokeResult

EXEC_EWMA_WEIGHT = 0.3  # weight of the newest warm duration in a batch size's running estimate
NO_SLO_MS = 1e9


class BatchingProvider(Protocol):
    """What the batcher needs of a function provider (LocalFunctionProvider has it all)."""

    def invoke(self, model: str, payload: Any, timeout_s: float) -> InvokeResult: ...

    def has_idle(self, model: str) -> bool: ...

    def cold_start_ms(self, model: str) -> float | None: ...


@dataclass(frozen=True)
class BatchConfig:
    """One batch configuration of a model's function: the live side of SetFunctionConfig."""

    batch_size: int = 1
    wait_ms: float = 0.0
    rate_lo_per_s: float = 0.0
    rate_hi_per_s: float = math.inf

    def __post_init__(self):
        if self.batch_size < 1 or self.wait_ms < 0 or not self.rate_lo_per_s < self.rate_hi_per_s:
            raise ValueError(f"bad batch configuration {self}")

    @classmethod
    def of(cls, record) -> "BatchConfig":
        """From a SetFunctionConfig-shaped dict or object (missing fields: unbatched)."""
        get = record.get if isinstance(record, dict) else lambda k, d=None: getattr(record, k, d)
        return cls(int(get("batch_size", 1) or 1), float(get("wait_ms", 0.0) or 0.0),
                   float(get("rate_lo_per_s", 0.0) or 0.0), float(get("rate_hi_per_s", math.inf) or math.inf))


PLAIN = (BatchConfig(),)


@dataclass(frozen=True)
class BatchedResult(InvokeResult):
    """One caller's part of an invocation: its rows of the reply, the invocation's duration,
    billed time and cold start, how many requests shared it and how long this one queued."""

    shared_by: int = 1
    queue_ms: float = 0.0

    @classmethod
    def alone(cls, res: InvokeResult, queue_ms: float = 0.0) -> "BatchedResult":
        return cls(res.ok, res.payload, res.duration_ms, res.billed_ms, res.cold_start, res.error, 1, queue_ms)


@dataclass
class _Pending:
    x: np.ndarray
    future: asyncio.Future
    arrival_s: float
    timeout_s: float


def band_shares(configs: Sequence[BatchConfig], rate_per_s: float) -> np.ndarray:
    """The rate each configuration takes at this spill rate (fill-first: band [lo, hi) takes
    clip(rate - lo, 0, hi - lo)). Bands [0, 5), [5, inf) at 8 req/s: [5, 3]."""
    return np.array([max(0.0, min(rate_per_s, c.rate_hi_per_s) - c.rate_lo_per_s) for c in configs])


class _Model:
    """One model's configurations, their queues and timers, and its measured spill rate."""

    def __init__(self, configs: Sequence[BatchConfig], window_s: float):
        self.configs = tuple(sorted(configs, key=lambda c: c.rate_lo_per_s)) or PLAIN
        self.queues = [BatchQueue(c.batch_size, c.wait_ms, math.inf) for c in self.configs]
        self.timers: list[asyncio.TimerHandle | None] = [None] * len(self.configs)
        self.credit = np.zeros(len(self.configs))
        self.arrivals_s: deque[float] = deque()
        self.window_s = window_s

    @property
    def plain(self) -> bool:
        return len(self.configs) == 1 and self.configs[0].batch_size == 1

    def rate_per_s(self, now_s: float) -> float:
        self.arrivals_s.append(now_s)
        while self.arrivals_s and self.arrivals_s[0] <= now_s - self.window_s:
            self.arrivals_s.popleft()
        return len(self.arrivals_s) / self.window_s

    def band(self, rate_per_s: float) -> int:
        """The configuration for the next request at this spill rate: fill-first band shares,
        spread by smooth weighted round robin."""
        if len(self.configs) == 1:
            return 0
        share = band_shares(self.configs, rate_per_s)
        if share.sum() <= 0:
            return 0
        self.credit += share / share.sum()
        b = int(np.argmax(self.credit))
        self.credit[b] -= 1.0
        return b


Runner = Callable[..., Awaitable[InvokeResult]]  # runner(fn, *args): fn(*args) without blocking the loop


class FunctionBatcher:
    """Per-model batch queues in front of a function provider. Use from one event loop."""

    def __init__(self, provider: BatchingProvider, run_blocking: Runner = asyncio.to_thread, window_s: float = 2.0,
                 slack_ms: float = 0.0):
        self.provider = provider
        self.slack_ms = slack_ms  # of the SLO, left for the path around the invocation
        self._run = run_blocking
        self.window_s = window_s
        self._models: dict[str, _Model] = {}
        self._exec_ms: dict[str, dict[int, float]] = {}  # model -> samples -> warm duration (running)
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop serving requests, once one has
        self.invocations: dict[str, int] = {}
        self.requests: dict[str, int] = {}

    # --- configuration (the control loop's plan, or static settings) ---------------------------
    def configure(self, model: str, configs: Sequence[BatchConfig], memory_changed: bool = False) -> None:
        """Replace `model`'s configurations (bottom band first or any order). Requests queued
        under the old ones are sent at once; a new memory size forgets the measured durations.
        Safe from any thread: the control loop's call may arrive on another thread than the
        event loop serving requests, which then makes the change itself."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                here = asyncio.get_running_loop()
            except RuntimeError:
                here = None
            if here is not loop:
                loop.call_soon_threadsafe(self._configure, model, tuple(configs), memory_changed)
                return
        self._configure(model, tuple(configs), memory_changed)

    def _configure(self, model: str, configs: tuple[BatchConfig, ...], memory_changed: bool) -> None:
        old = self._models.get(model)
        new = tuple(configs) or PLAIN
        if old is not None and old.configs == tuple(sorted(new, key=lambda c: c.rate_lo_per_s)):
            if memory_changed:
                self._exec_ms.pop(model, None)
            return
        self._models[model] = _Model(new, self.window_s)
        if memory_changed:
            self._exec_ms.pop(model, None)
        if old is not None:
            for b, q in enumerate(old.queues):
                if old.timers[b] is not None:
                    old.timers[b].cancel()
                for batch in q.due(math.inf):
                    self._send(model, batch.requests)

    def queued(self, model: str) -> int:
        """Requests of `model` waiting in its queues now (a new one can join their batch rather
        than need an idle instance of its own)."""
        m = self._models.get(model)
        return sum(len(q) for q in m.queues) if m is not None else 0

    def configs(self, model: str) -> tuple[BatchConfig, ...]:
        m = self._models.get(model)
        return m.configs if m is not None else PLAIN

    # --- estimates ------------------------------------------------------------------------------
    def exec_ms(self, model: str, samples: int) -> float:
        """Expected warm execution of a batch of `samples`: inf before any warm invocation of
        the model; the running estimate at that size where measured; below the largest size
        measured, the next larger one's (latency does not fall with batch size); above it, an
        affine fit d(n) = a + c n over the sizes measured (slope >= 0; never below the largest
        size's own), or with one size k alone the linear bound d(k) n / k (a batch costs at most
        its requests one by one). E.g. 15 ms at 1 and 16 ms at 2: 22 ms at 8; 15 ms at 1 alone:
        120 ms at 8."""
        seen = self._exec_ms.get(model)
        if not seen:
            return math.inf
        if samples in seen:
            return seen[samples]
        larger = [d for k, d in seen.items() if k > samples]
        if larger:
            return min(larger)
        k_max = max(seen)
        if len(seen) == 1:
            return seen[k_max] * samples / k_max
        ks = np.array(sorted(seen), dtype=float)
        ds = np.array([seen[int(k)] for k in ks])
        slope, intercept = np.polyfit(ks, ds, 1)
        if slope < 0:
            slope, intercept = 0.0, float(ds.max())
        return max(seen[k_max], float(intercept + slope * samples))

    def _cold_ms(self, model: str) -> float:
        if self.provider.has_idle(model):
            return 0.0
        cold = self.provider.cold_start_ms(model)
        return math.inf if cold is None else float(cold)

    def _learn(self, model: str, samples: int, res: InvokeResult) -> None:
        if not res.ok or res.cold_start:
            return
        seen = self._exec_ms.setdefault(model, {})
        old = seen.get(samples)
        seen[samples] = res.duration_ms if old is None else old + EXEC_EWMA_WEIGHT * (res.duration_ms - old)

    # --- the hot path ---------------------------------------------------------------------------
    async def invoke(self, model: str, batch: np.ndarray, timeout_s: float,
                     slo_left_ms: float = math.inf) -> BatchedResult:
        """Run `batch` (N×...) on `model`'s function, batched with other requests where its
        configuration says so and the SLO left (`slo_left_ms`) allows; this caller's rows."""
        loop = self._loop = asyncio.get_running_loop()
        m = self._models.get(model)
        if m is None or m.plain:
            return await self._alone(model, batch, timeout_s)
        now_s = loop.time()
        b = m.band(m.rate_per_s(now_s))
        cfg, q = m.configs[b], m.queues[b]
        if cfg.batch_size == 1 or batch.shape[0] > 1:
            return await self._alone(model, batch, timeout_s)
        q.exec_ms, q.cold_ms = self.exec_ms(model, cfg.batch_size), self._cold_ms(model)
        pending = _Pending(batch, loop.create_future(), now_s, timeout_s)
        # An SLO-less request (inf) must still get no hold while exec or cold is unknown (inf):
        # a finite stand-in keeps inf - inf from turning the budget into NaN.
        for ready in q.offer(now_s, pending, min(slo_left_ms - self.slack_ms, NO_SLO_MS)):
            self._send(model, ready.requests)
        self._arm(model, m, b)
        return await pending.future

    async def _alone(self, model: str, batch: np.ndarray, timeout_s: float) -> BatchedResult:
        res = await self._call(model, batch, timeout_s)
        self._learn(model, batch.shape[0], res)
        self._count(model, 1)
        return BatchedResult.alone(res)

    async def _call(self, model: str, x: np.ndarray, timeout_s: float) -> InvokeResult:
        """One provider invocation; an exception from the provider is a failed result, batched or
        not (a provider must report errors, but a batched caller must never hang on one)."""
        try:
            return await self._run(self.provider.invoke, model, x, timeout_s)
        except Exception as e:
            return InvokeResult(False, None, 0.0, 0.0, False, f"error: {type(e).__name__}: {e}")

    def _arm(self, model: str, m: _Model, b: int) -> None:
        """(Re)schedule the queue's flush at its earliest member's close time."""
        if m.timers[b] is not None:
            m.timers[b].cancel()
            m.timers[b] = None
        due_s = m.queues[b].next_due_s()
        if due_s is not None:
            m.timers[b] = asyncio.get_running_loop().call_at(due_s, self._on_due, model, m, b, due_s)

    def _on_due(self, model: str, m: _Model, b: int, due_s: float) -> None:
        m.timers[b] = None
        if self._models.get(model) is not m:
            return  # reconfigured meanwhile: its queues were flushed then
        # The loop may run a timer up to its clock resolution early: it is due at due_s anyway.
        for ready in m.queues[b].due(max(asyncio.get_running_loop().time(), due_s)):
            self._send(model, ready.requests)
        self._arm(model, m, b)

    def _send(self, model: str, pendings: Sequence[_Pending]) -> None:
        task = asyncio.get_running_loop().create_task(self._invoke_batch(model, list(pendings)))
        self._tasks.add(task)  # a reference until done (the loop keeps only weak ones)
        task.add_done_callback(self._tasks.discard)

    async def _invoke_batch(self, model: str, pendings: list[_Pending]) -> None:
        n = len(pendings)
        sent_s = asyncio.get_running_loop().time()
        x = pendings[0].x if n == 1 else np.concatenate([p.x for p in pendings], axis=0)
        res = await self._call(model, x, min(p.timeout_s for p in pendings))
        self._learn(model, x.shape[0], res)
        self._count(model, n)
        rows = None
        if res.ok:
            rows = np.asarray(res.payload)
            if rows.ndim < 1 or rows.shape[0] != x.shape[0]:
                got = rows.shape[0] if rows.ndim else 0
                res = InvokeResult(False, None, res.duration_ms, res.billed_ms, res.cold_start,
                                   f"error: reply has {got} rows for {x.shape[0]} samples")
        start = 0
        for p in pendings:
            end = start + p.x.shape[0]
            if not p.future.done():  # else the caller went away (cancelled)
                p.future.set_result(BatchedResult(res.ok, rows[start:end] if res.ok else None, res.duration_ms,
                                                  res.billed_ms, res.cold_start, res.error, n,
                                                  (sent_s - p.arrival_s) * 1000.0))
            start = end

    def _count(self, model: str, requests: int) -> None:
        self.invocations[model] = self.invocations.get(model, 0) + 1
        self.requests[model] = self.requests.get(model, 0) + requests

    def stats(self) -> dict[str, dict]:
        """Per model: configurations, invocations and requests through the batcher, mean batch."""
        out = {}
        for model in set(self._models) | set(self.invocations):
            inv, req = self.invocations.get(model, 0), self.requests.get(model, 0)
            out[model] = {"configs": [asdict(c) for c in self.configs(model)], "invocations": inv,
                          "requests": req, "mean_batch": req / inv if inv else 0.0}
        return out


__all__ = ["band_shares", "BatchConfig", "BatchedResult", "BatchingProvider", "FunctionBatcher", "PLAIN"]
