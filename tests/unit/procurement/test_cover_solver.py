"""The exact cover search against HiGHS's MILP (scipy.optimize.milp) on random instances shaped
like the planner's: on-demand options with a spot twin, prices in proportion to capacity (the
ties that make branch and bound long) or not, running VMs with a launch penalty, a spot cap."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

from controller.catalog import load_catalog
from controller.config import REPO_ROOT
from procurement.cover_solver import solve_cover
from procurement.planner_types import VmOption
from procurement.vm_planner import _solve, plan_vm_mix

CAT = load_catalog(os.path.join(REPO_ROOT, "configs", "catalog"))


def _instance(rng):
    opts = []
    for i in range(int(rng.integers(1, 9))):
        cap = float(rng.choice([rng.uniform(1, 500), 50.0 * int(rng.integers(1, 9))]))
        price = float(rng.choice([rng.uniform(0.02, 2.0), 0.085 * cap / 50.0]))
        opts.append(VmOption("m", f"t{i}", False, 1, 10.0, cap, price))
        if rng.random() < 0.5:
            opts.append(VmOption("m", f"t{i}", True, 1, 10.0, cap, price * float(rng.uniform(0.3, 0.4))))
    need = float(rng.choice([rng.uniform(0.001, 20), rng.uniform(20, 2000), 50.0 * int(rng.integers(1, 30))]))
    inc = {o.key: int(rng.integers(0, 4)) for o in opts if rng.random() < 0.3}
    return opts, need, inc, float(rng.choice([0.0, 0.01, 0.05])), float(rng.choice([0.0, 0.1])), \
        float(rng.choice([1.0, 0.5, 0.3, 0.0]))


def _objective(opts, x, inc, penalty, frac):
    running = [inc.get(o.key, 0) for o in opts]
    charged = (penalty > 0 or frac > 0) and any(running)
    return sum(o.price_usd_per_h * k + (penalty + frac * o.price_usd_per_h) * max(0, k - r) * charged
               for o, k, r in zip(opts, x, running))


@pytest.mark.parametrize("seed", range(4))
def test_search_finds_the_milp_optimum(seed):
    rng = np.random.default_rng(seed)
    searched = 0
    for _ in range(150):
        opts, need, inc, penalty, frac, share = _instance(rng)
        running = [inc.get(o.key, 0) for o in opts]
        per_vm = [(penalty + frac * o.price_usd_per_h) if (penalty or frac) and any(running) else 0.0 for o in opts]
        side = (1 - share) * need if share < 1 else 0.0
        x = solve_cover([o.capacity_per_s for o in opts], [o.price_usd_per_h for o in opts],
                        [not o.spot for o in opts], running, per_vm, need, side,
                        [math.ceil(need / o.capacity_per_s - 1e-9) for o in opts])
        x_milp, status = _solve(opts, {"m": need}, True, share, None, inc, penalty, 10.0, frac)
        assert status == "optimal"
        if x is None:  # the search gave up (the planner then asks HiGHS)
            continue
        searched += 1
        cover = sum(o.capacity_per_s * k for o, k in zip(opts, x))
        on_demand = sum(o.capacity_per_s * k for o, k in zip(opts, x) if not o.spot)
        assert cover >= need * (1 - 1e-9) and on_demand >= side * (1 - 1e-9)
        assert all(0 <= k <= math.ceil(need / o.capacity_per_s - 1e-9) for o, k in zip(opts, x))
        assert _objective(opts, x, inc, penalty, frac) == pytest.approx(
            _objective(opts, x_milp, inc, penalty, frac), rel=1e-9, abs=1e-12)
    assert searched >= 140  # the fallback is for the rare long search, not the rule


def test_no_cover_without_on_demand_options_is_none():
    # Only spot options and an on-demand share to meet: nothing covers it.
    assert solve_cover([100.0], [0.03], [False], [0], [0.0], 50.0, 25.0, [1]) is None


def test_planner_mix_equals_the_milp_per_model():
    types = list(CAT.instance_types)
    rng = np.random.default_rng(7)
    for _ in range(20):
        demand = {m: float(rng.uniform(1, 3000)) for m in CAT.model_names}
        slo = {m: float(rng.choice([100.0, 300.0, 1000.0])) for m in demand}
        fast = plan_vm_mix(demand, slo, CAT, types, allow_spot=True, spot_max_share=0.5)
        # max_instances far above any plan: the same problem, solved as one MILP by HiGHS
        milp = plan_vm_mix(demand, slo, CAT, types, allow_spot=True, spot_max_share=0.5, max_instances=10**6)
        assert fast.status == milp.status == "optimal"
        assert fast.cost_usd_per_h == pytest.approx(milp.cost_usd_per_h, rel=1e-9)
        for m, need in demand.items():
            if m not in fast.uncovered_models:
                assert fast.capacity_per_s[m] >= need / 0.8 * (1 - 1e-9)
