"""The live control loop: the simulator's policy on the wall clock, carried out with real providers.

Every tick (its time chosen by the policy's `Plan.next_tick_s`, at most `control_interval_s`):
1. read the clock once (`now_s`) and ask the router what it measured since the last tick
   (`Router.collect`: per-second arrivals by query class and by model, class x model counts,
   outcomes per model, VM backlogs, function interval stats);
2. build the `Observation` exactly as controller/sim/engine.py does (controller/live/
   observation.py: same fields, the live catalog's model order), with the fleet from the VM
   provider's `list` (local or aws); a VM the provider calls `ready` whose Ray node has not joined yet is shown to the policy as
   `booting` (in flight, serving nobody), and in the status as `ready-but-not-joined`;
3. `plan, state = policy.decide(obs, state, rng)` (default `hybrid`);
4. carry the Plan out: launches through `Guard.filter_launches` (priced at the provider's
   worst case when it may fall back to a dearer type: `worst_case_price_usd_per_h`) then
   `VmProvider.launch` (a VM is a Ray worker node; once its node has joined the cluster, the
   model's Serve replicas are deployed on it as the app `vm-<vm id>`, pinned by the vm-id
   resource; a node that never joins blocks nothing); terminations drain (the router
   stops sending, `drain_s`, `serve.delete`) then stop that node; function memory and warm
   pool, routes (VM wait budgets) and cost per request go to the router (`apply_control`);
5. bill with controller/ledger.py (VMs per second with the minimum; functions per invocation,
   as the router measured them) and push the status (cost, fleet, forecast, tick health).
The Ray head's standing replicas are a VM too (`serving.head_instance_type`,
controller/standing.py): billed from start, in every Observation as a ready VM per variant, and never
terminated (a termination the policy sends it is dropped), exactly as the simulator's
`simulator.standing_vms` does, so both shells plan and bill the same fleet.
The loop never dies: a failing tick is counted (by kind) and logged, and the next one runs.
Faults of the fleet (docs/reliability.md): a launch the provider failed is issued again (same
request id) on the next ticks; a VM still up after its release ran is released again; a VM
whose node has not joined within the provider's `join_timeout_s` (local only) is given up and
terminated; a VM that died has its Serve app deleted, so the router stops sending to it.
Fleet actions that wait (a deploy, a drain) run on a small worker pool, not in the tick.

At start the loop adopts the deployment's VMs left by an earlier controller (`adopt`): they
are in the fleet the policy reconciles against, so nothing is bought twice. At stop it
releases the fleet when `release_on_exit` (always for local VMs, which cannot outlive this
process's Ray head), else leaves it running for the next start to adopt (aws by default).
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from controller.core import Observation, PolicyContext, QueryClass, VmView
from controller.decision_log import DecisionLog
from controller.ledger import Ledger, vm_charge_usd
from controller.live.control_router import PlanToRouter
from controller.live.live_catalog import head_catalog_type
from controller.live.observation import observation_from_router
from controller.policies.registry import make_policy
from controller.standing import is_standing, standing_vm
from procurement.providers.guards import Guard

log = logging.getLogger("hybridserve.control")
_RPC_TIMEOUT_S = 30.0
_JOIN_TIMEOUT_S = 120.0
_LAUNCH_ATTEMPTS = 3  # a launch the provider failed is tried this many times in all, a tick apart


def policy_config(cfg, settings):
    """The config the policy sees: the live fleet's instance types and cap, the tick interval."""
    ctl = settings.control
    vms = cfg.vms.model_copy(update={"instance_types": list(ctl.instance_types), "max_instances": ctl.max_vms})
    pol = cfg.policy.model_copy(update={"control_interval_s": ctl.control_interval_s or cfg.policy.control_interval_s})
    fns = cfg.functions.model_copy(update={"min_memory_mb": max(cfg.functions.min_memory_mb,
                                                                 ctl.function_min_memory_mb)})
    return cfg.model_copy(update={"vms": vms, "policy": pol, "functions": fns})


