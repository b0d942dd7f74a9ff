"""VM planner (MILP) and reconcile: optimality against brute force, SLO feasibility, capacity in
flight, hysteresis and billing minimum on a virtual clock, determinism, state round trip."""
from __future__ import annotations

import itertools
import json
import math
import os

import numpy as np
import pytest

from controller.catalog import load_catalog
from controller.config import REPO_ROOT
from controller.core import VmView
from procurement.planner_types import VmMix
from procurement.vm_planner import (ReconcileState, feasible_batch, incumbent_counts, plan_vm_mix,
                                    reconcile, vm_options)

CAT = load_catalog(os.path.join(REPO_ROOT, "configs", "catalog"))
TYPES = ["c5.large", "c5.xlarge", "m5.large"]


def brute_force_cost(demand, slo, types, util, allow_spot=False, spot_max_share=1.0, max_instances=None):
    """Cheapest cover by enumerating every count vector (small cases only)."""
    per_model = []
    for m, d in sorted(demand.items()):
        opts = vm_options(m, slo[m], CAT, types, allow_spot=allow_spot)
        need = d / util
        ubs = [math.ceil(need / o.capacity_per_s - 1e-9) for o in opts]
        feasible = []
        for x in itertools.product(*[range(u + 1) for u in ubs]):
            cap = sum(o.capacity_per_s * k for o, k in zip(opts, x))
            od = sum(o.capacity_per_s * k for o, k in zip(opts, x) if not o.spot)
            if cap >= need - 1e-9 and od >= (1 - spot_max_share) * need - 1e-9:
                feasible.append((sum(o.price_usd_per_h * k for o, k in zip(opts, x)), sum(x)))
        per_model.append(feasible)
    best = math.inf
    for combo in itertools.product(*per_model):
        if max_instances is not None and sum(n for _, n in combo) > max_instances:
            continue
        best = min(best, sum(c for c, _ in combo))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_milp_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    models = list(rng.choice(["resnet50", "squeezenet", "resnet18", "vgg16"], size=2, replace=False))
    slo = {m: float(rng.choice([s for s in (150, 300, 1000) if vm_options(m, s, CAT, TYPES)]))
           for m in models}
    util = 0.8
    # demand sized in units of the cheapest option's capacity so a few VMs are needed
    demand = {}
    for m in models:
        caps = [o.capacity_per_s for o in vm_options(m, slo[m], CAT, TYPES)]
        demand[m] = float(rng.uniform(0.3, 2.5)) * min(caps) * util
    spot = bool(seed % 2)
    share = 0.5 if spot else 1.0
    mix = plan_vm_mix(demand, slo, CAT, TYPES, target_utilization=util, allow_spot=spot, spot_max_share=share)
    assert mix.status == "optimal"
    assert mix.cost_usd_per_h == pytest.approx(brute_force_cost(demand, slo, TYPES, util, spot, share), rel=1e-9)
    for m in models:
        assert mix.capacity_per_s[m] >= demand[m] / util - 1e-6


def test_milp_equals_brute_force_with_instance_cap():
    slo = {"resnet50": 300.0, "squeezenet": 300.0}
    caps = {m: min(o.capacity_per_s for o in vm_options(m, 300.0, CAT, TYPES)) for m in slo}
    demand = {m: 2.5 * caps[m] * 0.8 for m in slo}
    mix = plan_vm_mix(demand, slo, CAT, TYPES, target_utilization=0.8, max_instances=4)
    assert sum(mix.counts().values()) <= 4
    assert mix.cost_usd_per_h == pytest.approx(brute_force_cost(demand, slo, TYPES, 0.8, max_instances=4), rel=1e-9)


def test_slo_infeasible_types_never_chosen():
    # resnet50 batch 1 takes 109.9 ms on a c5 vCPU (3.4 GHz) and 120.5 ms on an m5 one (3.1 GHz):
    # twice that meets 230 ms on c5 only
    slo = {"resnet50": 230.0}
    assert feasible_batch(CAT.vm_profile("resnet50", "m5.large"), 230.0) is None
    assert feasible_batch(CAT.vm_profile("resnet50", "c5.large"), 230.0)[0] == 1
    types = ["c5.large", "m5.large", "c5.xlarge", "m5.xlarge"]
    for rate in (5.0, 50.0, 500.0):
        mix = plan_vm_mix({"resnet50": rate}, slo, CAT, types, target_utilization=0.8)
        assert mix.counts()
        for e in mix.entries:
            assert e.option.instance_type not in ("m5.large", "m5.xlarge")
            prof = CAT.vm_profile("resnet50", e.option.instance_type)
            assert 2 * prof.latency_at(e.option.batch_size) <= 230.0


