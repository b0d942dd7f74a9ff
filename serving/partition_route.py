"""The live router's partitioned variants: a plan's chain of functions, deployed and driven.

When the control loop's plan carries a `SetFunctionConfig` with a `partition_plan` (AMPS-Inf,
docs/partitioning.md), the router serves that variant's function tier as the plan's chain of
functions instead of one function. This is the glue between the plan (a dict, as the daemon sends
each record with `dataclasses.asdict`) and `serving.partition.executor.ChainExecutor`:

1. `apply(variant, plan_dict, warm_pool, fp)`: rebuild the `PartitionPlan`, write its partitions'
   weight files (once, under the cache's `partitions/`) and deploy one function per partition
   on the router's `LocalFunctionProvider`; the export builds the whole network, so it runs in a
   background thread and the chain is installed when it is done (until then the variant is
   served as before). `apply(variant, None, ...)` drops the chain: the variant is whole again.
2. `run(variant, batch)` (async; the chain blocks, so it runs in a thread): one request through
   the chain, as a `ChainOutcome` shaped like a function's InvokeResult (ok, payload = class
   probabilities, cold start if any hop was cold, error) plus its cost, every hop billed, and
   the response's `target` ("chain:<plan>").
3. `stats()` / `reset_peaks()`: the chains' cumulative counters, which the router's `collect`
   reports under the variant's name (a chain is one function of the variant to the control loop).

The object store is a local directory under the cache (`partition-store/`); the executor
deletes each request's keys before it returns or raises, so nothing is left behind.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from procurement.partition_planner import LAMBDA_PAYLOAD_LIMIT_BYTES, PartitionEstimate, PartitionPlan

log = logging.getLogger("hybridserve.partition_route")

STORE_SUBDIR = "partition-store"  # the local object store under the cache (the worker's default too)


def plan_from_dict(doc: dict) -> PartitionPlan:
    """The PartitionPlan of `dataclasses.asdict(plan)` (partitions as a list or tuple of dicts)."""
    parts = tuple(PartitionEstimate(**p) for p in doc["partitions"])
    return PartitionPlan(**{**doc, "partitions": parts})


def spill_helps(idle: bool, cold_ms: list[float | None], expected_vm_ms: float) -> bool:
    """Whether spilling a request to the function tier helps: an instance is free (`idle`), or
    the cold start to pay (the sum of `cold_ms`, one per function a request goes through; one
    unknown, None, before its first) is shorter than the expected wait at the VM deployment."""
    return idle or any(ms is None for ms in cold_ms) or sum(cold_ms) < expected_vm_ms


def is_partition_function(name: str) -> bool:
    """Whether `name` is a partition function's (`<variant>-part-<start>-<end>`)."""
    from serving.partition.handler import parse_function_name

    try:
        parse_function_name(name)
    except ValueError:
        return False
    return True


def worker_env(weights_dir: str | None = None, store_dir: str | None = None) -> dict[str, str]:
    """The environment partition workers need: where the store and the weight files are."""
    from serving.partition.weights import default_weights_dir
    from serving.runtimes.cache import cache_dir

    return {"HYBRIDSERVE_PARTITION_STORE": store_dir or cache_dir(STORE_SUBDIR),
            "HYBRIDSERVE_PARTITION_WEIGHTS": weights_dir or default_weights_dir()}


@dataclass(frozen=True)
class ChainOutcome:
    """One request through a chain, in the terms the router's function branch reads."""

    ok: bool
    payload: np.ndarray | None   # class probabilities (softmax of the last partition's logits)
    cold_start: bool             # any hop started cold
    usd: float                   # every hop billed (failed attempts and store requests included)
    error: str | None = None
    latency_ms: float = 0.0
    target: str = "chain"        # the response's `target`: "chain:[0,2)@1024 + [2,10)@1024"


@dataclass
class _Chain:
    plan: PartitionPlan
    dep: object                   # PartitionedDeployment
    warm_pool: int = 0


