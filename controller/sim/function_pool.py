"""One model's function (Lambda) tier in the simulator.

Each instance serves one request at a time. Within a second the concurrency found by arrival i
is exact for the given offsets: invocations still running from earlier seconds plus earlier
arrivals of this second whose (warm) duration has not elapsed. An arrival that finds every
living instance busy starts a new one: a cold start (model load + container init). Instances
live until `keep_alive_s` after the last second that needed them, so the living count is a
sliding-window maximum of per-second peak concurrency (a monotonic deque, O(1) per second),
never below the warm pool the policy keeps pinged. Arrivals beyond the account's concurrency
limit are throttled (HTTP 429) and counted as dropped.

A partitioned model (a `partition_plan`, issue 13) runs as the plan's chain: its warm latency,
every hop billed at its own memory (the plan's cost), and a cold start that starts every hop
cold (each adds container init plus loading its share of the weights). A chain counts as one
instance towards concurrency (its hops run one after another).
"""
from __future__ import annotations

import collections
import math

import numpy as np

from controller.config import FunctionPlatformConfig
from controller.ledger import function_charge_usd
from procurement.batching import hold_budget_ms, plan_batches
from procurement.partition_planner import chain_cold_charge_usd, chain_cold_ms


_NONE = np.empty(0)
_NONE_OK = np.zeros(0, bool)