def test_model_with_no_feasible_option_is_uncovered():
    mix = plan_vm_mix({"vgg16": 10.0, "squeezenet": 10.0}, {"vgg16": 50.0, "squeezenet": 300.0},
                      CAT, TYPES, target_utilization=0.8)
    assert mix.uncovered_models == ("vgg16",)
    assert "vgg16" not in mix.capacity_per_s and mix.capacity_per_s["squeezenet"] > 0


def test_incumbent_penalty_keeps_running_mix():
    # One c5.xlarge is two c5.large (same vCPU, same per-vCPU profile, same price per vCPU): for
    # a demand that needs two c5.large, the incumbent shape is kept.
    types = ["c5.large", "c5.xlarge"]
    one = plan_vm_mix({"resnet50": 1e-3}, {"resnet50": 300.0}, CAT, ["c5.large"])
    d = {"resnet50": 1.5 * one.usable_capacity_per_s["resnet50"]}
    inc = {("resnet50", "c5.xlarge", False): 1}
    mix = plan_vm_mix(d, {"resnet50": 300.0}, CAT, types, incumbent=inc, launch_penalty_usd_per_h=0.01)
    assert mix.counts() == {("resnet50", "c5.xlarge", False): 1}
    inc = {("resnet50", "c5.large", False): 2}
    mix = plan_vm_mix(d, {"resnet50": 300.0}, CAT, types, incumbent=inc, launch_penalty_usd_per_h=0.01)
    assert mix.counts() == {("resnet50", "c5.large", False): 2}


def test_zero_demand_plans_nothing():
    mix = plan_vm_mix({"resnet50": 0.0}, {"resnet50": 300.0}, CAT, TYPES)
    assert mix.counts() == {} and mix.cost_usd_per_h == 0.0 and mix.status == "empty"


# --- reconcile -----------------------------------------------------------------------------
def one_mix(n: int, itype="c5.xlarge", model="resnet50") -> VmMix:
    """A plan of n VMs of one type (built by the planner at a demand that needs exactly n)."""
    if n == 0:
        return plan_vm_mix({model: 0.0}, {model: 300.0}, CAT, [itype])
    cap = vm_options(model, 300.0, CAT, [itype])[0].capacity_per_s
    mix = plan_vm_mix({model: cap * (n - 0.5)}, {model: 300.0}, CAT, [itype], target_utilization=1.0)
    assert mix.counts() == {(model, itype, False): n}
    return mix


class Fleet:
    """A tiny in-memory fleet: launches show up one tick later as booting, ready after boot_s."""

    def __init__(self, boot_s=90.0):
        self.boot_s, self.vms, self.seq = boot_s, {}, 0

    def apply(self, rec, now_s):
        for t in rec.terminations:
            self.vms.pop(t.vm_id)
        for l in rec.launches:
            self.seq += 1
            self.vms[f"i-{self.seq}"] = (l, now_s)

    def views(self, now_s):
        return [VmView(vid, l.request_id, l.instance_type, l.model,
                       "ready" if now_s - t0 >= self.boot_s else "booting", t0, l.spot)
                for vid, (l, t0) in sorted(self.vms.items())]


def test_capacity_in_flight_is_not_bought_twice():
    state = ReconcileState()
    rec, state = reconcile([], one_mix(3), 0.0, state)
    assert len(rec.launches) == 3
    # the provider does not list them yet: pending requests still count
    rec2, state = reconcile([], one_mix(3), 10.0, state)
    assert rec2.launches == () and rec2.in_flight[("resnet50", "c5.xlarge", False)] == 3
    # listed as booting: still counted, and the pending entries are dropped
    fleet = Fleet()
    fleet.apply(rec, 0.0)
    rec3, state = reconcile(fleet.views(20.0), one_mix(4), 20.0, state)
    assert len(rec3.launches) == 1 and state.pending[0].request_id == rec3.launches[0].request_id