class PartitionRoutes:
    """The partitioned variants of one router. Thread-safe."""

    def __init__(self, provider, timeout_s: float = 60.0, max_attempts: int = 2,
                 payload_limit_bytes: int = LAMBDA_PAYLOAD_LIMIT_BYTES, env: dict[str, str] | None = None,
                 max_chains: int = 4):
        from serving.partition.executor import ChainExecutor
        from serving.partition.store import LocalDirObjectStore

        env = env or worker_env()
        self.provider = provider
        self.weights_dir = env["HYBRIDSERVE_PARTITION_WEIGHTS"]
        self.store = LocalDirObjectStore(env["HYBRIDSERVE_PARTITION_STORE"])
        self.executor = ChainExecutor(provider, self.store, payload_limit_bytes=payload_limit_bytes,
                                      max_attempts=max_attempts, timeout_s=timeout_s, store_prefix="live/")
        self._lock = threading.Lock()
        self._chains: dict[str, _Chain] = {}        # installed: requests go through these
        self._wanted: dict[str, PartitionPlan] = {}  # being prepared (weights export in flight)
        self._ready = threading.Condition(self._lock)
        # Requests through chains and prewarm pings run on these threads (a chain blocks on each
        # hop). The local provider forks every worker from one process-lifetime thread, so a
        # worker does not depend on the thread that invoked it. Enough for a prewarm of every hop
        # (K <= 4) at the provider's concurrency at once.
        self._pool = ThreadPoolExecutor(max_workers=4 * max(1, max_chains), thread_name_prefix="partition-chain")
        self._prewarming: dict[str, int] = {}
        # Cumulative per variant, for `collect`: chain requests, cold ones, summed latency, errors.
        self._counts: dict[str, dict] = {}
        self._inflight: dict[str, int] = {}
        self._peak: dict[str, int] = {}
        self.last_error: dict[str, str] = {}

    # --- the plan -------------------------------------------------------------------------------
    def apply(self, variant: str, plan: dict | PartitionPlan | None, warm_pool: int = 0, fp=None) -> None:
        """Serve `variant` as `plan`'s chain (None: whole again). Re-applying the same plan only
        updates the warm pool and prices."""
        if fp is not None:
            self.executor.fp = fp
        with self._lock:
            if plan is None:
                self._wanted.pop(variant, None)
                if self._chains.pop(variant, None) is not None:
                    log.info("%s: served whole again (chain dropped)", variant)
                return
            plan = plan if isinstance(plan, PartitionPlan) else plan_from_dict(plan)
            current = self._chains.get(variant)
            if current is not None and current.plan.partitions == plan.partitions:
                current.plan, current.warm_pool = plan, int(warm_pool)  # same functions: nothing to deploy
                self._wanted.pop(variant, None)
                return
            if self._wanted.get(variant) is not None and self._wanted[variant].partitions == plan.partitions:
                return  # already being prepared
            self._wanted[variant] = plan
        threading.Thread(target=self._prepare, args=(variant, plan, int(warm_pool)),
                         name=f"partition-{variant}", daemon=True).start()

    def _prepare(self, variant: str, plan: PartitionPlan, warm_pool: int) -> None:
        from serving.partition.executor import PartitionedDeployment
        from serving.partition.weights import export_partition_weights

        try:
            # Written once: only missing files are (the whole network is built only then).
            export_partition_weights(variant, [(p.start, p.end) for p in plan.partitions], self.weights_dir)
            dep = PartitionedDeployment.from_plan(plan)
            self.executor.deploy(dep)
        except Exception as e:  # the variant stays served as it was; the error shows in status
            log.exception("%s: could not prepare the chain %s", variant, plan.describe())
            with self._lock:
                self.last_error[variant] = f"prepare {plan.describe()}: {type(e).__name__}: {e}"
                if self._wanted.get(variant) is plan:
                    del self._wanted[variant]
                self._ready.notify_all()
            return
        with self._lock:
            if self._wanted.get(variant) is not plan:
                return  # a later plan replaced this one meanwhile
            del self._wanted[variant]
            self._chains[variant] = _Chain(plan, dep, warm_pool)
            self._ready.notify_all()
        log.info("%s: served as the chain %s", variant, plan.describe())

    def wait_ready(self, variant: str, timeout_s: float) -> bool:
        """Wait until nothing is being prepared for `variant`; whether a chain is installed."""
        with self._lock:
            self._ready.wait_for(lambda: variant not in self._wanted, timeout_s)
            return variant in self._chains

    def get(self, variant: str) -> PartitionPlan | None:
        """The plan `variant` is served with (None: whole, or its chain not ready yet)."""
        with self._lock:
            chain = self._chains.get(variant)
            return None if chain is None else chain.plan

    def pending(self, variant: str) -> bool:
        """Whether a chain for `variant` is being prepared (not installed yet)."""
        with self._lock:
            return variant in self._wanted

    def function_names(self, variant: str) -> list[str]:
        with self._lock:
            chain = self._chains.get(variant)
            return [] if chain is None else list(chain.dep.function_names)

    # --- requests -------------------------------------------------------------------------------
    def infer(self, variant: str, batch: np.ndarray) -> ChainOutcome:
        """One request through `variant`'s chain (blocking). A failure is an outcome, not raised."""
        from serving.runtimes import softmax

        with self._lock:
            chain = self._chains.get(variant)
            if chain is None:
                return ChainOutcome(False, None, False, 0.0, f"error: {variant} has no chain")
            n = self._inflight[variant] = self._inflight.get(variant, 0) + 1
            self._peak[variant] = max(self._peak.get(variant, 0), n)
            c = self._counts.setdefault(variant, {"invocations": 0, "cold_starts": 0, "duration_ms_sum": 0.0,
                                                  "errors": 0, "usd": 0.0})
        try:
            res = self.executor.infer(chain.dep, batch)
        except Exception as e:  # a chain error, the store's OSError, a provider raising: an outcome
            with self._lock:
                c["errors"] += 1
                self.last_error[variant] = str(e)
            # What the failed hops cost is in the executor's ledger; the router bills only
            # answered requests, like a failed single function call.
            return ChainOutcome(False, None, False, 0.0, f"error: {e}")
        finally:
            with self._lock:
                self._inflight[variant] -= 1
        cold = any(h.cold_start for h in res.hops)
        with self._lock:
            c["invocations"] += 1
            c["cold_starts"] += int(cold)
            c["duration_ms_sum"] += res.latency_ms
            c["usd"] += res.cost_usd
        probs = softmax(np.asarray(res.output, np.float32)).astype(np.float32)
        return ChainOutcome(True, probs, cold, res.cost_usd, None, res.latency_ms, f"chain:{chain.plan.describe()}")

    async def run(self, variant: str, batch: np.ndarray) -> ChainOutcome:
        """`infer` in one of this object's threads: the chain blocks on each hop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.infer, variant, batch)

    def prewarm(self, variant: str, pool: int | None = None, rounds: int = 3) -> None:
        """Bring every hop of `variant`'s chain to `pool` instances (None: the chain's planned
        warm pool), in the background, with warm-up pings (billed by the provider like any
        invocation). The ping has no tensor: the worker loads its blocks (the cold start) and
        answers it with an error, which leaves the instance warm. A no-op while a prewarm of
        `variant` runs."""
        with self._lock:
            chain = self._chains.get(variant)
            if variant in self._prewarming or chain is None:
                return
            pool = chain.warm_pool if pool is None else int(pool)
            if pool <= 0:
                return
            self._prewarming[variant] = pool
        # Its own thread, not the pool: it waits on pings submitted to the pool, and a pool
        # whose threads all wait on work queued behind them never finishes.
        threading.Thread(target=self._prewarm, args=(variant, pool, rounds), name=f"prewarm-{variant}",
                         daemon=True).start()

    def _prewarm(self, variant: str, pool: int, rounds: int) -> None:
        import concurrent.futures

        try:
            for _ in range(rounds):
                stats = self.provider.stats()
                short = [n for n in self.function_names(variant) if stats.get(n, {}).get("instances", 0) < pool]
                if not short:
                    return
                # `pool` pings per short hop, released together: those that find an idle instance
                # keep it busy while the others start new ones. A warm ping answers in
                # milliseconds and may free its instance before another ping acquires one:
                # then the next round starts what is still missing.
                start = threading.Barrier(len(short) * pool)

                def ping(name):
                    try:
                        start.wait(timeout=5.0)
                    except threading.BrokenBarrierError:
                        pass
                    return self.provider.invoke(name, {"warmup": True}, self.executor.timeout_s)
                futures = [self._pool.submit(ping, n) for n in short for _ in range(pool)]
                concurrent.futures.wait(futures)
                for f in futures:
                    if f.exception() is not None:  # the provider raised (not the ping's error reply)
                        log.warning("%s: a prewarm ping failed: %r", variant, f.exception())
        finally:
            with self._lock:
                self._prewarming.pop(variant, None)

    def prewarm_done(self, variant: str) -> bool:
        with self._lock:
            return variant not in self._prewarming

    def faster(self, variant: str, expected_vm_ms: float) -> bool:
        """Spill to the chain only where it helps: every hop has a warm instance free, or the
        chain's cold start (its hops' measured cold durations; unknown before the first) is
        shorter than the expected wait at the VM deployment."""
        names = self.function_names(variant)
        idle = all(self.provider.has_idle(n) for n in names)
        return spill_helps(idle, [] if idle else [self.provider.cold_start_ms(n) for n in names], expected_vm_ms)

    # --- what collect and status read -----------------------------------------------------------
    def warm_instances(self, variant: str) -> int:
        """Chains that can run warm at once: the fewest instances of any hop."""
        names = self.function_names(variant)
        stats = self.provider.stats()
        return min((stats.get(n, {}).get("instances", 0) for n in names), default=0)

    def stats(self) -> dict[str, dict]:
        """Per variant ever chained: cumulative invocations, cold starts, summed latency (ms),
        errors and cost, the peak of chains in flight since `reset_peaks`, warm chains now."""
        with self._lock:
            out = {v: {**c, "peak_concurrency": self._peak.get(v, 0)} for v, c in self._counts.items()}
        for v in out:
            out[v]["instances"] = self.warm_instances(v)
        return out

    def reset_peaks(self) -> None:
        with self._lock:
            self._peak = dict(self._inflight)

    def status(self) -> dict:
        """For /status: each chained variant's plan, functions and counters."""
        with self._lock:
            chains = {v: (c.plan, list(c.dep.function_names), c.warm_pool) for v, c in self._chains.items()}
            pending = {v: p.describe() for v, p in self._wanted.items()}
            errors = dict(self.last_error)
        counts = self.stats()
        out = {v: {"plan": p.describe(), "functions": names, "warm_pool": wp,
                   "predicted_latency_ms": round(p.latency_ms, 1), "predicted_usd": p.cost_usd,
                   **{k: counts.get(v, {}).get(k, 0) for k in ("invocations", "cold_starts", "errors", "usd")}}
               for v, (p, names, wp) in chains.items()}
        for v, d in pending.items():
            out.setdefault(v, {})["preparing"] = d
        for v, e in errors.items():
            out.setdefault(v, {})["last_error"] = e
        return out
