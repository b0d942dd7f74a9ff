"""The router replica's side door for the control loop (DeploymentHandle calls from the
daemon): `collect(now_s)` hands over what was measured since the last tick, `apply_control`
carries out the router's part of a Plan (routes, function memory and warm pool, VM targets,
cost per request, the status shown by /status and /metrics); `_init_function_batcher` sets up the
batch queues in front of the functions, which the plan's function configurations (batch size,
wait, spill-rate band) reconfigure. A mixin of
`serving.router_app.Router`, kept apart so the protocol endpoints stay in one file of their own.
"""
import logging
import threading

import numpy as np
from ray import serve

from controller.ledger import function_charge_usd
from serving.function_batcher import BatchConfig, FunctionBatcher
from serving.runtimes import spec_of

from serving.routing import HEAD  # noqa: E402,F401  (the head's target key; re-exported)

log = logging.getLogger("hybridserve.router_control")


class ControlSideDoor:
    def _init_function_batcher(self) -> None:
        """The batch queues in front of the functions (serving.function_batcher), with the
        static configurations of `serving.functions.batching` until the plan brings its own."""
        from serving.partition_route import PartitionRoutes

        self.fn_batcher = FunctionBatcher(self.functions, slack_ms=self.settings.functions.batch_slack_ms)
        # Prewarm invocations run on short-lived threads of their own (`_prewarm`): the local
        # provider forks every worker from one process-lifetime thread, so an instance does not
        # die with the thread whose invocation started it.
        self.prewarm_errors = 0  # prewarm invocations that raised (each logged)
        self._prewarm_errors_lock = threading.Lock()
        # Variants a plan serves as a chain of functions (serving.partition_route), on the same provider.
        self.partitions = PartitionRoutes(self.functions, timeout_s=self.settings.functions.timeout_s,
                                          env=getattr(self.functions, "worker_env", None) or None,
                                          max_chains=self.settings.functions.concurrency_limit)
        for v, options in self.settings.functions.batching.items():
            if v in self.fn_memory:
                self.fn_batcher.configure(v, [BatchConfig.of(o.model_dump()) for o in options])

    def collect(self, now_s: float) -> dict:
        """What was measured since the last call: telemetry, VM backlogs, function interval stats."""
        if self._collect_faults > 0:  # injected (POST /admin/faults): the loop must survive it
            self._collect_faults -= 1
            raise RuntimeError("injected fault: collect failed")
        out = self.telemetry.take(now_s)
        out["classes"], out["models"] = list(self.core.apps), list(self.core.variants)
        out["backlog"] = dict(self.core.inflight_vm)
        functions = {}
        for v, st in self._variant_function_stats().items():
            prev = self._fn_prev.get(v, {"invocations": 0, "cold_starts": 0, "duration_ms_sum": 0.0})
            inv = st["invocations"] - prev["invocations"]
            dur_sum = st["mean_duration_ms"] * st["invocations"]
            functions[v] = {"memory_mb": self.fn_memory.get(v, st["memory_mb"]), "warm_instances": st["instances"],
                            "peak_concurrency": st["peak_concurrency"], "invocations": inv,
                            "cold_starts": st["cold_starts"] - prev["cold_starts"],
                            "mean_duration_ms": (dur_sum - prev["duration_ms_sum"]) / inv if inv else 0.0}
            self._fn_prev[v] = {"invocations": st["invocations"], "cold_starts": st["cold_starts"],
                                "duration_ms_sum": dur_sum}
        self.functions.reset_peaks()
        self.partitions.reset_peaks()
        out["functions"] = functions
        # The selector's learned state: the control loop loads it into the policy's own object,
        # so the policy and the router hold one selector state.
        out["selector_state"] = self.core.selector_state()
        if self._vm_faults_pending is not None:  # POST /admin/faults {"vm": ...}: the loop sets them
            out["vm_faults"], self._vm_faults_pending = self._vm_faults_pending, None
        return out

    def _variant_function_stats(self) -> dict[str, dict]:
        """The provider's cumulative stats per variant: a chained variant's requests through its
        chain count as invocations of the variant's function (one chain = one instance), and the
        partition functions (`<variant>-part-<s>-<e>`) are not reported on their own."""
        from serving.partition_route import is_partition_function

        out = {v: dict(st) for v, st in self.functions.stats().items() if not is_partition_function(v)}
        for v, c in self.partitions.stats().items():
            st = out.setdefault(v, {"memory_mb": self.fn_memory.get(v, 0), "instances": 0, "peak_concurrency": 0,
                                    "invocations": 0, "cold_starts": 0, "mean_duration_ms": 0.0})
            dur_sum = st["mean_duration_ms"] * st["invocations"] + c["duration_ms_sum"]
            st["invocations"] += c["invocations"]
            st["cold_starts"] += c["cold_starts"]
            st["mean_duration_ms"] = dur_sum / st["invocations"] if st["invocations"] else 0.0
            st["instances"] += c["instances"]
            st["peak_concurrency"] = max(st["peak_concurrency"], c["peak_concurrency"])
        return out

    def apply_control(self, update: dict) -> None:
        """Carry out the router's part of a Plan and show the control status."""
        from controller.config import FunctionPlatformConfig

        if "function_pricing" in update:
            self.fn_pricing = FunctionPlatformConfig.model_validate(update["function_pricing"])
        if "selector" in update:  # the policy's selector: the one the simulator selects with
            sel = update["selector"]
            self.core.install_selector(sel["selector"], sel["classes"], sel["models"])
        if "routing" in update:  # the plan's routing table (serving.routing)
            self.core.apply_routing(update["routing"])
            self.metrics.route_share.clear()
            for v, route in self.core.routes.items():
                for key, share in route.shares().items():
                    self.metrics.route_share.labels(v, key).set(share)
        for v, budget in update.get("routes", {}).items():
            if v in self.core.route_budget_ms or v in self.core.variants:
                self.core.route_budget_ms[v] = budget
        by_model: dict[str, list[dict]] = {}
        for fc in update.get("functions", []):
            if fc["model"] in self.fn_memory:
                by_model.setdefault(fc["model"], []).append(fc)
        for v, records in by_model.items():
            # Several records are INFless's non-uniform bands; the bottom one carries the memory
            # (one memory per model on this provider) and the warm pool.
            records.sort(key=lambda fc: fc.get("rate_lo_per_s", 0.0))
            # A partition plan (AMPS-Inf): the variant's function tier is that chain of functions
            # (serving.partition_route), which keeps the chain's memories and warm pool; memory_mb
            # is its largest partition's. A memory pinned by the admin keeps the variant whole,
            # as it overrides the tuner's memory.
            plan = records[0].get("partition_plan") if v not in self.fn_memory_pinned else None
            warm_pool = sum(int(fc["warm_pool"]) for fc in records)
            self.partitions.apply(v, plan, warm_pool=warm_pool, fp=self.fn_pricing)
            if plan is not None:
                # The whole function keeps no warm pool meanwhile: its idle instances are reaped
                # after the keep-alive and leave the provider's concurrency to the hops.
                # fn_memory stays the whole function's (what its calls are billed at, and what
                # `memory_changed` compares when the variant is whole again).
                self.functions.deploy(v, self.fn_memory[v], warm_pool=0)
                self.fn_warm_pool[v] = 0
                self.metrics.set_function_memory_mb(v, int(records[0]["memory_mb"]))
                self.metrics.function_warm_pool.labels(v).set(warm_pool)
                continue
            old_mb = self.fn_memory[v]
            # A memory pinned by the admin wins over the tuner's plan.
            self.fn_memory[v] = self.fn_memory_pinned.get(v, int(records[0]["memory_mb"]))
            self.fn_warm_pool[v] = warm_pool
            configs = [BatchConfig.of(fc) for fc in records]
            self.functions.deploy(v, self.fn_memory[v], warm_pool=self.fn_warm_pool[v],
                                  batch_size=max(c.batch_size for c in configs))
            self.fn_batcher.configure(v, configs, memory_changed=self.fn_memory[v] != old_mb)
            self.metrics.set_function_memory_mb(v, self.fn_memory[v])
            self.metrics.function_warm_pool.labels(v).set(self.fn_warm_pool[v])
        if self.settings.control.prewarm_functions:
            self._prewarm()
        if "vm_apps" in update:
            self._set_vm_targets(update["vm_apps"])
        for v, usd in update.get("vm_cost_per_request_usd", {}).items():
            self.vm_cost_usd[v] = float(usd)
            self.metrics.vm_cost_per_request_usd.labels(v).set(float(usd))
        for v, budget in update.get("routes", {}).items():
            if budget is not None:
                self.metrics.set_route_budget_ms(v, budget)
        if "status" in update:
            self.control_status = update["status"]
            self.metrics.set_control(self.control_status)

    def _set_vm_targets(self, vm_apps: dict) -> None:
        """vm_apps: variant -> {serve app name: replicas}. Removed targets get no new requests
        (their requests in flight finish: the daemon drains before deleting the app)."""
        for v in self.core.variants:
            wanted = vm_apps.get(v, {})
            current = self.targets[v]
            for key in [k for k in current if k != HEAD and k not in wanted]:
                del current[key]
            for key, replicas in wanted.items():
                if key not in current:
                    current[key] = (serve.get_deployment_handle(f"model-{v}", app_name=key), int(replicas))
            self.core.vm_replicas[v] = sum(r for k, (_, r) in current.items() if k != HEAD)

    def _prewarm(self) -> None:
        """Start instances up to each function's planned warm pool (a cold start paid now, in the
        background, rather than by a request)."""
        for v, pool in self.fn_warm_pool.items():
            if self.partitions.get(v) is not None:  # a chain: warm-up pings to every hop, its own pool
                self.partitions.prewarm(v)
                continue
            if self.partitions.pending(v):
                continue  # a chain is being prepared: the whole function keeps no warm pool
            st = self.functions.stats().get(v, {})
            missing = pool - st.get("instances", 0)
            if missing <= 0 or v in self._prewarming:
                continue
            self._prewarming.add(v)
            x = np.zeros((1,) + tuple(spec_of(v).input_shape), np.float32)
            try:
                # Not a pool: a warm task waiting on invocations queued behind it in the same
                # pool deadlocks once every thread holds a warm task.
                threading.Thread(target=self._warm, args=(v, missing, x), name=f"prewarm-{v}", daemon=True).start()
            except BaseException:
                self._prewarming.discard(v)
                raise

    def _warm(self, variant: str, n: int, x: np.ndarray) -> None:
        """n invocations at once, each on a thread of its own, so n instances start (one after
        another would reuse one instance)."""
        def call():
            try:
                res = self.functions.invoke(variant, x, self.settings.functions.timeout_s)
                # A warm-up is an invocation the cloud bills like any other.
                self.telemetry.charge_function(variant, function_charge_usd(
                    res.billed_ms, self.fn_memory.get(variant, self.settings.functions.memory_mb), self.fn_pricing))
            except Exception:
                with self._prewarm_errors_lock:
                    self.prewarm_errors += 1
                log.exception("%s: a prewarm invocation failed", variant)
        try:
            threads = [threading.Thread(target=call, name=f"prewarm-{variant}", daemon=True) for _ in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            self._prewarming.discard(variant)