class FunctionPool:
    def __init__(self, model: str, catalog, fp: FunctionPlatformConfig):
        self.model = model
        self._catalog = catalog
        self._fp = fp
        self._profile = catalog.function_profile(model)
        self._cold_ms = catalog.model(model).cold_start_ms + fp.container_init_ms
        self._chain = None  # the PartitionPlan of a partitioned model
        self.memory_mb = 0
        self.warm_pool = 0
        self.batch_size = 1
        self.wait_ms = 0.0
        self.duration_ms = math.inf
        self._exec_ms = np.array([math.inf])  # exec_ms[b] for batches of b = 1..batch_size
        self._charge_pair = None  # $ of a warm and a cold batch-1 call (unpartitioned), once per configure
        self._carry_end_s = np.empty(0)  # end offsets (relative to the next second) still running
        self._peaks: collections.deque = collections.deque()  # (second, peak) decreasing peaks
        self.alive = 0
        # Interval statistics for the observation.
        self.peak_concurrency = 0
        self.invocations = 0
        self.cold_starts = 0
        self.duration_sum_ms = 0.0

    @property
    def deployed(self) -> bool:
        return self.memory_mb > 0 and math.isfinite(self.duration_ms)

    def configure(self, memory_mb: int, warm_pool: int, batch_size: int = 1, wait_ms: float = 0.0,
                  partition_plan=None) -> float:
        """Set memory, warm pool and batching (INFless: up to `batch_size` requests gathered for
        at most `wait_ms`, never past what their SLO allows), or the partition chain; returns
        the $ of initialising new warm instances."""
        self.memory_mb = int(memory_mb)
        self._charge_pair = None
        self.duration_ms = self._profile.latency_ms(memory_mb) if self._profile else math.inf
        self._chain = partition_plan
        model_cold_ms = self._catalog.model(self.model).cold_start_ms
        if partition_plan is not None:
            # The plan's latency counts an invoke overhead per hop; `_invoke` adds the first.
            self.duration_ms = partition_plan.latency_ms - self._fp.invoke_overhead_ms
            self._cold_ms = sum(chain_cold_ms(partition_plan, self._fp, model_cold_ms))
            batch_size = 1
        else:
            self._cold_ms = model_cold_ms + self._fp.container_init_ms
        if not math.isfinite(self.duration_ms):
            return 0.0
        self.batch_size, self.wait_ms = max(1, int(batch_size)), float(wait_ms)
        if self.batch_size > 1:
            # Latency per batch size, interpolated between the profiled ones (never faster for
            # a larger batch).
            have = sorted(self._profile.by_batch)
            lat = [self._profile.latency_ms(memory_mb, b) for b in have]
            ex = np.interp(np.arange(1, self.batch_size + 1), have, lat)
            self._exec_ms = np.concatenate([[math.inf], np.maximum.accumulate(ex)])
        else:
            self._exec_ms = np.array([math.inf, self.duration_ms])
        grow = max(0, int(warm_pool) - self.alive)
        self.warm_pool = int(warm_pool)
        self.alive = max(self.alive, self.warm_pool)
        if grow and self._fp.bill_init and self._chain is not None:
            return chain_cold_charge_usd(self._chain, self._fp, model_cold_ms) * grow
        if grow and self._fp.bill_init:
            return float(function_charge_usd(self._cold_ms, self.memory_mb, self._fp)) * grow
        return 0.0

    def prewarm_cost_per_s(self) -> float:
        """Warm-up pings: every instance of the pool pinged once per interval (1 ms each)."""
        if self.warm_pool <= 0 or not self.deployed:
            return 0.0
        mems = [p.memory_mb for p in self._chain.partitions] if self._chain is not None else [self.memory_mb]
        ping = sum(function_charge_usd(1.0, m, self._fp) for m in mems)
        return self.warm_pool * ping / self._fp.prewarm_interval_s

    def serve(self, second: int, offsets_s: np.ndarray, limit: int, slo_ms=None):
        """Run this second's requests. Returns (ok mask, latency_ms of ok, cold mask of ok,
        cost_usd of ok) and updates the living instances."""
        if self.batch_size > 1 and len(offsets_s):
            return self._serve_batched(second, offsets_s, limit, slo_ms)
        return self._invoke(second, offsets_s, limit)

    def _serve_batched(self, second, offsets_s, limit, slo_ms):
        """Gather batches (procurement.batching), run each as one invocation, and map the
        outcome back to requests: latency = queue wait + invoke + batch execution + cold start;
        each request pays its share of its batch's bill. Batches do not span seconds."""
        fp = self._fp
        slo = np.inf if slo_ms is None else slo_ms
        hold_ms = hold_budget_ms(slo, self.wait_ms, self._exec_ms[self.batch_size], fp.invoke_overhead_ms)
        plan = plan_batches(offsets_s, np.asarray(hold_ms) / 1000.0, self.batch_size)
        exec_ms = self._exec_ms[plan.size]
        ok_b, lat_b, cold_b, cost_b = self._invoke(second, plan.dispatch_s, limit, exec_ms)
        batch_of = np.repeat(np.arange(plan.size.size), plan.size)
        ok = ok_b[batch_of]
        run = np.flatnonzero(ok_b)  # index into batches that ran, in order
        pos = np.full(plan.size.size, -1)
        pos[run] = np.arange(run.size)
        k = pos[batch_of[ok]]
        lat = plan.wait_s[ok] * 1000.0 + lat_b[k]
        cost = (cost_b / plan.size[run])[k]
        return ok, lat, cold_b[k], cost

    def _invoke(self, second: int, offsets_s: np.ndarray, limit: int, exec_ms=None):
        """Run invocations starting at `offsets_s` (each `exec_ms`, default the batch-1
        duration). Returns (ok mask, latency_ms of ok, cold mask of ok, cost_usd of ok)."""
        n = len(offsets_s)
        if n == 0:
            self.idle(second)
            return _NONE_OK, _NONE, _NONE_OK, _NONE
        # Concurrency counts a call busy for its (longest) execution time.
        d_s = (self.duration_ms if exec_ms is None else float(np.max(exec_ms, initial=0.0))) / 1000.0
        carry = self._carry_end_s
        # In flight at arrival i: earlier arrivals of this second still running, plus carry-over.
        earlier = np.arange(n) - np.searchsorted(offsets_s, offsets_s - d_s, side="right")
        if carry.size:
            earlier = earlier + (carry.size - np.searchsorted(carry, offsets_s, side="right"))
        level = earlier + 1
        ok = level <= limit
        prev_max = np.maximum.accumulate(np.concatenate([[self.alive], level[:-1]]))
        cold = (level > prev_max) & ok
        dur = self.duration_ms if exec_ms is None else exec_ms
        lat_ms = self._fp.invoke_overhead_ms + dur + self._cold_ms * cold
        if self._chain is None and exec_ms is None:
            # Two possible bills (warm, cold): the same arithmetic as below, done once per configure.
            if self._charge_pair is None:
                self._charge_pair = self._charges(dur, np.array([False, True]))
            pair = self._charge_pair
            cost = pair if np.ndim(pair) == 0 else np.where(cold, pair[1], pair[0])
        else:
            cost = self._charges(dur, cold)
        if self._chain is not None:  # every hop billed at its own memory, store requests included
            cold_usd = chain_cold_charge_usd(self._chain, self._fp, self._catalog.model(self.model).cold_start_ms)
            cost = self._chain.cost_usd + cold_usd * cold
        ends = offsets_s[ok] + lat_ms[ok] / 1000.0 - 1.0
        new_carry = np.concatenate([carry - 1.0, ends])
        peak = int(level[ok].max()) if ok.any() else 0
        self._advance(second, peak, new_carry)
        k = int(ok.sum())
        self.invocations += k
        c = int(cold.sum())
        self.cold_starts += c
        self.duration_sum_ms += float(lat_ms[ok].sum())
        return ok, lat_ms[ok], cold[ok], cost[ok] if np.ndim(cost) else np.full(k, cost)

    def _charges(self, dur, cold):
        billed_ms = dur + (self._cold_ms * cold if self._fp.bill_init else 0.0)
        return function_charge_usd(billed_ms, self.memory_mb, self._fp)

    def idle(self, second: int) -> None:
        """A second without arrivals. Nothing changes while nothing runs and only the warm pool
        lives; with nothing carried over it is `_advance(second, 0, empty)` in plain Python (a
        sparse trace's deployed-but-unused pools pass here every second)."""
        carry = self._carry_end_s
        if carry.size:  # busy at this second's start; ends are kept relative to the next second
            self._advance(second, int(np.count_nonzero(carry > 0.0)), carry - 1.0)
        elif self.alive > self.warm_pool:
            dq = self._peaks
            while dq and dq[-1][1] <= 0:
                dq.pop()
            dq.append((second, 0))
            horizon = second - self._fp.keep_alive_s
            while dq and dq[0][0] <= horizon:
                dq.popleft()
            self.alive = max(self.warm_pool, dq[0][1] if dq else 0)

    def _advance(self, second: int, peak: int, carry: np.ndarray) -> None:
        carry = carry[carry > 0.0]
        carry.sort()
        self._carry_end_s = carry
        peak = max(peak, int(carry.size))
        self.peak_concurrency = max(self.peak_concurrency, peak)
        dq = self._peaks
        while dq and dq[-1][1] <= peak:
            dq.pop()
        dq.append((second, peak))
        horizon = second - self._fp.keep_alive_s
        while dq and dq[0][0] <= horizon:
            dq.popleft()
        self.alive = max(self.warm_pool, dq[0][1] if dq else 0)

    def take_interval_stats(self):
        stats = (self.peak_concurrency, self.invocations, self.cold_starts,
                 self.duration_sum_ms / self.invocations if self.invocations else 0.0)
        self.peak_concurrency = self.invocations = self.cold_starts = 0
        self.duration_sum_ms = 0.0
        return stats