def test_failed_or_timed_out_requests_are_relaunched():
    rec, state = reconcile([], one_mix(2), 0.0, ReconcileState(), launch_timeout_s=300)
    rec2, state2 = reconcile([], one_mix(2), 10.0, state, failed_request_ids=[rec.launches[0].request_id])
    assert len(rec2.launches) == 1
    rec3, _ = reconcile([], one_mix(2), 400.0, state2, launch_timeout_s=300)
    assert len(rec3.launches) == 2


def run_clock(plan_at, until_s, tick_s=10.0, **kw):
    """Drive reconcile on a virtual clock; returns terminations as (time, vm_id, launched_s)."""
    fleet, state, out = Fleet(), ReconcileState(), []
    t = 0.0
    while t <= until_s:
        views = fleet.views(t)
        rec, state = reconcile(views, plan_at(t), t, state, **kw)
        launched = {v.vm_id: v.launched_s for v in views}
        out += [(t, x.vm_id, launched[x.vm_id]) for x in rec.terminations]
        fleet.apply(rec, t)
        t += tick_s
    return out, fleet


def test_scale_down_waits_for_hysteresis_delay():
    # 4 VMs wanted until t=500, then 1: the 3 surplus VMs go only once surplus for 300 s
    terms, fleet = run_clock(lambda t: one_mix(4 if t < 500 else 1), 1000.0, scale_down_delay_s=300)
    assert len(terms) == 3 and len(fleet.vms) == 1
    assert all(t >= 800.0 for t, _, _ in terms) and min(t for t, _, _ in terms) == 800.0


def test_brief_dip_does_not_scale_down():
    terms, _ = run_clock(lambda t: one_mix(1 if 200 <= t < 400 else 3), 1000.0, scale_down_delay_s=300)
    assert terms == []


def test_billing_minimum_respected():
    # no hysteresis: a VM launched at t=0 and surplus at t=10 still lives out its 60 s minimum
    terms, _ = run_clock(lambda t: one_mix(2 if t < 10 else 0), 200.0, scale_down_delay_s=0,
                         billing_minimum_s=60)
    assert len(terms) == 2
    assert all(t - launched >= 60 for t, _, launched in terms)
    # and the reconciler says when to come back
    _, state = reconcile([], one_mix(1), 0.0, ReconcileState())
    views = [VmView("i-1", state.pending[0].request_id, "c5.xlarge", "resnet50", "booting", 0.0)]
    rec, _ = reconcile(views, one_mix(0), 20.0, state, scale_down_delay_s=0, billing_minimum_s=60)
    assert rec.terminations == () and rec.next_check_s == 60.0


def test_request_ids_deterministic_and_unique():
    def run():
        state, ids = ReconcileState(), []
        for t in (0.0, 10.0, 20.0):
            rec, state = reconcile([], one_mix(2 + int(t // 10)), t, state)
            ids += [l.request_id for l in rec.launches]
        return ids
    a, b = run(), run()
    assert a == b and len(set(a)) == len(a) == 4


def test_state_round_trip_gives_same_decisions():
    fleet = Fleet()
    rec, state = reconcile([], one_mix(3), 0.0, ReconcileState())
    fleet.apply(rec, 0.0)
    for t in (10.0, 100.0):  # surplus since t=10, not yet for 150 s
        rec, state = reconcile(fleet.views(t), one_mix(1), t, state, scale_down_delay_s=150)
        assert rec.terminations == ()
        fleet.apply(rec, t)
    restored = ReconcileState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    a, _ = reconcile(fleet.views(400.0), one_mix(1), 400.0, state, scale_down_delay_s=150)
    b, _ = reconcile(fleet.views(400.0), one_mix(1), 400.0, restored, scale_down_delay_s=150)
    assert a == b and len(a.terminations) == 2


def test_incumbent_counts_from_views():
    views = [VmView("a", "r1", "c5.large", "m", "ready", 0.0), VmView("b", "r2", "c5.large", "m", "booting", 0.0, True)]
    assert incumbent_counts(views) == {("m", "c5.large", False): 1, ("m", "c5.large", True): 1}