class ControlLoop(PlanToRouter):
    def __init__(self, cfg, settings, apps, catalog, router, vm_provider, clock=time.time, seed: int = 0,
                 release_on_exit: bool = True, joined_vm_ids=None):
        """release_on_exit: `stop()` terminates the fleet (else leaves it for the next start to
        adopt). joined_vm_ids: () -> the vm ids whose Ray node is alive in the cluster (default:
        from `ray.nodes()`; nothing when Ray is not initialized)."""
        self.settings, self.ctl = settings, settings.control
        self.cfg = policy_config(cfg, settings)
        self.catalog = catalog
        self.router = router
        self.vms = vm_provider
        self.clock = clock
        self.models = tuple(catalog.model_names)
        # One class per app, choosing among the app's own variants only (another app's variant
        # may meet its floor but cannot take its inputs).
        self.classes = tuple(QueryClass(a.name, a.slo_ms, a.min_accuracy, 1.0,
                                        variants=tuple(v for v in a.variants if v in catalog.model_index))
                             for a in apps if any(v in catalog.model_index for v in a.variants))
        self.ctx = PolicyContext(self.cfg, catalog, self.classes)
        params = dict(self.ctl.policy_params)
        if self.ctl.policy == "hybrid":  # `serving.selector` names the policy's selector algorithm
            params.setdefault("selector", settings.selector)
        self.policy = make_policy(self.ctl.policy, self.ctx, **params)
        self.rng = np.random.default_rng(seed)
        self.state = self.policy.initial_state(self.ctx, self.rng)
        self.guard = Guard.from_config(self.cfg.vms)
        # A provider that may fall back to a dearer type on a capacity error prices a launch at
        # its worst case, so a fallback can never take spend past the guard.
        self._guard_price = getattr(vm_provider, "worst_case_price_usd_per_h", None) or self._price
        self._terminate_takes_grace = "grace_s" in inspect.signature(vm_provider.terminate).parameters
        self.release_on_exit = release_on_exit
        self._joined_vm_ids = joined_vm_ids or _ray_joined_vm_ids
        self.adopted: list = []  # VmRecords taken over at start
        self.ledger = Ledger()
        # The head's rows: its own (controller.live.live_catalog.head_catalog_type) when the live catalog has them.
        head_type = getattr(settings, "head_instance_type", None)
        if head_type and head_catalog_type(head_type) in catalog.instance_types:
            head_type = head_catalog_type(head_type)
        self.standing = [standing_vm("head", head_type, [], catalog, launched_s=clock())] if head_type else []
        self._standing_billed = False
        self.interval_s = self.cfg.policy.control_interval_s
        self.ticks, self.errors = 0, {}
        self.last_good_s = self.last_duration_s = None
        self.last_error = None
        self.last_plan = None
        self._last_tick_s = None
        self.observed_from_s: float | None = None  # the first second of the rows the policy saw
        self.startup_function_usd = 0.0  # function calls served before the loop started (calibration)
        self._vm_app: dict[str, tuple[str, str, int]] = {}  # vm id -> (model, serve app, replicas): serving
        self._joining: dict[str, object] = {}  # vm id -> future of its deploy
        self._releasing: set[str] = set()
        self._failed_launches: dict[str, tuple] = {}  # request id -> (LaunchVm, attempts so far)
        self._released: set[str] = set()  # release ran (the provider may still list it: see _retry_releases)
        self._billed_to: dict[str, float] = {}  # vm id -> billed up to (a release that ran)
        self._records: dict[str, object] = {}  # vm id -> last VmRecord seen (for billing)
        self._not_joined: set[str] = set()  # `ready` per the provider, Ray node not in the cluster
        self._late_join_warned: set[str] = set()
        self._fn_spend_usd_per_h = 0.0
        self._last_status: dict = {}
        self._last_routes: tuple = ()  # the last plan's routes (the routing table is rebuilt on fleet changes)
        self.events: list[str] = []  # the last fleet events and errors, newest last (shown in /status)
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fleet")
        self._decisions = DecisionLog("live")  # HYBRIDSERVE_DECISION_LOG: one line per tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._push({"function_pricing": self.cfg.functions.model_dump(), "selector": self.selector_update()})
        self._drain_before_start()
        self.adopt()
        self._thread = threading.Thread(target=self._run, name="control-loop", daemon=True)
        self._thread.start()

    def _drain_before_start(self) -> None:
        """What the router served before the loop started (the daemon's own calibration requests,
        `measure_router_latency_ms`) is billed, not forecast from: the policy observes from its
        start, as the simulator's policy observes from a trace's first second. Its function cost
        is shown apart (`cost_usd()["startup_function"]`)."""
        now_s = self.clock()
        try:
            data = self.router.collect.remote(now_s).result(timeout_s=_RPC_TIMEOUT_S)
        except Exception as e:  # the first tick then sees those requests; say why
            log.warning("draining the router's start-up counts failed: %s", e)
            return
        if isinstance(data, dict):
            before = self.ledger.function_usd
            self._bill_functions(data, now_s)
            self.startup_function_usd = self.ledger.function_usd - before

    def _run(self) -> None:
        while not self._stop.is_set():
            next_s = self.tick()
            self._stop.wait(max(1.0, min(self.interval_s, next_s - self.clock())))

    def adopt(self) -> list:
        """Take over the deployment's VMs an earlier controller left (once, at start). They are
        billed from their launch time and listed like our own, so the policy's reconcile counts
        them and buys nothing twice. Never raises: a failed lookup is counted, and `list` finds
        them on the next tick anyway."""
        adopt = getattr(self.vms, "adopt", None)
        if adopt is None:
            return []
        try:
            with self._lock:
                self.adopted = list(adopt(self.clock()))
        except Exception as e:
            self._count("adopt")
            self._event(f"adopting the fleet failed: {type(e).__name__}: {e}", logging.WARNING)
            return []
        for rec in self.adopted:
            self._records[rec.vm_id] = rec
        if self.adopted:
            self._event(f"adopted {len(self.adopted)} VM(s): "
                        + ", ".join(f"{r.vm_id} ({r.instance_type}, {r.model}, {r.state})" for r in self.adopted))
        return self.adopted

    def stop(self, release: bool | None = None) -> list[str]:
        """Stop ticking; then, if `release` (default: `release_on_exit`), drain and release every
        VM (waits for them). Returns the ids of the VMs left running."""
        release = self.release_on_exit if release is None else release
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=_RPC_TIMEOUT_S + 5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            records = self.vms.list(self.clock())
        self._bill_standing(self.clock())
        if not release:
            kept = [r.vm_id for r in records if r.vm_id not in self._releasing]
            if kept:
                self._event(f"left {len(kept)} VM(s) running for the next start to adopt: {', '.join(kept)}")
            return kept
        for rec in records:
            self._release(rec.vm_id, drain=False)
        return []

    def _inject_vm_faults(self, spec: dict | None) -> None:
        """VM faults posted to the router's POST /admin/faults ({} clears), for a provider that
        takes them (local VMs)."""
        set_faults = getattr(self.vms, "set_faults", None)
        if spec is None or set_faults is None:
            return
        from procurement.providers.local_vm import VmFaults

        with self._lock:
            set_faults(VmFaults(**spec) if spec else None)
        self._event(f"vm faults set: {spec or 'none'}", logging.WARNING)

    # --- one tick -----------------------------------------------------------------------------
    def tick(self) -> float:
        """Run one tick; returns when the policy wants the next. Never raises."""
        t0 = time.perf_counter()
        now_s = self.clock()
        next_s = now_s + self.interval_s
        try:
            data = self.router.collect.remote(now_s).result(timeout_s=_RPC_TIMEOUT_S)
            self._sync_selector(data.get("selector_state"))
            self._inject_vm_faults(data.get("vm_faults"))
            with self._lock:
                records = self.vms.list(now_s)
            for e in self.vms.poll_errors():
                self._count(f"provider_{e.kind}")
                self._event(f"vm provider: {e.message}", logging.WARNING)
            self._join_ready(records)
            self._retry_releases(records)
            obs = self._observation(now_s, data, records)
            if self.observed_from_s is None:
                self.observed_from_s = float(data["start_s"])
            plan, self.state = self.policy.decide(obs, self.state, self.rng)
            self.last_plan = plan
            self._decisions.record(obs, plan)
            self._apply(plan, now_s, records)
            self._bill_functions(data, now_s)
            self.ticks += 1
            self.last_good_s = now_s
            next_s = now_s + (plan.next_tick_s - obs.now_s)
            self._push(self._update(plan, data, now_s))
        except Exception as e:  # the loop never dies; the tick is counted and the next one runs
            self._count("tick")
            self.last_error = f"{type(e).__name__}: {e}"
            self._event(f"tick failed: {self.last_error}", logging.ERROR)
            self.last_duration_s = time.perf_counter() - t0
            self._push({"status": {**self._last_status, "tick": self.health()}})
        finally:
            self.last_duration_s = time.perf_counter() - t0
            self._last_tick_s = now_s
        return next_s

    def _count(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def _event(self, message: str, level: int = logging.INFO) -> None:
        log.log(level, "%s", message)
        self.events = (self.events + [f"{time.strftime('%H:%M:%S')} {message}"])[-20:]

    def _observation(self, now_s: float, data: dict, records) -> Observation:
        # A VM whose node has not joined serves nobody yet: to the policy it is still in flight.
        fleet = tuple(VmView(r.vm_id, r.request_id, r.instance_type, r.model,
                             "booting" if r.vm_id in self._not_joined else r.state, r.launched_s, r.spot)
                      for r in records if r.state in ("booting", "ready") and r.vm_id not in self._releasing)
        interval_s = 0.0 if self._last_tick_s is None else now_s - self._last_tick_s
        obs = observation_from_router(data, self.models, self.classes, fleet, interval_s)
        # The head's capacity split over its variants by this interval's work (as the simulator).
        by_model = dict(zip(self.models, obs.arrivals_per_s.sum(axis=0).tolist()))
        self.standing = [sv.reshare(by_model) for sv in self.standing]
        return dataclasses.replace(obs, vms=fleet + tuple(v for sv in self.standing for v in sv.views()))

    # --- carrying the plan out ----------------------------------------------------------------
    def _price(self, instance_type: str, spot: bool) -> float:
        return self.catalog.instance_type(instance_type).price_usd_per_h(spot)

    def _apply(self, plan, now_s: float, records) -> None:
        # A launch the provider failed (an API error: it returned no id) is issued again, same
        # request id (idempotent), on the next _LAUNCH_ATTEMPTS - 1 ticks: the policy counts it
        # as pending until its launch_timeout_s, so without this nothing would replace it for that long.
        planned = {launch.request_id for launch in plan.launches}
        launches = list(plan.launches) + [launch for launch, _ in self._failed_launches.values()
                                          if launch.request_id not in planned]
        allowed, refused = self.guard.filter_launches(launches, records, self._guard_price,
                                                      self._fn_spend_usd_per_h)
        for why in refused:
            self._count("guard_refused")
            self._event(why)
        # A refused retry is dropped, not re-offered: bought later when budget frees, it would be a
        # VM the policy no longer asked for (a refused planned launch the policy re-plans itself).
        ok = {launch.request_id for launch in allowed}
        self._failed_launches = {k: v for k, v in self._failed_launches.items() if k in ok}
        with self._lock:
            for launch in allowed:
                vm_id = self.vms.launch(launch.request_id, launch.instance_type, launch.model, now_s, spot=launch.spot)
                attempts = self._failed_launches.pop(launch.request_id, (None, 0))[1] + 1
                if vm_id:
                    self._event(f"launch {vm_id} ({launch.instance_type}) for {launch.model}")
                elif attempts < _LAUNCH_ATTEMPTS:
                    self._failed_launches[launch.request_id] = (launch, attempts)
        for term in plan.terminations:
            if is_standing(self.standing, term.vm_id):
                continue  # the head serves whatever the policy thinks
            if term.vm_id not in self._releasing:
                self._event(f"terminate {term.vm_id}")
                self._releasing.add(term.vm_id)
                self._pool.submit(self._release, term.vm_id, True)

    def _join_ready(self, records) -> None:
        """Deploy the model's replicas on every `ready` VM whose Ray node has joined (once).

        Joining is checked here, once per tick, rather than waited for on the worker pool: a VM
        whose node never joins (a broken user data, a security group, a moto instance) stays
        `ready-but-not-joined` without holding a worker, so drains and releases still run."""
        for rec in records:
            self._records[rec.vm_id] = rec
        listed = {r.vm_id for r in records}
        for vm_id in [v for v in list(self._vm_app) if v not in listed and v not in self._releasing]:
            # It died (the provider reported it): stop routing to it, delete its Serve app, bill it.
            self._releasing.add(vm_id)
            self._pool.submit(self._release, vm_id, False)
        waiting = [r for r in records if r.state == "ready" and r.vm_id not in self._vm_app
                   and r.vm_id not in self._joining and r.vm_id not in self._releasing]
        joined: set[str] = set()
        if waiting:
            try:
                joined = set(self._joined_vm_ids())
            except Exception as e:  # the GCS did not answer: nobody joins this tick, the tick goes on
                self._count("ray_nodes")
                log.warning("listing the Ray nodes failed: %s", e)
        self._not_joined = {r.vm_id for r in waiting if r.vm_id not in joined}
        now_s = self.clock()
        give_up_s = getattr(self.vms, "join_timeout_s", None)  # None (aws): warn only, user data may be slow
        for rec in waiting:
            if rec.vm_id in joined:
                self._joining[rec.vm_id] = self._pool.submit(self._deploy_on_vm, rec)
            elif give_up_s is not None and rec.ready_s is not None and now_s - rec.ready_s > give_up_s:
                # Never finished booting (a provider that knows its nodes join fast, e.g. local):
                # release it; the policy no longer sees it and buys a replacement if still needed.
                self._count("vm_boot_timeout")
                self._event(f"{rec.vm_id}: its Ray node has not joined in {give_up_s:g} s; giving up on it",
                            logging.WARNING)
                self._releasing.add(rec.vm_id)
                self._pool.submit(self._release, rec.vm_id, False)
            elif rec.vm_id not in self._late_join_warned and rec.ready_s is not None \
                    and now_s - rec.ready_s > _JOIN_TIMEOUT_S:
                self._late_join_warned.add(rec.vm_id)
                self._count("vm_not_joined")
                self._event(f"{rec.vm_id} is up but its Ray node has not joined in {_JOIN_TIMEOUT_S:g} s "
                            f"(user data, security group, head address?); serving goes on without it",
                            logging.WARNING)

    def _deploy_on_vm(self, rec) -> None:
        import ray
        from ray import serve

        from serving.deployments import vm_app

        try:
            deadline = time.monotonic() + _JOIN_TIMEOUT_S
            while not any(n["Alive"] and rec.vm_id in n.get("Resources", {}) for n in ray.nodes()):
                if time.monotonic() > deadline or self._stop.is_set() or rec.vm_id in self._releasing:
                    raise TimeoutError(f"{rec.vm_id} did not join the Ray cluster in {_JOIN_TIMEOUT_S:g} s")
                time.sleep(0.5)
            vcpu = self.catalog.instance_type(rec.instance_type).vcpu
            replicas = max(1, round(vcpu * self.ctl.vm_replicas_per_vcpu))
            app = f"vm-{rec.vm_id}"
            # Not serve.run: it waits for RUNNING without end, and a node killed mid-deploy makes
            # the replicas unschedulable, which would hold this worker (and stop()) forever.
            # Private API, checked against Ray 2.60 (ray.serve.api._run(app, _blocking=False, name,
            # route_prefix)); re-check its signature on a Ray upgrade.
            from ray.serve.api import _run
            _run(vm_app(rec.model, rec.vm_id, replicas, self.settings), name=app, route_prefix=None,
                 _blocking=False)
            deadline = time.monotonic() + _JOIN_TIMEOUT_S
            while (status := getattr(serve.status().applications.get(app), "status", None)) != "RUNNING":
                if status == "DEPLOY_FAILED":  # final: waiting to the deadline would only hold this worker
                    serve.delete(app, _blocking=False)
                    raise RuntimeError(f"{app} deploy failed")
                node_alive = any(n["Alive"] and rec.vm_id in n.get("Resources", {}) for n in ray.nodes())
                if not node_alive or time.monotonic() > deadline or self._stop.is_set() \
                        or rec.vm_id in self._releasing:
                    serve.delete(app, _blocking=False)
                    raise RuntimeError(f"{app} not running ({'its node died' if not node_alive else 'timeout'})")
                time.sleep(0.5)
            with self._lock:
                self._vm_app[rec.vm_id] = (rec.model, app, replicas)
            self._event(f"{rec.vm_id} serves {rec.model} with {replicas} replica(s)")
            self._push({"vm_apps": self._vm_apps(), "routing": self._routing()})
        except Exception as e:
            self._count("vm_deploy")
            self._event(f"deploying on {rec.vm_id} failed: {e}", logging.WARNING)
        finally:
            self._joining.pop(rec.vm_id, None)

    def _vm_apps(self) -> dict:
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for vm_id, (model, app, replicas) in self._vm_app.items():
                if vm_id not in self._releasing:
                    out.setdefault(model, {})[app] = replicas
        return out

    def _retry_releases(self, records) -> None:
        """A VM still up after its release ran (the provider's terminate call failed: an API
        error, reported by poll_errors) is released again, so a failed call leaks no VM."""
        for r in records:
            if r.vm_id in self._released and r.state in ("booting", "ready"):
                self._released.discard(r.vm_id)
                self._count("vm_release_retry")
                self._event(f"{r.vm_id} is still {r.state} after its release; terminating it again")
                self._pool.submit(self._release, r.vm_id, False)

    def _release(self, vm_id: str, drain: bool) -> None:
        """Drain (the router stops sending; in-flight requests finish), delete the VM's Serve app,
        stop its node, bill it."""
        from ray import serve

        try:
            self._releasing.add(vm_id)
            fut = self._joining.get(vm_id)
            if fut is not None:
                fut.result(timeout=_JOIN_TIMEOUT_S)
            entry = self._vm_app.get(vm_id)
            if entry is not None:
                if drain:
                    self._push({"vm_apps": self._vm_apps(), "routing": self._routing()})
                    time.sleep(self.ctl.drain_s)
                try:
                    serve.delete(entry[1])
                except Exception as e:  # Serve is already down (shutdown path)
                    log.debug("serve.delete(%s): %s", entry[1], e)
            rec = self._records.get(vm_id)
            if self._terminate_takes_grace:  # local: SIGTERM to SIGKILL of the node's process
                self.vms.terminate(vm_id, self.clock(), grace_s=self.ctl.vm_stop_grace_s)
            else:
                self.vms.terminate(vm_id, self.clock())
            with self._lock:
                self._vm_app.pop(vm_id, None)
                if rec is not None:  # a second release (a failed terminate) bills only the time since
                    since_s = self._billed_to.get(vm_id, rec.launched_s)
                    self._billed_to[vm_id] = self.clock()
                    self.ledger.add_vm(rec.model, vm_charge_usd(
                        self._price(rec.instance_type, rec.spot), self._billed_to[vm_id] - since_s,
                        self.cfg.vms.billing_minimum_s if since_s == rec.launched_s else 0.0))
                self._released.add(vm_id)
            self._event(f"released {vm_id}")
        except Exception as e:
            self._count("vm_release")
            self._event(f"releasing {vm_id} failed: {e}", logging.WARNING)

    # --- money and status ---------------------------------------------------------------------
    def _bill_functions(self, data: dict, now_s: float) -> None:
        usd = 0.0
        for m, v in data.get("function_usd", {}).items():
            self.ledger.add_function(m, float(v))
            usd += float(v)
        span_s = max(1.0, float(data["end_s"]) - float(data["start_s"]))
        self._fn_spend_usd_per_h = usd / span_s * 3600.0

    def cost_usd(self, now_s: float) -> dict:
        """Cost so far: released VMs as billed, live VMs as if released now, functions as invoked."""
        live = 0.0
        for rec in self.vms.list(now_s):
            # A VM whose release ran but whose terminate failed is in the ledger up to _billed_to:
            # charge only the time since (no second minimum), not again from its launch.
            since_s = self._billed_to.get(rec.vm_id, rec.launched_s)
            live += vm_charge_usd(self._price(rec.instance_type, rec.spot), now_s - since_s,
                                  self.cfg.vms.billing_minimum_s if since_s == rec.launched_s else 0.0)
        if not self._standing_billed:
            live += sum(sv.charge_usd(now_s, self.cfg.vms.billing_minimum_s) for sv in self.standing)
        vm = self.ledger.vm_usd + live
        return {"vm": vm, "function": self.ledger.function_usd, "total": vm + self.ledger.function_usd,
                "startup_function": self.startup_function_usd}

    def _bill_standing(self, now_s: float) -> None:
        """The head into the ledger, once, when the loop stops (until then cost_usd adds it live)."""
        if not self._standing_billed:
            for sv in self.standing:
                # Split evenly over the variants it serves (as usd_per_s_per_model): the same vm_usd
                # the simulator bills, and no pseudo-model "head" in by_model_usd.
                usd = sv.charge_usd(now_s, self.cfg.vms.billing_minimum_s)
                if not sv.models:
                    self.ledger.vm_usd += usd
                for m in sv.models:
                    self.ledger.add_vm(m, usd / len(sv.models))
            self._standing_billed = True

    def _vm_cost_per_request(self, data: dict, records) -> dict:
        """$ per request served on VMs, per model: the model's VM spend over its VM requests in the
        interval (what the selector learns as a VM request's cost)."""
        span_s = max(1.0, float(data["end_s"]) - float(data["start_s"]))
        out = {}
        for m in self.models:
            usd_per_s = sum(self._price(r.instance_type, r.spot) / 3600.0 for r in records if r.model == m)
            usd_per_s += sum(sv.usd_per_s_per_model(m) for sv in self.standing if m in sv.models)
            served = data["stats"].get(m, {}).get("served_vm", 0)
            out[m] = usd_per_s * span_s / served if served else 0.0
        return out

    def _forecast(self, now_s: float) -> dict:
        preds = getattr(self.state, "predictors", None) or []
        horizon = getattr(self.policy, "horizon_s", self.interval_s)
        out = {}
        for c, p in zip(self.classes, preds):
            try:
                f = p.forecast(now_s, horizon)
                out[c.name] = {"mean_per_s": float(np.mean(f.mean_per_s)), "upper_per_s": float(np.mean(f.upper_per_s))}
            except Exception:
                continue
        return out

    def _update(self, plan, data: dict, now_s: float) -> dict:
        with self._lock:
            records = self.vms.list(now_s)
        span_s = max(1.0, float(data["end_s"]) - float(data["start_s"]))
        class_rows = np.asarray(data["class_arrivals"], float).reshape(-1, len(data["classes"]))
        arrivals = {c: float(class_rows[:, k].sum() / span_s) for k, c in enumerate(data["classes"])}
        fleet = [{"vm_id": r.vm_id, "instance_type": r.instance_type, "model": r.model,
                  "state": ("draining" if r.vm_id in self._releasing else
                            "serving" if r.vm_id in self._vm_app else
                            "ready-but-not-joined" if r.vm_id in self._not_joined else r.state),
                  "age_s": round(now_s - r.launched_s, 1)} for r in records]
        standing = [{"vm_id": sv.vm_id, "instance_type": sv.instance_type, "models": list(sv.models),
                     "age_s": round(now_s - sv.launched_s, 1)} for sv in self.standing]
        status = {"policy": self.policy.name, "cost_usd": self.cost_usd(now_s), "fleet": fleet,
                  "standing": standing, "catalog_dir": self.catalog.directory,
                  "forecast": self._forecast(now_s), "arrivals_per_s": arrivals,
                  "plan": {"launches": len(plan.launches), "terminations": len(plan.terminations),
                           "routes": {r.model: r.max_vm_wait_ms for r in plan.routes},
                           "functions": {f.model: {"memory_mb": f.memory_mb, "warm_pool": f.warm_pool}
                                         for f in plan.functions}},
                  "tick": self.health()}
        self._last_status = status
        return {"routes": {r.model: (r.max_vm_wait_ms if r.spill else None) for r in plan.routes},
                "routing": self._routing(plan.routes),
                # Whole records: batching bands (INFless) and partition plans (AMPS-Inf) included.
                "functions": [dataclasses.asdict(f) for f in plan.functions],
                "vm_apps": self._vm_apps(), "vm_cost_per_request_usd": self._vm_cost_per_request(data, records),
                "status": status}

    def health(self) -> dict:
        return {"ticks": self.ticks, "adopted": [r.vm_id for r in self.adopted], "errors": dict(self.errors),
                "last_error": self.last_error,
                "events": list(self.events),
                "last_good_s": self.last_good_s, "last_duration_s": self.last_duration_s,
                "observed_from_s": self.observed_from_s,
                "interval_s": self.interval_s}

    def _push(self, update: dict) -> None:
        try:
            self.router.apply_control.remote(update).result(timeout_s=_RPC_TIMEOUT_S)
        except Exception as e:
            self._count("push")
            log.warning("pushing the plan to the router failed: %s", e)


def _ray_joined_vm_ids() -> set[str]:
    """Ids of the VMs whose Ray node is alive: each worker carries a resource named after its VM
    (`--resources '{"<vm id>": 1}'`). Nothing when Ray is not initialized (unit tests)."""
    import ray

    if not ray.is_initialized():
        return set()
    return {k for n in ray.nodes() if n.get("Alive") for k in n.get("Resources", {})}
