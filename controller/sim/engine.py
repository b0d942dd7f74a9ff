"""The trace-driven simulator: the pure control core on a virtual clock.

Each simulated second: arrivals (Poisson offsets inside the second, or even), each assigned a
query class by the configured mix; the policy's selector picks a model variant per request;
each model's requests go to its VM pool while the wait fits the route's budget, else to its
function (or are dropped); outcomes are recorded and fed back to the selector. When the policy's
`next_tick_s` comes, the shell builds an Observation, calls `policy.decide` and carries the Plan
out through the in-memory provider (the same protocol as the local and AWS providers).

Random streams are separate per purpose (arrivals, selection, boot times, correctness), so every
policy sees byte-identical arrivals and the same seed gives the same report.

Warm start: the run begins as if the service had been running. The first observation carries
the first minute's arrival rate, and what the policy launches at t = 0 is ready at once
(`simulator.warm_start: false`: a quiet first second and ordinary boots, as a live daemon starts).
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import numpy as np

from controller.core import FunctionView, ModelStats, Observation, Plan, PolicyContext, QueryClass, VmView
from controller.policies.registry import make_policy
from controller.decision_log import DecisionLog
from controller.ledger import vm_charge_usd
from controller.sim.function_tier import FunctionTier
from controller.sim.results import RunResult, hist_index
from controller.standing import capacity_per_s as standing_capacity_per_s
from controller.standing import is_standing, standing_vm
from controller.sim.vm_pool import VmPool
from procurement.providers.fake import FakeVmProvider, FaultHooks
from procurement.providers.guards import Guard

WARMUP_S = 60
_EMPTY = np.empty(0)


def query_classes(config) -> tuple[QueryClass, ...]:
    return tuple(QueryClass(a.name, a.slo_ms, a.min_accuracy, a.share, a.model) for a in config.apps)


class Simulation:
    def __init__(self, config, catalog, counts: np.ndarray, policy_name: str, seed: int | None = None,
                 policy_kwargs: dict | None = None):
        self.config, self.catalog, self.counts = config, catalog, counts
        self.seed = config.simulator.seed if seed is None else seed
        self.classes = query_classes(config)
        ctx = PolicyContext(config, catalog, self.classes, horizon_s=float(len(counts)))
        self.policy = make_policy(policy_name, ctx, **(policy_kwargs or {}))
        self.ctx = ctx
        self.models = tuple(catalog.model_names)
        self.n_models = len(self.models)
        ss = np.random.SeedSequence(self.seed)
        (self.rng_arrivals, self.rng_policy, self.rng_select, self.rng_boot, self.rng_correct,
         self.rng_faults, self.rng_routing) = [np.random.default_rng(s) for s in ss.spawn(7)]
        # Measured spread of a live machine's VM service time (off by default; its own stream, so
        # the seven above are unchanged).
        self._jitter_ms = np.asarray(config.simulator.vm_latency_jitter_ms, dtype=float)
        self.rng_jitter = np.random.default_rng(ss.spawn(1)[0]) if self._jitter_ms.size else None
        self.faults = config.simulator.faults
        self.provider = FakeVmProvider.from_catalog(
            catalog, self.rng_boot, FaultHooks(boot_delay_scale=self.faults.slow_boot_factor))
        self.guard = Guard.from_config(config.vms)
        self.fp = config.functions
        self.vm_pools = [VmPool(m, catalog) for m in self.models]
        # VMs up from t = 0 that the policy sees but never terminates (the live head; off by default).
        self.standing = [standing_vm(f"standing-{i}", sv.instance_type, sv.models, catalog)
                         for i, sv in enumerate(config.simulator.standing_vms)]
        self.fn_pools = [FunctionTier(m, catalog, self.fp, self.rng_routing) for m in self.models]
        self.routes: dict[int, object] = {}
        self.accuracy = np.array([m.top1_accuracy for m in catalog.models])
        self.slo_ms = np.array([c.slo_ms for c in self.classes])
        self.floor = np.array([c.min_accuracy for c in self.classes])
        shares = np.array([c.share for c in self.classes], dtype=float)
        self.class_p = shares / shares.sum()
        self.result = RunResult(policy=policy_name, class_requests=[0] * len(self.classes),
                                model_requests=[0] * self.n_models, models=self.models)
        # VM-served requests expected on the standing VMs (each pool's share of capacity there):
        # the live router's head share, for comparing who served what.
        self.served_on_standing = 0.0

    # --- the plan's effects ----------------------------------------------------------------------
    def _price(self, instance_type: str, spot: bool) -> float:
        return self.catalog.instance_type(instance_type).price_usd_per_h(spot)

    def _apply(self, plan: Plan, now_s: int) -> None:
        # The shell's guard, whatever the policy says: max instances and max spend rate.
        fn_usd_per_h = self._fn_usd_last_interval / max(self._interval_s, 1.0) * 3600.0
        allowed, refused = self.guard.filter_launches(plan.launches, self.provider.list(now_s), self._price,
                                                      function_spend_usd_per_h=fn_usd_per_h)
        self.result.faults["guard_refusals"] += len(refused)
        f = self.faults
        for launch in allowed:
            if f.api_error_prob and self.rng_faults.random() < f.api_error_prob:
                self.provider.faults.api_errors += 1
            if f.vm_boot_failure_prob and self.rng_faults.random() < f.vm_boot_failure_prob:
                self.provider.faults.never_boot.add(launch.request_id)
                self.result.faults["boot_failures"] += 1
            self.provider.launch(launch.request_id, launch.instance_type, launch.model, now_s,
                                 spot=launch.spot, ready_now=(now_s == 0 and self.config.simulator.warm_start))
        for term in plan.terminations:
            if not is_standing(self.standing, term.vm_id):
                self._terminate(term.vm_id, now_s)
        by_model: dict[int, list] = {}
        for fc in plan.functions:
            if not self.config.simulator.prewarm_functions and fc.warm_pool:
                fc = replace(fc, warm_pool=0)  # the live daemon's prewarm switch, off
            by_model.setdefault(self.catalog.model_index[fc.model], []).append(fc)
        for j, configs in by_model.items():
            self.result.function_usd += self.fn_pools[j].configure(configs)
        for route in plan.routes:
            self.routes[self.catalog.model_index[route.model]] = route
        self._refresh_fleet(now_s)

    def _function_errors(self, ok, lat_fn, c_usd):
        """Injected invocation failures: each failed call is retried once on the function
        (another billed, warm invocation); a second failure is an explicit error (dropped)."""
        p = self.faults.function_error_prob
        failed = self.rng_faults.random(len(lat_fn)) < p
        if not failed.any():
            return ok, lat_fn, c_usd
        again = failed & (self.rng_faults.random(len(lat_fn)) < p)
        self.result.faults["function_errors"] += int(failed.sum() + again.sum())
        self.result.faults["function_retries"] += int(failed.sum())
        lat_fn = lat_fn + np.where(failed, lat_fn, 0.0)
        c_usd = c_usd + np.where(failed, c_usd, 0.0)
        self.result.function_usd += float(c_usd[again].sum())  # both failed calls were billed
        keep = ~again
        ok = ok.copy()
        ok[np.flatnonzero(ok)[again]] = False
        return ok, lat_fn[keep], c_usd[keep]

    def _kill_vms(self, now_s: int) -> None:
        """Injected VM deaths (hazard per ready VM); the fluid backlog stays queued for the
        VMs left or spills, so the requests it holds still get exactly one answer."""
        p = self.faults.vm_death_rate_per_h / 3600.0
        ready = [r for r in self.provider.list(now_s) if r.state == "ready"]
        if not ready:
            return
        dead = self.rng_faults.random(len(ready)) < p
        for rec in (r for r, d in zip(ready, dead) if d):
            price = self._price(rec.instance_type, rec.spot)
            self.provider.kill(rec.vm_id, now_s)
            self.result.vm_usd += vm_charge_usd(price, now_s - rec.launched_s, self.config.vms.billing_minimum_s)
            self.result.faults["vm_deaths"] += 1
        if dead.any():
            self._refresh_fleet(now_s)

    def _terminate(self, vm_id: str, now_s: float) -> None:
        rec = next((r for r in self.provider.list(now_s) if r.vm_id == vm_id), None)
        if rec is None:
            return
        self.provider.terminate(vm_id, now_s)
        price = self.catalog.instance_type(rec.instance_type).price_usd_per_h(rec.spot)
        self.result.vm_usd += vm_charge_usd(price, now_s - rec.launched_s, self.config.vms.billing_minimum_s)

    def _refresh_fleet(self, now_s: float) -> None:
        ready: dict[int, dict[str, int]] = {}
        ready_usd_per_s = np.zeros(self.n_models)
        self._next_ready_s = np.inf
        self._vm_usd_per_s = 0.0
        for rec in self.provider.list(now_s):
            usd_per_s = self.catalog.instance_type(rec.instance_type).price_usd_per_h(rec.spot) / 3600
            self._vm_usd_per_s += usd_per_s
            if rec.state == "ready":
                j = self.catalog.model_index[rec.model]
                d = ready.setdefault(j, {})
                d[rec.instance_type] = d.get(rec.instance_type, 0) + 1
                ready_usd_per_s[j] += usd_per_s
            else:
                self._next_ready_s = min(self._next_ready_s, self.provider.ready_at(rec.vm_id))
        for sv in self.standing:  # billed once; its capacity split over its models (counted once)
            self._vm_usd_per_s += sv.price_usd_per_h / 3600
            for m in sv.models:
                d = ready.setdefault(self.catalog.model_index[m], {})
                d[sv.instance_type] = d.get(sv.instance_type, 0) + sv.share_of(m)
                ready_usd_per_s[self.catalog.model_index[m]] += sv.usd_per_s_per_model(m)
        self._head_frac = np.zeros(self.n_models)  # the standing VMs' part of each pool's rate
        for j, pool in enumerate(self.vm_pools):
            route = self.routes.get(j)
            pool.set_fleet(ready.get(j, {}), route.vm_batch_size if route else 1)
            if self.standing and pool.mu_per_s > 0:
                head = sum(standing_capacity_per_s(sv, self.models[j], self.catalog, pool.batch_size)
                           for sv in self.standing if self.models[j] in sv.models)
                self._head_frac[j] = min(1.0, head / pool.mu_per_s)
        self._capacity_per_s = sum(p.mu_per_s for p in self.vm_pools)
        # What a VM-served request costs, for the selector: the pool's $/s over its full rate.
        self._vm_usd_per_request = np.array([u / p.mu_per_s if p.mu_per_s > 0 else 0.0
                                             for u, p in zip(ready_usd_per_s, self.vm_pools)])
        self._prewarm_usd_per_s = sum(p.prewarm_cost_per_s() for p in self.fn_pools if p.warm_pool)
        self._fn_deployed = [j for j, p in enumerate(self.fn_pools) if p.deployed]

    # --- observation ------------------------------------------------------------------------------
    def _observe(self, now_s: int, interval_s: float) -> Observation:
        if self._obs_model_rows:
            model_rows = np.array(self._obs_model_rows, dtype=np.int64)
            class_rows = np.array(self._obs_class_rows, dtype=np.int64)
        elif not self.config.simulator.warm_start:  # as a live daemon's first tick: one quiet second
            class_rows = np.zeros((1, len(self.classes)), np.int64)
            model_rows = np.zeros((1, self.n_models), np.int64)
        else:  # warm start: the first minute's rate, by class
            first = self.counts[:WARMUP_S].astype(np.float64)
            class_rows = np.round(np.outer(first, self.class_p)).astype(np.int64)
            model_rows = np.zeros((len(first), self.n_models), np.int64)
        if self.standing and self._obs_model_rows:  # the head's split follows the interval's work
            by_model = dict(zip(self.models, model_rows.sum(axis=0).tolist()))
            self.standing = [sv.reshare(by_model) for sv in self.standing]
        vms = tuple(VmView(r.vm_id, r.request_id, r.instance_type, r.model, r.state, r.launched_s, r.spot)
                    for r in self.provider.list(now_s)) + tuple(v for sv in self.standing for v in sv.views())
        functions, stats, backlog = {}, {}, {}
        for j, m in enumerate(self.models):
            fp = self.fn_pools[j]
            if fp.deployed:
                peak, inv, cold, mean_ms = fp.take_interval_stats()
                functions[m] = FunctionView(m, fp.memory_mb, fp.alive, peak, inv, cold, mean_ms)
            backlog[m] = self.vm_pools[j].backlog
            s = self._obs_stats[j]
            if any(s[:4]):
                lats = np.concatenate(self._obs_lat[j]) if self._obs_lat[j] else _EMPTY
                p95 = float(np.percentile(lats, 95)) if lats.size else 0.0
                stats[m] = ModelStats(s[0], s[1], s[2], s[3], p95)
        cm = self._obs_class_model.reshape(len(self.classes), self.n_models).copy()
        errors = tuple(f"{e.kind}: {e.message}" for e in self.provider.poll_errors())
        self.result.faults["provider_errors"] += len(errors)
        self._reset_interval()
        return Observation(float(now_s), float(interval_s), self.models, model_rows, class_rows, vms,
                           functions, backlog, stats, errors=errors, class_model_counts=cm)

    def _reset_interval(self) -> None:
        self._obs_model_rows: list = []
        self._obs_class_rows: list = []
        self._obs_stats = [[0, 0, 0, 0] for _ in self.models]  # vm, fn, dropped, violations
        self._obs_lat: list[list] = [[] for _ in self.models]
        self._obs_class_model = np.zeros(len(self.classes) * self.n_models, np.int64)

    # --- the run ----------------------------------------------------------------------------------
    def run(self, progress: Callable[[int], None] | None = None, series_bucket_s: int = 60) -> RunResult:
        res = self.result
        res.bucket_s = series_bucket_s
        T = len(self.counts)
        nb = (T + series_bucket_s - 1) // series_bucket_s
        ser = {k: np.zeros(nb) for k in ("arrivals", "capacity_per_s", "vm_usd", "function_usd",
                                          "violations", "function_requests")}
        res.series = ser
        t0 = time.perf_counter()
        self._reset_interval()
        self._obs_model_rows = []
        if getattr(self.policy, "clairvoyant", False):
            self.policy.see_future(self.counts, self.class_p)
        state = self.policy.initial_state(self.ctx, self.rng_policy)
        selector = self.policy.selector()
        next_tick, last_tick = 0.0, 0.0
        self._fn_usd_last_interval, self._interval_s = 0.0, 1.0
        self._refresh_fleet(0)
        K = len(self.classes)
        even = self.config.simulator.arrivals == "even"
        timeout_s = self.config.simulator.client_timeout_s
        limit = self.fp.concurrency_limit
        hist_buf: list[np.ndarray] = []
        fn_hist_buf: list[np.ndarray] = []
        fn_usd_before = res.function_usd
        decisions = DecisionLog("sim")
        for s in range(T):
            if s >= next_tick:
                self._interval_s = s - last_tick
                obs = self._observe(s, s - last_tick if s else 0.0)
                self._fn_usd_last_interval = 0.0
                tt = time.perf_counter()
                try:  # the control loop never dies: a failing tick is counted, the last plan stays
                    if self.faults.policy_error_prob and self.rng_faults.random() < self.faults.policy_error_prob:
                        raise RuntimeError("injected policy fault")
                    plan, state = self.policy.decide(obs, state, self.rng_policy)
                except Exception as e:  # noqa: BLE001 - any policy bug must not stop the run
                    res.faults["tick_errors"] += 1
                    res.last_tick_error = f"{type(e).__name__}: {e}"
                    plan = Plan(next_tick_s=s + self.config.policy.control_interval_s)
                res.tick_ms.append((time.perf_counter() - tt) * 1000.0)
                decisions.record(obs, plan)
                self._apply(plan, s)
                last_tick, next_tick = s, max(s + 1, plan.next_tick_s)
            if self.faults.vm_death_rate_per_h:
                self._kill_vms(s)
            if s >= self._next_ready_s:
                self._refresh_fleet(s)
            b = s // series_bucket_s
            res.function_usd += self._prewarm_usd_per_s
            ser["vm_usd"][b] += self._vm_usd_per_s
            ser["capacity_per_s"][b] += self._capacity_per_s / series_bucket_s
            n = int(self.counts[s])
            model_row = np.zeros(self.n_models, np.int64)
            class_row = np.zeros(K, np.int64)
            if n == 0:
                for j, p in enumerate(self.vm_pools):
                    if p.backlog > 0.0:
                        p.serve(_EMPTY, 0.0)
                for j in self._fn_deployed:
                    self.fn_pools[j].idle(s)
                self._obs_model_rows.append(model_row)
                self._obs_class_rows.append(class_row)
                continue
            u = (np.arange(n) + 0.5) / n if even else np.sort(self.rng_arrivals.random(n))
            cls = self.rng_arrivals.choice(K, n, p=self.class_p) if K > 1 else np.zeros(n, np.int64)
            model_of = np.empty(n, np.int64)
            for c in range(K):
                mask = cls == c if K > 1 else slice(None)
                nc = n if K == 1 else int(mask.sum())
                class_row[c] = nc
                if nc:
                    model_of[mask] = selector.select(c, nc, self.rng_select)
            lat = np.full(n, np.inf)
            cost = np.zeros(n)
            backend = np.full(n, 2, np.int8)  # 0 vm, 1 function, 2 dropped
            used = np.unique(model_of) if K > 1 or model_of[0] != model_of[-1] else model_of[:1]
            fn_inflight = sum(self.fn_pools[j].alive for j in self._fn_deployed)
            used_set = set(used.tolist())
            for j in used.tolist():
                idx = np.flatnonzero(model_of == j) if len(used) > 1 else np.arange(n)
                uj = u[idx]
                route = self.routes.get(j)
                spill = route.spill if route else True
                if route is None or route.max_vm_wait_ms is None or not spill:
                    max_wait = timeout_s
                else:
                    max_wait = route.max_vm_wait_ms / 1000.0
                admitted, lat_vm = self.vm_pools[j].serve(uj, max_wait)
                if self.rng_jitter is not None and lat_vm.size:
                    lat_vm = np.maximum(0.0, lat_vm + self.rng_jitter.choice(self._jitter_ms, lat_vm.size))
                ia = idx[admitted]
                lat[ia], backend[ia], cost[ia] = lat_vm, 0, self._vm_usd_per_request[j]
                fpool = self.fn_pools[j]
                if spill and fpool.deployed and not admitted.all():
                    rest = idx[~admitted]
                    other = fn_inflight - fpool.alive
                    slo_rest = self.slo_ms[cls[rest]] if K > 1 else self.slo_ms[0]
                    ok, lat_fn, cold, c_usd = fpool.serve(s, u[rest], max(0, limit - other), slo_rest)
                    if self.faults.function_error_prob:
                        ok, lat_fn, c_usd = self._function_errors(ok, lat_fn, c_usd)
                    self._fn_usd_last_interval += float(c_usd.sum())
                    io = rest[ok]
                    lat[io], backend[io], cost[io] = lat_fn, 1, c_usd
                    res.cold_starts += int(cold.sum())
                    res.function_usd += float(c_usd.sum())
                elif fpool.deployed:
                    fpool.idle(s)
                model_row[j] = len(idx)
                res.model_requests[j] += len(idx)
                st = self._obs_stats[j]
                nv, nf = int(admitted.sum()), int(np.count_nonzero(backend[idx] == 1))
                st[0] += nv
                st[1] += nf
                self.served_on_standing += nv * self._head_frac[j]  # its expected part of the pool's
                st[2] += len(idx) - nv - nf
            for j, p in enumerate(self.vm_pools):  # idle pools still drain
                if p.backlog > 0.0 and j not in used_set:
                    p.serve(_EMPTY, 0.0)
            for j in self._fn_deployed:  # idle functions age towards reclaim
                if j not in used_set:
                    self.fn_pools[j].idle(s)
            served = backend < 2
            slo = self.slo_ms[cls] if K > 1 else self.slo_ms[0]
            met = served & (lat <= slo)
            acc = self.accuracy[model_of]
            floor_ok = acc >= (self.floor[cls] if K > 1 else self.floor[0]) - 1e-12
            res.requests += n
            nvm = int(np.count_nonzero(backend == 0))
            nfn = int(np.count_nonzero(backend == 1))
            res.served_vm += nvm
            res.served_function += nfn
            res.dropped += n - nvm - nfn
            viol = n - int(met.sum())
            res.slo_violations += viol
            res.meets_both += int(np.count_nonzero(met & floor_ok))
            res.accuracy_sum += float(acc[served].sum())
            hist_buf.append(lat[served])
            if nfn:
                fn_hist_buf.append(lat[backend == 1])
            if len(hist_buf) >= 512:
                res.latency_hist += np.bincount(hist_index(np.concatenate(hist_buf)), minlength=res.latency_hist.size)
                hist_buf = []
            ser["arrivals"][b] += n
            ser["violations"][b] += viol
            ser["function_requests"][b] += nfn
            for j in used.tolist():
                sel = model_of == j if len(used) > 1 else slice(None)
                self._obs_stats[j][3] += int(np.count_nonzero(~met[sel]))
                self._obs_lat[j].append(lat[sel][served[sel]])
            if K > 1 or len(used) > 1:
                self._obs_class_model += np.bincount(cls * self.n_models + model_of,
                                                     minlength=self._obs_class_model.size)
            else:
                self._obs_class_model[model_of[0]] += n
            correct = (self.rng_correct.random(n) < acc).astype(np.float64)
            lat_seen = np.minimum(lat, timeout_s * 1000.0)  # a dropped request waited the timeout
            for c in range(K):
                m = cls == c if K > 1 else slice(None)
                if K == 1 or class_row[c]:
                    selector.observe(c, model_of[m], lat_seen[m], met[m], correct[m], cost[m])
            self._obs_model_rows.append(model_row)
            self._obs_class_rows.append(class_row)
            for c in range(K):
                res.class_requests[c] += int(class_row[c])
            if progress and s % 1000 == 0:
                progress(s)
        if hist_buf:
            res.latency_hist += np.bincount(hist_index(np.concatenate(hist_buf)), minlength=res.latency_hist.size)
        if fn_hist_buf:
            res.function_latency_hist += np.bincount(hist_index(np.concatenate(fn_hist_buf)),
                                                     minlength=res.function_latency_hist.size)
        for rec in self.provider.list(T):
            self._terminate(rec.vm_id, T)
        for sv in self.standing:
            res.vm_usd += sv.charge_usd(T, self.config.vms.billing_minimum_s)
        # Function $ per bucket: spread in proportion to function requests (prewarm included).
        fn_total = res.function_usd - fn_usd_before
        fr = ser["function_requests"]
        ser["function_usd"] = fr / fr.sum() * fn_total if fr.sum() else np.zeros_like(fr)
        res.wall_s = time.perf_counter() - t0
        res.simulated_s = T
        if progress:
            progress(T)
        return res
