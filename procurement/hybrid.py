"""`hybrid`: the procurement brain with the selector — hybridserve's own policy.

Each tick (pure: `now_s`, state and an RNG in, a Plan out):
1. Learn the load: per query class, a predictor (default `qreg`: a smoothed level times a
   learnt burst multiplier at an upper quantile; see docs/forecast.md) takes the per-second
   arrivals since the last tick.
2. Split it by model: each class's forecast is divided among models in the proportions the
   selector routed that class's requests last interval (at start, a sample of its choices).
3. Forecast over the horizon that matters: the slowest allowed VM boot plus one interval.
4. Plan VMs: what VMs cover is one cost problem with the functions (procurement/vm_cover.py,
   issue 19): the k-th VM runs while the requests it would take one boot horizon ahead (the
   model's own recent per-second demand against its level one lead earlier) are worth its
   price in function calls, in whole VMs of the cheapest type; the forecast's upper quantile
   until there is history, or when no function can take the excess. `plan_vm_mix` (scipy
   MILP) buys the cheapest mix covering that with SLO-feasible batches, preferring VMs already
   running (a launch penalty, part flat, part a share of the new VM's price), and `reconcile`
   turns it into launches and terminations, counting VMs in flight, scaling down after a
   window of the billing minimum (`hybrid_scale_down_delay_s`) and past it, and never
   terminating a model's ready VMs while their replacements boot (make before break).
5. Tune functions: the online tuner picks each model's memory (cheapest whose p95, cold starts
   at the expected ratio included, fits the SLO) from measured durations, and the warm pool is
   sized to the larger of the forecast burst beyond VM capacity and the largest per-second
   spill of the last 30 min (Little's law, Poisson quantile): a warm instance costs a ping. With
   `function_batching` (INFless), the exact solver instead sets memory, batch size and wait,
   uniform or in bands of the spill rate (procurement/function_plan.py). Where the partition
   planner's chain of functions beats every single function (or no single function fits the
   memory cap), the model is served partitioned instead (AMPS-Inf; `function_partitioning`).
6. Route: a request goes to a VM while its expected wait plus service fits the SLO, else spills
   to the function.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from controller.core import Plan, PolicyContext, QueryClass, Route, SetFunctionConfig
from procurement.forecast import make_predictor
from procurement.function_plan import (check_mode, function_configs, partition_option, partitioned_config,
                                       use_partitioned)
from procurement.function_tuner import (FunctionTuner, TunerSettings, TunerState, burst_beyond_vm_per_s,
                                        expected_cold_ratio, warm_pool_size)
from procurement.planner_reconcile import ReconcileState, reconcile
from procurement.sizing import cheapest_function_memory, fixed_models
from procurement.spill import vm_wait_budget_ms
from procurement.vm_cover import append_history, cover_rate_per_s, critical_ratio
from procurement.vm_planner import incumbent_counts, plan_vm_mix, vm_options


# Fixed choices to compare the bandits against (`--selector most-accurate|fastest`).
FIXED_SELECTORS = ("most-accurate", "fastest")
MIX_HALF_LIFE_S = 120.0
MIN_SHARE = 0.05  # routing share below which a class does not shape a model's pool
RESOLVE_FN_S = 300.0  # how often the batched function configurations are re-solved
SPILL_HISTORY_S = 600


@dataclass
class HybridState:
    predictors: list  # one per query class
    reconcile: ReconcileState = field(default_factory=ReconcileState)
    tuner: TunerState = field(default_factory=TunerState)
    memory_mb: dict = field(default_factory=dict)  # model -> memory currently deployed
    mix: np.ndarray | None = None  # [classes, models] routing shares last seen
    last_plan_key: tuple | None = None
    tuner_memo: dict = field(default_factory=dict)
    spill_hist: dict = field(default_factory=dict)  # model -> recent per-second spill estimates
    fn_configs: dict = field(default_factory=dict)  # model -> (solved at s, SetFunctionConfig records)
    last_mix: object = None
    partition_plans: dict = field(default_factory=dict)  # model -> PartitionPlan deployed (partitioned models)
    demand_hist: np.ndarray | None = None  # [seconds, models] recent per-second arrivals (vm_cover)
    pool_hist: dict = field(default_factory=dict)  # model -> ((t_s, warm pool asked), ...) last keep-alive


class Hybrid:
    name = "hybrid"
    clairvoyant = False

    def __init__(self, ctx: PolicyContext, selector: str | None = None, predictor: str | None = None,
                 function_batching: str | None = None, function_partitioning: str | None = None, **params):
        from selector import make_selector

        self.ctx = ctx
        self.p = ctx.config.policy
        self.n_models = len(ctx.catalog.models)
        extra = {**(self.p.model_extra or {}), **params}  # config's `policy:` extras, keyword arguments over them
        self.selector_name = selector or extra.get("selector", "constrained")
        self.predictor_name = predictor or extra.get("predictor", "qreg")
        self.fn_mode = check_mode(function_batching or extra.get("function_batching", "none"))
        # "auto": a model is served partitioned where that is the cheapest way (issue 13); "off".
        partitioning = function_partitioning or extra.get("function_partitioning", "auto")
        if partitioning not in ("auto", "off"):
            raise ValueError(f"function_partitioning must be auto or off, got {partitioning!r}")
        self._partitioning = partitioning == "auto"  # layer graphs come from the catalog
        self._partition_memo: dict = {}
        self._fn_option_memo: dict = {}
        # What VMs cover: "cost" (the newsvendor split of procurement/vm_cover.py) or "upper"
        # (the forecast's upper quantile over the horizon, the policy before issue 19).
        self.vm_cover = extra.get("vm_cover", "cost")
        if self.vm_cover not in ("cost", "upper"):
            raise ValueError(f"vm_cover must be cost or upper, got {self.vm_cover!r}")
        self._ratio_memo: dict = {}
        # Warm pools sized for the largest per-second spill of the recent history too ("history"),
        # or for the forecast's burst only ("forecast", before issue 19): a warm instance costs a
        # ping per prewarm interval, a cold start costs a late request.
        self.warm_pool_from = extra.get("warm_pool_from", "history")
        self.launch_penalty_usd_per_h = float(extra.get("launch_penalty_usd_per_h", 0.005))
        self.launch_penalty_frac = float(extra.get("launch_penalty_frac", 0.25))
        self.warm_pool_spike_factor = float(extra.get("warm_pool_spike_factor", 5.0))
        # A swap of instance types keeps the old VMs until the new ones are up (planner_reconcile).
        self.make_before_break = bool(extra.get("make_before_break", True))
        self.cover_level_window_s = int(extra.get("cover_level_window_s", 60))
        self.cover_fast_window_s = int(extra.get("cover_fast_window_s", 0))
        self.cover_whole_vms = bool(extra.get("cover_whole_vms", True))
        # Hybrid's own stabilisation window (the baselines keep policy.scale_down_delay_s): the
        # billing minimum. Its cover already holds the quantile of demand a VM pays for, so a
        # longer window only keeps VMs the cover no longer wants (WITS hour: $0.373 at 300 s,
        # $0.347 at 60 s; spikes hour $0.654 -> $0.611); the billing minimum still holds each VM.
        self.scale_down_delay_s = float(extra.get("hybrid_scale_down_delay_s", ctx.config.vms.billing_minimum_s))
        # The selector chooses among every variant meeting the floor (an app's fixed `model` is
        # for the baselines only), or, for comparison, always the most accurate or the fastest.
        classes = tuple(replace(c, model=self._fixed_choice(c)) for c in ctx.classes)
        algo = "constrained" if self.selector_name in FIXED_SELECTORS else self.selector_name
        self._selector = make_selector(algo, classes, ctx.catalog, extra.get("selector_params"))
        self.tuner = FunctionTuner(ctx.catalog, ctx.config.functions, TunerSettings(strategy="cost"))
        self.types = list(ctx.config.vms.instance_types)
        self._type_set = frozenset(self.types)
        boots = [ctx.catalog.instance_type(t) for t in self.types]
        self.horizon_s = max(b.boot_s_mean + 2 * b.boot_s_std for b in boots) + self.p.control_interval_s
        self._option_cache: dict = {}
        self._vm_breakeven: dict = {}
        self._warm_models = fixed_models(PolicyContext(ctx.config, ctx.catalog, classes))
        self._seed_cost_priors(classes)
        self._arm_slo_ms: dict[int, float] = {}  # variant -> strictest SLO of a class it may serve
        for c, cls in enumerate(classes):
            for m in self._selector.arms(c):
                j = ctx.catalog.model_index[m]
                self._arm_slo_ms[j] = min(self._arm_slo_ms.get(j, math.inf), cls.slo_ms)

    def selector(self):
        return self._selector

    def _seed_cost_priors(self, classes) -> None:
        """Tell the selector what each variant will cost before it has seen any: the warm-start
        variant is served by VMs, the others by functions until procurement buys them VMs. An
        unpriced variant would look free and draw the first requests to cold functions."""
        cat = self.ctx.catalog
        for c, (cls, warm) in enumerate(zip(classes, self._warm_models)):
            prior = np.zeros(self.n_models)
            p_met = np.full(self.n_models, np.nan)
            for m in cat.models_meeting(cls.min_accuracy):
                fn_usd, _ = self._function_option(m.name, cls.slo_ms)
                prior[m.index] = fn_usd if fn_usd is not None else 1e-3  # no SLO-feasible function: expensive
                # On a function the first calls are cold: a coin toss at best, hopeless when
                # even a warm call is too slow.
                p_met[m.index] = 0.5 if fn_usd is not None else 0.05
            vm = [cat.vm_cost_per_request_usd(cat.models[warm].name, t, cls.slo_ms) for t in self.types]
            vm = [v[0] for v in vm if v]
            if vm:
                prior[warm], p_met[warm] = min(vm), 0.99
            self._selector.set_cost_prior(c, prior)
            self._selector.set_slo_prior(c, p_met)

    def _function_option(self, model: str, slo_ms: float):
        """The cheapest way to serve `model` on functions within `slo_ms`: ($ per warm request or
        None when nothing fits, the PartitionPlan when a chain of functions is that way else None).
        One feasibility rule everywhere: a single function is feasible when some memory size's warm
        latency, invoke overhead included, fits the SLO (cheapest_function_memory)."""
        key = (model, slo_ms)
        if key not in self._fn_option_memo:  # catalog and config are fixed for the policy's life
            fn = cheapest_function_memory(self.ctx, model, slo_ms)
            part = self._partition_plan(model, slo_ms)
            self._fn_option_memo[key] = ((part.cost_usd, part) if use_partitioned(part, fn is not None)
                                         else ((fn[1] if fn else None), None))
        return self._fn_option_memo[key]

    def _partition_plan(self, model: str, slo_ms: float):
        """The partition planner's least-cost chain for the model within the SLO (memoised)."""
        key = (model, slo_ms)
        if key not in self._partition_memo:
            graph = self.ctx.catalog.layer_graph(model) if self._partitioning else None
            self._partition_memo[key] = partition_option(graph, slo_ms, self.ctx.config.functions)
        return self._partition_memo[key]

    def _fixed_choice(self, cls) -> str | None:
        if self.selector_name not in FIXED_SELECTORS:
            return None
        models = self.ctx.catalog.models_meeting(cls.min_accuracy)
        if not models:
            return None  # make_selector raises NoFeasibleModel with the details
        if self.selector_name == "most-accurate":
            return max(models, key=lambda m: m.top1_accuracy).name
        # fastest: the lowest warm latency on any allowed VM type at batch 1
        def fastest_ms(m):
            lat = [p.latency_at(1) for t in self.ctx.config.vms.instance_types
                   if (p := self.ctx.catalog.vm_profile(m.name, t)) is not None]
            return min(lat) if lat else math.inf
        return min(models, key=fastest_ms).name

    def initial_state(self, ctx, rng) -> HybridState:
        preds = [make_predictor(self.predictor_name, {"seed": i}) for i, _ in enumerate(ctx.classes)]
        return HybridState(predictors=preds)

    # --- 1-3: demand per model ---------------------------------------------------------------
    def _routing_mix(self, obs, state: HybridState, rng) -> np.ndarray:
        K = len(self.ctx.classes)
        cm = obs.class_model_counts
        if state.mix is not None:
            if cm is None or cm.sum() == 0:
                return state.mix
            # Smooth the shares over MIX_HALF_LIFE_S: a selector's exploration shows up as a
            # short burst of traffic to other variants, which must not buy them VMs.
            keep = 0.5 ** (max(obs.interval_s, 1.0) / MIX_HALF_LIFE_S)
            mix = state.mix.copy()
            for c in range(K):
                if cm[c].sum() > 0:
                    mix[c] = keep * mix[c] + (1.0 - keep) * cm[c] / cm[c].sum()
            return mix
        # Warm start, before any routing is seen: expect each class on its cheapest-to-serve
        # variant (what the constrained selector settles on once VMs serve it); what the
        # selector explores meanwhile goes to functions until its share shows up in the counts.
        mix = np.zeros((K, self.n_models))
        for c, j in enumerate(self._warm_models):
            mix[c, j] = 1.0
        return mix

    def _model_demand(self, obs, state: HybridState, rng):
        rows = obs.class_arrivals_per_s
        upper = np.zeros(self.n_models)
        mean = np.zeros(self.n_models)
        for c, pred in enumerate(state.predictors):
            if rows.shape[0]:
                pred.observe(obs.now_s, rows[:, c].astype(np.float64))
            f = pred.forecast(obs.now_s, self.horizon_s)
            upper += f.upper_per_s * state.mix[c]
            mean += f.mean_per_s * state.mix[c]
        return upper, mean

    def _slo_by_model(self, state: HybridState) -> dict[int, float]:
        """Per model in use, the strictest SLO among the classes that route a real share to it
        (a class's exploratory trickle must not size a whole VM pool for its tighter SLO; those
        few requests spill to functions when the pool's wait does not fit them)."""
        out = {}
        for c, cls in enumerate(self.ctx.classes):
            for j in np.flatnonzero(state.mix[c] >= MIN_SHARE):
                out[int(j)] = min(out.get(int(j), math.inf), cls.slo_ms)
        return out

    # --- the tick ----------------------------------------------------------------------------
    def decide(self, obs, state: HybridState, rng):
        cat = self.ctx.catalog
        fp = self.ctx.config.functions
        state.mix = self._routing_mix(obs, state, rng)
        if (self.vm_cover == "cost" or self.warm_pool_from == "history") and obs.arrivals_per_s.shape[0]:
            rows = obs.arrivals_per_s
            if not rows.any() and obs.class_arrivals_per_s.any():
                # A warm start's first observation carries the classes' rate only: split it by the
                # expected mix rather than record a minute of zeros.
                rows = obs.class_arrivals_per_s @ state.mix
            state.demand_hist = append_history(state.demand_hist, rows)
        upper, mean = self._model_demand(obs, state, rng)
        slo = self._slo_by_model(state)
        names = {j: cat.models[j].name for j in slo}  # variants in real use
        slo_ms = {names[j]: slo[j] for j in slo}
        # A model gets VMs only where they pay for themselves: its mean rate on functions would
        # cost more per hour than the cheapest SLO-feasible VM. Thin demand (a selector's
        # exploration, a rarely chosen variant) stays on functions.
        demand = {names[j]: self._vm_target(state, j, names[j], slo[j], float(upper[j])) for j in slo
                  if upper[j] > 0 and self._vm_pays(names[j], slo[j], float(mean[j]))}
        # A VM shared by several variants (the live head: VmView.share < 1) is not one VM per
        # variant: it covers its share of each variant's demand and is left out of the mix (so is
        # a VM of a type the mix may not buy: see _split_shared).
        vms, shared = self._split_shared(obs.vms)
        head_service = {}
        for v in shared:
            opt = self._shared_option(v, slo_ms.get(v.model, self._arm_slo_ms.get(cat.model_index[v.model])))
            if opt is None:
                continue
            head_service[v.model] = (opt.latency_ms, opt.batch_size)
            if v.model in demand:
                demand[v.model] = max(0.0, demand[v.model] - v.share * opt.capacity_per_s * self.p.target_utilization)

        # 4. VMs. Re-solve only when the demand moved: quantised to 5 % steps, equal keys give
        # equal plans, which keeps ticks cheap on a steady load.
        key = tuple(sorted((m, round(math.log1p(d) / 0.05)) for m, d in demand.items()))
        if key != state.last_plan_key or state.last_mix is None:
            state.last_mix = plan_vm_mix(demand, slo_ms, cat, self.types,
                                         target_utilization=self.p.target_utilization,
                                         allow_spot=self.ctx.config.vms.allow_spot,
                                         max_instances=self.ctx.config.vms.max_instances,
                                         incumbent=incumbent_counts(vms),
                                         launch_penalty_usd_per_h=self.launch_penalty_usd_per_h,
                                         launch_penalty_frac=self.launch_penalty_frac,
                                         option_cache=self._option_cache)
            state.last_plan_key = key
        mix = state.last_mix
        rec, state.reconcile = reconcile(vms, mix, obs.now_s, state.reconcile,
                                         scale_down_delay_s=self.scale_down_delay_s,
                                         billing_minimum_s=self.ctx.config.vms.billing_minimum_s,
                                         request_prefix="hybrid", make_before_break=self.make_before_break)

        # 5-6. Functions and routes for every variant a class may be routed to (a selector's
        # exploration lands there too), pools sized for those in real use.
        functions, routes = [], []
        for j in sorted(self._arm_slo_ms):
            m = cat.models[j].name
            in_use = j in slo
            slo_ms.setdefault(m, self._arm_slo_ms[j])
            fv = obs.functions.get(m)
            partitioned = m in state.partition_plans  # a chain's durations say nothing of one function's
            if fv is not None and fv.invocations > 0 and fv.cold_starts == 0 and not partitioned:
                state.tuner = self.tuner.observe(state.tuner, m, fv.memory_mb,
                                                 [max(1.0, fv.mean_duration_ms - fp.invoke_overhead_ms)])
            usable = mix.usable_capacity_per_s.get(m, 0.0)
            burst = max(burst_beyond_vm_per_s(float(upper[j]), usable), self._spill_seen_per_s(state, j, usable))
            mem = state.memory_mb.get(m)
            prof = cat.function_profile(m)
            single_fits = prof is not None and self.tuner.memory_grid(m).size > 0
            _, part = self._function_option(m, slo_ms[m])
            if part is not None:
                functions += self._partitioned_function(state, m, part, fv, burst, in_use)
                routes.append(self._spill_route(mix, m, slo_ms[m], head_service.get(m)))
                continue
            if not single_fits:  # no function holds the model under the memory cap: VMs only
                routes.append(Route(m, self._vm_batch(mix, m), None, spill=False))
                continue
            fn_slo_ms = slo_ms[m] - fp.invoke_overhead_ms
            if mem is None or partitioned:  # first sight (or no longer split): the tuner's choice, warm
                mem = self._recommend(state, m, fn_slo_ms, 0.0).memory_mb
            dur = prof.latency_ms(mem) + fp.invoke_overhead_ms
            # At least one instance stays warm for every model in use (pings cost ~nothing) to
            # absorb the VM queue's short spikes without a cold start.
            pool = warm_pool_size(burst, dur, quantile=0.99, max_pool=fp.concurrency_limit // 4)
            pool = max(1, pool) if in_use else pool
            pool = self._sticky_pool(state, m, pool, obs.now_s)
            # A variant out of real use only sees a rare exploratory request, cold whatever its
            # size: size it for its warm cost rather than buy the largest memory to hide a
            # cold start it cannot hide.
            cold_ratio = expected_cold_ratio(max(burst, 0.1), dur, pool) if in_use else 0.0
            choice = self._recommend(state, m, fn_slo_ms, cold_ratio)
            if self.fn_mode != "none":
                functions += self._batched_functions(obs, state, j, m, usable, slo_ms[m], choice.memory_mb, pool)
            elif (choice.memory_mb != state.memory_mb.get(m) or fv is None or fv.warm_instances != pool
                  or partitioned):
                functions.append(SetFunctionConfig(m, choice.memory_mb, pool))
            state.partition_plans.pop(m, None)
            state.memory_mb[m] = choice.memory_mb
            routes.append(self._spill_route(mix, m, slo_ms[m], head_service.get(m)))
        nxt = obs.now_s + self.p.control_interval_s
        if rec.next_check_s is not None:
            nxt = min(nxt, max(obs.now_s + 1.0, rec.next_check_s))
        return Plan(rec.launches, rec.terminations, tuple(functions), tuple(routes), nxt), state

    def _split_shared(self, vms):
        """(whole VMs, VMs it covers demand with but does not mix) of an Observation's fleet: those
        shared by several variants, and those of a type it may not buy (the live head's own rows,
        `<type>@head`), which the mix could only plan around and ask to terminate."""
        types = self._type_set
        is_whole = [v.share >= 1.0 and v.instance_type in types for v in vms]
        if all(is_whole):
            return vms, ()
        return (tuple(v for v, w in zip(vms, is_whole) if w), tuple(v for v, w in zip(vms, is_whole) if not w))

    def _shared_option(self, view, slo_ms):
        """The SLO-feasible VM option of a shared VM's type for its variant (None: none fits)."""
        from procurement.vm_planner import vm_options
        opts = vm_options(view.model, slo_ms, self.ctx.catalog, [view.instance_type]) if slo_ms else []
        return max(opts, key=lambda o: o.capacity_per_s) if opts else None

    def _spill_route(self, mix, model: str, slo_ms: float, head: tuple | None = None) -> Route:
        """`head`: (service ms, batch) of a shared VM serving the model too (None: none does)."""
        service = self._vm_service_ms(mix, model)
        batch = self._vm_batch(mix, model)
        if head is not None:  # the slower service of the two; the head's batch when it serves alone
            service = head[0] if service is None else max(service, head[0])
            batch = head[1] if not any(e.option.model == model and e.count > 0 for e in mix.entries) else batch
        budget = vm_wait_budget_ms(slo_ms, service) if service is not None else 0.0
        return Route(model, batch, max(0.0, budget), spill=True)

    def _partitioned_function(self, state: HybridState, model: str, plan, fv, burst_per_s: float,
                              in_use: bool) -> tuple:
        """The record serving `model` as the planner's chain, with a warm pool sized like a single
        function's (Little's law over the chain's latency); re-sent only when it changes."""
        pool = warm_pool_size(burst_per_s, plan.latency_ms, quantile=0.99,
                              max_pool=self.ctx.config.functions.concurrency_limit // 4)
        pool = max(1, pool) if in_use else pool
        rec = partitioned_config(model, plan, pool)
        changed = state.partition_plans.get(model) != plan or fv is None or fv.warm_instances != pool
        state.partition_plans[model] = plan
        state.memory_mb[model] = rec.memory_mb
        return (rec,) if changed else ()

    def _batched_functions(self, obs, state: HybridState, j: int, model: str, usable_per_s: float,
                           slo_ms: float, memory_mb: int, pool: int) -> tuple:
        """INFless batching on the function tier: every RESOLVE_FN_S, the exact configuration
        solver over the last 10 minutes of per-second spill (arrivals beyond the VMs' usable
        capacity); re-sent only when the answer or the warm pool changes."""
        rows = obs.arrivals_per_s[:, j] if obs.arrivals_per_s.shape[0] else np.zeros(0)
        spill = np.maximum(0.0, rows - usable_per_s)
        hist = np.concatenate([state.spill_hist.get(model, np.zeros(0)), spill])[-SPILL_HISTORY_S:]
        state.spill_hist[model] = hist
        solved_at, configs = state.fn_configs.get(model, (-math.inf, ()))
        if obs.now_s - solved_at < RESOLVE_FN_S and configs and configs[0].warm_pool == pool:
            return ()
        new = function_configs(self.ctx, model, hist, slo_ms, self.fn_mode, memory_mb, pool)
        state.fn_configs[model] = (obs.now_s if obs.now_s - solved_at >= RESOLVE_FN_S else solved_at, new)
        return () if new == configs else new

    def _recommend(self, state: HybridState, model: str, slo_ms: float, cold_ratio: float):
        """The tuner's recommendation, memoised: it changes only with a new measurement of the
        model, its SLO or the expected cold ratio (kept to 3 decimals)."""
        key = (model, slo_ms, round(cold_ratio, 3), state.tuner.num_measurements.get(model, 0))
        hit = state.tuner_memo.get(key)
        if hit is None:
            if len(state.tuner_memo) > 4096:
                state.tuner_memo.clear()
            hit = state.tuner_memo[key] = self.tuner.recommend(state.tuner, model, slo_ms, cold_ratio)
        return hit

    def _vm_target(self, state: HybridState, j: int, model: str, slo_ms: float, upper_per_s: float) -> float:
        """The rate the model's VMs should cover: with `vm_cover: cost`, the demand quantile where
        a marginal VM pays for itself against functions (procurement/vm_cover.py), from the
        model's own per-second history; the forecast's upper quantile until there is enough
        history, or when no function can take the excess."""
        if self.vm_cover != "cost" or state.demand_hist is None:
            return upper_per_s
        ratio, unit = self._critical_ratio(model, slo_ms)
        if ratio <= 0.0:
            return upper_per_s
        cover = cover_rate_per_s(state.demand_hist[:, j], self.horizon_s, ratio,
                                 level_window_s=self.cover_level_window_s,
                                 fast_window_s=self.cover_fast_window_s,
                                 unit_per_s=unit if self.cover_whole_vms else None)
        return upper_per_s if cover is None else cover

    def _sticky_pool(self, state: HybridState, model: str, pool: int, now_s: float) -> int:
        """The largest pool asked for over the last keep-alive (with `warm_pool_from: history`): a
        pool that follows every tick's VM capacity down and up again pays a billed init for each
        instance it re-grows, where keeping it costs only pings."""
        if self.warm_pool_from != "history":
            return pool
        # A max-queue: (t, pool) with pools strictly decreasing, so the first live entry is the
        # window's maximum (O(1) amortised per tick, not a scan of the keep-alive's ticks).
        start = now_s - self.ctx.config.functions.keep_alive_s
        q = [e for e in state.pool_hist.get(model, ()) if e[0] > start]
        while q and q[-1][1] <= pool:
            q.pop()
        q.append((now_s, pool))
        state.pool_hist[model] = tuple(q)
        return q[0][1]

    def _spill_seen_per_s(self, state: HybridState, j: int, usable_per_s: float) -> float:
        """The largest per-second demand beyond `usable_per_s` in the recent history (0 without)."""
        if self.warm_pool_from != "history" or state.demand_hist is None or not state.demand_hist.shape[0]:
            return 0.0
        d = state.demand_hist[:, j]
        # and a flash crowd not seen yet: `warm_pool_spike_factor` x the highest minute's level
        # (WITS jumps 7x within a second; 100 warm 512-MB instances cost ~$0.0003/h in pings
        # and ~$0.002 of billed init once, a cold start there costs a late request each)
        w = min(60, d.size)
        cs = np.cumsum(d)
        level = float(max(cs[w - 1], (cs[w:] - cs[:-w]).max(initial=0.0))) / w
        return max(0.0, float(d.max()) - usable_per_s, self.warm_pool_spike_factor * level - usable_per_s)

    def _critical_ratio(self, model: str, slo_ms: float) -> float:
        """(a / f of vm_cover, usable req/s of one VM) for the model's cheapest SLO-feasible VM
        option (memoised)."""
        key = (model, slo_ms)
        if key not in self._ratio_memo:
            fn_usd, _ = self._function_option(model, slo_ms)
            opts = vm_options(model, slo_ms, self.ctx.catalog, self.types)
            if not opts:
                self._ratio_memo[key] = (0.0, 0.0)
            else:  # the cheapest capacity; among equals the smallest VM (the finest step)
                best = min(opts, key=lambda o: (round(o.price_usd_per_h / o.capacity_per_s, 12), o.capacity_per_s))
                self._ratio_memo[key] = (critical_ratio(best.price_usd_per_h, best.capacity_per_s,
                                                        self.p.target_utilization, fn_usd),
                                         best.capacity_per_s * self.p.target_utilization)
        return self._ratio_memo[key]

    def _vm_pays(self, model: str, slo_ms: float, mean_per_s: float) -> bool:
        key = (model, slo_ms)
        if key not in self._vm_breakeven:
            fn_usd, _ = self._function_option(model, slo_ms)
            vm_usd_per_h = [self.ctx.catalog.instance_type(t).on_demand_usd_per_h for t in self.types
                            if (p := self.ctx.catalog.vm_profile(model, t)) is not None and p.latency_at(1) <= slo_ms]
            if not vm_usd_per_h:
                self._vm_breakeven[key] = math.inf
            elif fn_usd is None:
                self._vm_breakeven[key] = 0.0
            else:  # requests/s at which one VM-hour costs what functions would charge
                self._vm_breakeven[key] = min(vm_usd_per_h) / 3600.0 / fn_usd
        return mean_per_s >= self._vm_breakeven[key]

    @staticmethod
    def _vm_batch(mix, model: str) -> int:
        bs = [e.option.batch_size for e in mix.entries if e.option.model == model and e.count > 0]
        return min(bs) if bs else 1

    @staticmethod
    def _vm_service_ms(mix, model: str) -> float | None:
        ls = [e.option.latency_ms for e in mix.entries if e.option.model == model and e.count > 0]
        return max(ls) if ls else None
