"""Faults injected into the simulator: every request still gets exactly one answer, the
control loop survives, and the shell's guard holds whatever the policy says."""
import numpy as np
import pytest

from controller.core import LaunchVm, Plan
from controller.policies.registry import register
from controller.sim.run import simulate
from controller.trace import load_trace


def _cfg(config, faults=None, vms=None, **sim):
    upd = dict(sim)
    if faults:
        upd["faults"] = config.simulator.faults.model_copy(update=faults)
    cfg = config.model_copy(update={"simulator": config.simulator.model_copy(update=upd)})
    if vms:
        cfg = cfg.model_copy(update={"vms": cfg.vms.model_copy(update=vms)})
    return cfg


ALL_FAULTS = {"vm_boot_failure_prob": 0.3, "vm_death_rate_per_h": 20.0, "slow_boot_factor": 2.0,
              "api_error_prob": 0.2, "function_error_prob": 0.05, "policy_error_prob": 0.1}


@pytest.mark.parametrize("policy", ["spock", "hybrid"])
def test_every_request_answered_once_under_faults(config, catalog, policy):
    r = simulate(_cfg(config, ALL_FAULTS, duration_s=1200), catalog, "wits", [policy], jobs=1).results[0]
    assert r.requests == int(load_trace("wits")[:1200].sum())  # every arrival of the trace counted
    assert sum(r.model_requests) == r.requests  # each sent to exactly one model
    assert r.latency_hist.sum() == r.served  # each served one answered once
    f = r.faults
    assert f["tick_errors"] > 0 and f["vm_deaths"] > 0 and f["function_retries"] > 0
    assert f["provider_errors"] > 0  # API errors and deaths were reported to the policy
    # Spilling to functions keeps most requests on time despite all of it (a retried call
    # takes two function latencies, which is what misses here).
    assert r.slo_violations / r.requests < 0.10


def test_function_failures_are_retried_and_billed(config, catalog):
    base = simulate(_cfg(config, duration_s=300), catalog, "wits", ["lambda-only"], jobs=1).results[0]
    hurt = simulate(_cfg(config, {"function_error_prob": 0.2}, duration_s=300), catalog, "wits",
                    ["lambda-only"], jobs=1).results[0]
    assert hurt.faults["function_retries"] > 0
    assert hurt.function_usd > base.function_usd * 1.1  # retries cost
    # About p^2 = 4 % fail twice and become explicit errors, never silent losses.
    assert 0.02 < hurt.dropped / hurt.requests < 0.06
    assert hurt.requests == int(load_trace("wits")[:300].sum())
    assert hurt.latency_hist.sum() == hurt.served  # the others were answered with an error


class _Greedy:
    """A policy gone wrong: launches 50 VMs every tick."""

    name, clairvoyant = "greedy-test", False

    def __init__(self, ctx):
        from procurement.sizing import fixed_models
        from selector.fixed import FixedSelector
        self._sel = FixedSelector(fixed_models(ctx))
        self.n = 0

    def selector(self):
        return self._sel

    def initial_state(self, ctx, rng):
        return None

    def decide(self, obs, state, rng):
        launches = []
        for _ in range(50):
            self.n += 1
            launches.append(LaunchVm(f"g-{self.n}", "c5.4xlarge", "inception"))
        return Plan(launches=tuple(launches), next_tick_s=obs.now_s + 10), state


register("greedy-test", f"{__name__}:_Greedy")


def test_guard_caps_instances_and_spend(config, catalog):
    cfg = _cfg(config, duration_s=600, vms={"max_instances": 7, "max_spend_usd_per_h": 3.0})
    sim_cls = __import__("controller.sim.engine", fromlist=["Simulation"]).Simulation
    from controller.trace import load_trace, prepare
    sim = sim_cls(cfg, catalog, prepare(load_trace("wits"), 0, 600), "greedy-test")
    peak = {"n": 0, "usd": 0.0}
    orig = sim._apply

    def watch(plan, now_s):
        orig(plan, now_s)
        fleet = sim.provider.list(now_s)
        peak["n"] = max(peak["n"], len(fleet))
        peak["usd"] = max(peak["usd"], sum(catalog.instance_type(v.instance_type).on_demand_usd_per_h for v in fleet))

    sim._apply = watch
    r = sim.run()
    assert peak["n"] <= 7 and peak["usd"] <= 3.0 + 1e-9
    assert r.faults["guard_refusals"] > 0
    assert np.isfinite(r.total_usd)
