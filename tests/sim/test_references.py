"""The references against every policy, as properties over random small traces (issue 18):
- the offline optimum (`oracle`, executed through the simulator) costs no more than any policy
  that has no more SLO violations;
- the LP floor (`lower-bound`) is below every policy, and below the optimum's own MILP value;
- every policy chooses among the same variants (those meeting the floor), and a pinned `model`
  pins the baselines and references alike.

The traces are slices of the real traces at a random offset, rate scale and SLO, short enough
that the MILP solves to optimality (its gap is checked). The short form runs in `make test`;
`-m slow` runs more of them."""
import numpy as np
import pytest

from controller.sim.run import simulate

POLICIES = ["vm-reactive", "lambda-only", "spock", "mark", "oracle", "hybrid"]


def _cfg(config, slo_ms, **sim):
    return config.with_slo_ms(slo_ms).model_copy(
        update={"simulator": config.simulator.model_copy(update=sim)})


def _case(seed):
    rng = np.random.default_rng(seed)
    trace = ["wits", "berkeley"][seed % 2]
    start = int(rng.integers(0, 40000))
    return trace, dict(start_s=start, duration_s=int(rng.integers(600, 1500)),
                       rate_scale=float(rng.choice([0.3, 1.0, 3.0, 10.0]))), float(rng.choice([100, 300, 1000]))


def _check(config, catalog, seed):
    trace, sim, slo = _case(seed)
    rep = simulate(_cfg(config, slo, **sim), catalog, trace, POLICIES, jobs=1)
    by = {r.policy: r for r in rep.results}
    lb = next(row["total_cost_usd"] for row in rep.table if row["policy"] == "lower-bound")
    o = by["oracle"]
    for name, ref in o.reference.items():
        assert ref["status"] == "optimal" and ref["gap"] <= 1e-3, (name, ref)
        assert lb <= ref["objective_usd"] * (1 + 1e-6) + 1e-9
    viol = lambda r: r.slo_violations / r.requests
    assert viol(o) <= 0.002, (seed, viol(o))
    for name, r in by.items():
        assert lb <= r.total_usd * (1 + 1e-6) + 1e-9, (seed, name, lb, r.total_usd)
        if name != "oracle" and viol(r) <= viol(o):
            # 1 %: the plan is optimal for its model of the simulator; executing it adds the few
            # requests a VM's in-second Poisson bursts spill (a policy on the same VMs spills
            # them too), which is noise of that order, not a reference beaten.
            assert o.total_usd <= r.total_usd * 1.01 + 1e-9, (seed, name, o.total_usd, r.total_usd)
    return rep


@pytest.mark.parametrize("seed", range(3))
def test_optimum_and_floor_against_every_policy(config, catalog, seed):
    _check(config, catalog, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 20))
def test_optimum_and_floor_against_every_policy_more_traces(config, catalog, seed):
    _check(config, catalog, seed)


def test_every_policy_serves_a_variant_meeting_the_floor_and_a_pin_pins_the_references(config, catalog):
    cfg = _cfg(config, 300, duration_s=300)
    floor = cfg.apps[0].min_accuracy
    rep = simulate(cfg, catalog, "wits", POLICIES, jobs=1)
    for r in rep.results:
        served = [m for m, n in zip(r.models, r.model_requests) if n]
        assert served and all(catalog.model(m).top1_accuracy >= floor - 1e-12 for m in served), r.policy
        assert r.summary()["variants"].split(" ")[0] in served
    pinned = cfg.model_copy(update={"apps": [cfg.apps[0].model_copy(update={"model": "resnet50"})]})
    rep = simulate(pinned, catalog, "wits", ["vm-reactive", "lambda-only", "spock", "mark", "oracle"], jobs=1)
    for r in rep.results:
        assert r.variants() == "resnet50 100%", r.policy
