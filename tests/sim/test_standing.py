"""Standing VMs in the simulator (the live head): seen by the policy as ready capacity of every
model they serve, billed once from t = 0, never terminated; off by default."""
import numpy as np
import pytest

from controller.catalog import CatalogError
from controller.config import StandingVmConfig
from controller.core import Plan, TerminateVm
from controller.policies.registry import register
from controller.sim.engine import Simulation
from controller.standing import is_standing, standing_vm
from controller.trace import load_trace, prepare


class _Terminator:
    """Asks to terminate every VM it sees, every tick; records what it saw."""

    name, clairvoyant = "terminator-test", False
    seen: list = []

    def __init__(self, ctx):
        from procurement.sizing import fixed_models
        from selector.fixed import FixedSelector
        self._sel = FixedSelector(fixed_models(ctx))

    def selector(self):
        return self._sel

    def initial_state(self, ctx, rng):
        return None

    def decide(self, obs, state, rng):
        _Terminator.seen.append(obs.vms)
        return Plan(terminations=tuple(TerminateVm(v.vm_id) for v in obs.vms), next_tick_s=obs.now_s + 10), state


register("terminator-test", f"{__name__}:_Terminator")


def _sim(config, catalog, standing, policy="terminator-test", duration_s=300):
    cfg = config.model_copy(update={"simulator": config.simulator.model_copy(update={"standing_vms": standing})})
    return Simulation(cfg, catalog, prepare(load_trace("wits"), 0, duration_s), policy)


def test_standing_vm_serves_is_billed_and_never_terminated(config, catalog):
    _Terminator.seen = []
    model = catalog.model_names[0]
    r = _sim(config, catalog, [StandingVmConfig(instance_type="c5.xlarge", models=[model])]).run()
    price = catalog.instance_type("c5.xlarge").on_demand_usd_per_h
    assert r.vm_usd == pytest.approx(price * 300 / 3600)
    assert len(_Terminator.seen) == 30  # every tick it was there, ready, for its model, despite the terminations
    assert all([(v.vm_id, v.model, v.state) for v in vms] == [(f"standing-0/{model}", model, "ready")]
               for vms in _Terminator.seen)


def test_one_standing_vm_for_every_model_is_billed_once(config, catalog):
    sim = _sim(config, catalog, [StandingVmConfig(instance_type="c5.4xlarge")])
    r = sim.run()
    assert len(sim.standing[0].models) == len(catalog.model_names)
    assert r.served_vm > 0.9 * r.requests  # the policy buys nothing: the standing VM serves
    assert r.vm_usd == pytest.approx(catalog.instance_type("c5.4xlarge").on_demand_usd_per_h * 300 / 3600)


def test_off_by_default_changes_nothing(config, catalog):
    a = _sim(config, catalog, [], policy="hybrid").run()
    b = Simulation(config, catalog, prepare(load_trace("wits"), 0, 300), "hybrid").run()
    assert (a.total_usd, a.slo_violations, a.served_vm) == (b.total_usd, b.slo_violations, b.served_vm)


def test_standing_vm_helpers(catalog):
    sv = standing_vm("head", "c5.large", ["no-such-model", catalog.model_names[1]], catalog, launched_s=5.0)
    assert sv.models == (catalog.model_names[1],)
    assert is_standing([sv], f"head/{catalog.model_names[1]}") and not is_standing([sv], "vm-1")
    assert sv.charge_usd(65.0, 60.0) == pytest.approx(sv.price_usd_per_h / 3600 * 60)
    with pytest.raises(CatalogError):
        standing_vm("head", "no.such", [], catalog)


def test_prewarm_off_keeps_no_warm_pool(config, catalog):
    """`simulator.prewarm_functions: false` mirrors the live switch: planned warm pools are not kept."""
    def run(prewarm):
        cfg = config.model_copy(update={"simulator": config.simulator.model_copy(update={"prewarm_functions": prewarm})})
        sim = Simulation(cfg, catalog, prepare(load_trace("wits"), 0, 900), "hybrid")
        return sim, sim.run()
    on, r_on = run(True)
    off, r_off = run(False)
    assert any(p.warm_pool for p in on.fn_pools)  # hybrid plans warm pools on this slice
    assert not any(p.warm_pool for p in off.fn_pools) and r_off.function_usd < r_on.function_usd


