"""The VM/function split (procurement/vm_cover.py), make-before-break in reconcile and the
price-proportional launch penalty of the planner: against brute force and hand-worked cases."""
from __future__ import annotations

import os

import numpy as np
import pytest

from controller.catalog import load_catalog
from controller.config import REPO_ROOT
from controller.core import VmView
from procurement.planner_types import MixEntry, VmMix, VmOption
from procurement.vm_cover import append_history, cover_rate_per_s, critical_ratio, whole_vms_cover
from procurement.vm_planner import ReconcileState, plan_vm_mix, reconcile

CAT = load_catalog(os.path.join(REPO_ROOT, "configs", "catalog"))


def test_critical_ratio_worked_example():
    # $0.085/h for 94 req/s at 0.8 use: 2.95e-5 $/s over 75.2 req/s = 3.14e-7 $ a request-slot;
    # against a 1.1e-6 $ call that is 0.285
    assert critical_ratio(0.085, 94.0, 0.8, 1.1e-6) == pytest.approx(0.085 / 3600 / 75.2 / 1.1e-6)
    assert critical_ratio(0.085, 94.0, 0.8, None) == 0.0  # no function: VMs cover everything


def brute_force_k(sample, unit, ratio):
    """VM count minimising (VM $ + function $) in units of a function call, by enumeration."""
    costs = [k * ratio * unit + np.maximum(0.0, sample - k * unit).mean() for k in range(int(sample.max() / unit) + 3)]
    return int(np.argmin(costs)), costs


@pytest.mark.parametrize("seed", range(8))
def test_whole_vms_cover_minimises_expected_cost(seed):
    rng = np.random.default_rng(seed)
    sample = rng.gamma(rng.uniform(1, 20), rng.uniform(5, 30), size=500)
    unit, ratio = float(rng.uniform(10, 80)), float(rng.uniform(0.05, 0.9))
    k = whole_vms_cover(sample, unit, ratio)
    k_bf, costs = brute_force_k(sample, unit, ratio)
    assert costs[k] == pytest.approx(costs[k_bf], rel=1e-9, abs=1e-12)


def test_whole_vms_cover_edges():
    assert whole_vms_cover(np.full(100, 150.0), 75.0, 0.3) == 2  # exactly two VMs' worth, always
    assert whole_vms_cover(np.full(100, 151.0), 75.0, 0.3) == 2  # a third for 1 req/s does not pay
    assert whole_vms_cover(np.full(100, 151.0), 75.0, 0.01) == 3  # unless functions cost 100x
    assert whole_vms_cover(np.zeros(10), 75.0, 0.3) == 0


def test_cover_follows_the_level_and_needs_history():
    rng = np.random.default_rng(0)
    short = rng.poisson(100, 200).astype(float)
    assert cover_rate_per_s(short, 100, 0.3) is None  # too little history
    assert cover_rate_per_s(rng.poisson(100, 1800).astype(float), 100, 1.0) is None  # functions win
    steady = rng.poisson(100, 1800).astype(float)
    c = cover_rate_per_s(steady, 100, 0.3)
    # the 70th percentile of Poisson(100) seconds, give or take the level's noise
    assert 100 <= c <= 115
    # the same history at twice the rate: twice the cover (the ratio is relative to the level)
    c2 = cover_rate_per_s(rng.poisson(200, 1800).astype(float), 100, 0.3)
    assert 1.8 * c <= c2 <= 2.2 * c
    # whole VMs: a multiple of the unit
    cw = cover_rate_per_s(steady, 100, 0.3, unit_per_s=40.0)
    assert cw % 40.0 == 0 and 80 <= cw <= 120


def test_append_history_keeps_the_newest():
    h = append_history(None, np.arange(5.0), keep_s=8)
    h = append_history(h, np.arange(5.0, 10.0), keep_s=8)
    assert h.tolist() == list(np.arange(2.0, 10.0))


def _mix(itype: str, n: int, model="mobilenet") -> VmMix:
    opt = VmOption(model, itype, False, 1, 10.0, 100.0, CAT.instance_type(itype).on_demand_usd_per_h)
    return VmMix((MixEntry(opt, n),), opt.price_usd_per_h * n, {model: 100.0 * n}, {model: 80.0 * n})


def test_make_before_break_keeps_old_type_until_new_is_up():
    old = [VmView("i-1", "r-1", "c5.large", "mobilenet", "ready", 0.0)]
    kw = dict(scale_down_delay_s=0.0, billing_minimum_s=60.0)
    rec, st = reconcile(old, _mix("c5.xlarge", 1), 500.0, ReconcileState(), make_before_break=True, **kw)
    assert len(rec.launches) == 1 and rec.terminations == ()  # the swap starts, the old VM stays
    booting = old + [VmView("i-2", rec.launches[0].request_id, "c5.xlarge", "mobilenet", "booting", 500.0)]
    rec2, st = reconcile(booting, _mix("c5.xlarge", 1), 510.0, st, make_before_break=True, **kw)
    assert rec2.terminations == () and rec2.launches == ()
    up = [old[0], VmView("i-2", booting[1].request_id, "c5.xlarge", "mobilenet", "ready", 500.0)]
    rec3, _ = reconcile(up, _mix("c5.xlarge", 1), 600.0, st, make_before_break=True, **kw)
    assert [t.vm_id for t in rec3.terminations] == ["i-1"]  # replaced: now it goes
    # without it the old VM goes at once, leaving the model nothing ready for a boot time
    rec4, _ = reconcile(old, _mix("c5.xlarge", 1), 500.0, ReconcileState(), **kw)
    assert [t.vm_id for t in rec4.terminations] == ["i-1"]


def test_launch_penalty_frac_grows_rather_than_swaps():
    # mobilenet at SLO 300: c5.large / xlarge / 2xlarge have equal $ per capacity. Running: one
    # xlarge; demand needs 4 larges' worth. A flat penalty per new VM prefers one new 2xlarge
    # (and dropping the xlarge) to an added xlarge (the same count of launches, the same $/h);
    # a share of the new VM's price prefers the cheaper launch, which keeps the running VM.
    from procurement.vm_planner import vm_options
    types = ["c5.large", "c5.xlarge", "c5.2xlarge", "c5.4xlarge"]
    cap_large = vm_options("mobilenet", 300.0, CAT, ["c5.large"])[0].capacity_per_s
    inc = {("mobilenet", "c5.xlarge", False): 1}

    def launched_usd_per_h(frac):
        mix = plan_vm_mix({"mobilenet": 4 * cap_large - 1.0}, {"mobilenet": 300.0}, CAT, types,
                          target_utilization=1.0, incumbent=inc, launch_penalty_usd_per_h=0.005,
                          launch_penalty_frac=frac)
        return sum(CAT.instance_type(k[1]).on_demand_usd_per_h * max(0, n - inc.get(k, 0))
                   for k, n in mix.counts().items()), mix.counts()

    usd, counts = launched_usd_per_h(0.25)
    assert counts[("mobilenet", "c5.xlarge", False)] >= 1  # the running VM stays in the plan
    assert usd == pytest.approx(CAT.instance_type("c5.xlarge").on_demand_usd_per_h)
    assert launched_usd_per_h(0.0)[0] > usd  # the flat penalty alone swaps (what frac is for)
