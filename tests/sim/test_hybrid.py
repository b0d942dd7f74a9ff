"""The `hybrid` policy through the simulator: it runs, it is deterministic, it chooses models
within each class's floor, and the fixed selectors do what they say."""
import os

import pytest

from controller.config import load_config
from controller.sim.run import simulate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cfg(config, **sim):
    return config.model_copy(update={"simulator": config.simulator.model_copy(update=sim)})


@pytest.fixture(scope="module")
def three_apps():
    return load_config(os.path.join(ROOT, "configs", "three-apps.yaml"))


def test_hybrid_serves_everything_within_floor(config, catalog):
    rep = simulate(_cfg(config, duration_s=900), catalog, "wits", ["hybrid", "vm-reactive"], jobs=1)
    h = {r.policy: r for r in rep.results}["hybrid"]
    assert h.served + h.dropped == h.requests and h.dropped == 0
    assert h.meets_both / h.requests > 0.99
    assert 100 * h.accuracy_sum / h.served >= 70.0


def test_hybrid_is_deterministic(config, catalog):
    cfg = _cfg(config, duration_s=600)
    a = simulate(cfg, catalog, "wits", ["hybrid"], jobs=1).results[0]
    b = simulate(cfg, catalog, "wits", ["hybrid"], jobs=1).results[0]
    assert (a.total_usd, a.slo_violations, a.served_vm) == (b.total_usd, b.slo_violations, b.served_vm)


@pytest.mark.parametrize("name,check", [
    ("most-accurate", lambda acc: acc == pytest.approx(
        0.5 * 77.9 + 0.3 * 77.9 + 0.2 * 77.9, abs=0.5)),  # resnet200 meets every floor
    ("fastest", lambda acc: acc < 72.0),
])
def test_fixed_selectors(three_apps, catalog, name, check):
    cfg = _cfg(three_apps, duration_s=300)
    r = simulate(cfg, catalog, "wits", ["hybrid"], policy_kwargs={"hybrid": {"selector": name}}, jobs=1).results[0]
    assert check(100 * r.accuracy_sum / r.served)


@pytest.mark.parametrize("name", ["epsilon-greedy", "ucb1", "thompson", "exp3", "constrained"])
def test_every_bandit_runs_in_the_simulator(three_apps, catalog, name):
    cfg = _cfg(three_apps, duration_s=120)
    r = simulate(cfg, catalog, "wits", ["hybrid"], policy_kwargs={"hybrid": {"selector": name}}, jobs=1).results[0]
    assert r.served == r.requests
    # Every request is served by a model meeting its class's floor.
    assert r.meets_both <= r.requests