def test_vm_latency_jitter_is_drawn_from_the_measured_spread(config, catalog):
    def run(jitter):
        sim_cfg = config.simulator.model_copy(update={
            "standing_vms": [StandingVmConfig(instance_type="c5.4xlarge")], "vm_latency_jitter_ms": jitter})
        # A quarter of WITS' rate (~50 requests/s) leaves the VM unqueued, so the spread shows as drawn.
        return Simulation(config.model_copy(update={"simulator": sim_cfg}), catalog,
                          prepare(load_trace("wits"), 0, 300, rate_scale=0.25), "terminator-test").run()
    base, shifted = run([]), run([40.0])
    assert shifted.requests == base.requests and shifted.served_vm == base.served_vm > 0
    assert shifted.percentile_ms(50) == pytest.approx(base.percentile_ms(50) + 40.0, abs=5.0)
    tail = run([0.0] * 90 + [500.0] * 10)  # 10 % of VM requests 500 ms slower
    assert tail.percentile_ms(50) == pytest.approx(base.percentile_ms(50), abs=5.0)
    assert tail.percentile_ms(95) > base.percentile_ms(95) + 400.0


def test_a_standing_vm_is_counted_once_across_its_models(config, catalog):
    """One standing VM for every model: the views' shares sum to one VM, split by the interval's
    work (all requests to the fixed model: 0.05 / k + 0.95 of it), and so do the pools' rates."""
    _Terminator.seen = []
    models = catalog.model_names
    k = len(models)
    sim = _sim(config, catalog, [StandingVmConfig(instance_type="c5.xlarge", models=models)])
    sim.run()
    first, last = _Terminator.seen[0], _Terminator.seen[-1]
    assert [v.share for v in first] == pytest.approx([1.0 / k] * k)  # nothing seen yet: an even split
    assert sum(v.share for v in last) == pytest.approx(1.0)
    busy = max(last, key=lambda v: v.share)
    assert busy.share == pytest.approx(0.05 / k + 0.95) and sim.result.served_vm > 0
    full = {m: p.capacity_per_s(sim.vm_pools[i].batch_size) for i, m in enumerate(models)
            if (p := catalog.vm_profile(m, "c5.xlarge")) is not None}
    assert sum(p.mu_per_s / full[p.model] for p in sim.vm_pools if p.model in full) == pytest.approx(1.0)
    assert sim.served_on_standing == pytest.approx(sim.result.served_vm)  # the only VM


def test_hybrid_covers_demand_with_a_standing_vm_of_a_type_it_may_not_buy(config, catalog):
    # The live head has its own rows (`<type>@head`): a type outside vms.instance_types. Serving one
    # model (share 1) it is still capacity hybrid covers demand with, not an incumbent of its mix.
    best = max(catalog.models, key=lambda m: m.top1_accuracy)  # the only variant meeting the floor
    model = best.name
    app = config.apps[0].model_copy(update={"min_accuracy": best.top1_accuracy, "slo_ms": 5000.0, "share": 1.0})
    cfg = config.model_copy(update={"apps": [app],
                                    "vms": config.vms.model_copy(update={"instance_types": ["c5.large"]})})
    cfg = cfg.model_copy(update={"simulator": cfg.simulator.model_copy(
        update={"standing_vms": [StandingVmConfig(instance_type="c5.4xlarge", models=[model])]})})
    r = Simulation(cfg, catalog, np.full(300, 20), "hybrid").run()  # 20 req/s: well within its capacity
    assert r.served_vm > 0.9 * r.requests
    assert r.vm_usd == pytest.approx(catalog.instance_type("c5.4xlarge").on_demand_usd_per_h * 300 / 3600)
