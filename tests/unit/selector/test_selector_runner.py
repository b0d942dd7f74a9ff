"""make_selector end to end: arms by floor, NoFeasibleModel, determinism, state round trip, merge."""
import json

import numpy as np
import pytest

import selector
from controller.core import QueryClass
from selector import NoFeasibleModel, SelectorState, make_selector, merge

CLASSES = (QueryClass("vision", 200.0, 0.70, 0.5), QueryClass("fast", 100.0, 0.55, 0.3),
           QueryClass("accurate", 1000.0, 0.75, 0.2))


def feedback(cat, models, rng, slo_ms=200.0):
    """Synthetic outcomes: latency grows with model index, labels on half the requests."""
    m = len(models)
    latency = rng.lognormal(np.log(40.0 + 25.0 * models), 0.3)
    acc = np.array([cat.models[i].top1_accuracy for i in models])
    correct = np.where(rng.random(m) < 0.5, np.nan, (rng.random(m) < acc).astype(float))
    return latency, latency <= slo_ms, correct, 1e-6 * (1 + models)


def drive(sel, cat, seed, steps=30, n=1, classes=(0,)):
    rng_sel, rng_env = np.random.default_rng(seed), np.random.default_rng(seed + 1000)
    picks = []
    for _ in range(steps):
        for ci in classes:
            m = sel.select(ci, n, rng_sel)
            picks.append(m.copy())
            sel.observe(ci, m, *feedback(cat, m, rng_env))
    return np.concatenate(picks)


def test_arms_are_models_meeting_the_floor(catalog):
    sel = make_selector("ucb1", CLASSES, catalog)
    for ci, cls in enumerate(CLASSES):
        assert sel.arms(ci) == [m.name for m in catalog.models if m.top1_accuracy >= cls.min_accuracy]
    assert set(selector.SELECTORS) == {"epsilon-greedy", "ucb1", "thompson", "exp3", "constrained"}


def test_no_feasible_model_names_class_and_floor(catalog):
    with pytest.raises(NoFeasibleModel, match=r"'strict'.*0\.950"):
        make_selector("thompson", [QueryClass("strict", 100.0, 0.95, 1.0)], catalog)


def test_labels_drop_an_arm_and_then_the_class(catalog):
    sel = make_selector("epsilon-greedy", [QueryClass("a", 200.0, 0.77, 1.0)], catalog)
    assert sel.arms(0) == ["resnet200", "resnet50"]
    idx = {name: catalog.model_index[name] for name in sel.arms(0)}
    ones = np.ones(400)
    # resnet50 (prior 0.774) labelled wrong half the time: posterior ~0.51, confidently < 0.77
    wrong = np.tile([1.0, 0.0], 200)
    sel.observe(0, np.full(400, idx["resnet50"]), ones * 50, ones > 0, wrong, ones * 1e-6)
    rng = np.random.default_rng(0)
    assert set(sel.select(0, 200, rng).tolist()) == {idx["resnet200"]}
    assert sel.select(0, 1, rng).tolist() == [idx["resnet200"]]
    sel.observe(0, np.full(400, idx["resnet200"]), ones * 50, ones > 0, wrong, ones * 1e-6)
    with pytest.raises(NoFeasibleModel, match="'a'.*0.770.*after accuracy feedback"):
        sel.select(0, 1, rng)


def test_fixed_model_class_is_a_baseline(catalog):
    sel = make_selector("thompson", [QueryClass("base", 100.0, 0.9, 1.0, model="squeezenet")], catalog)
    assert sel.select(0, 5, np.random.default_rng(0)).tolist() == [catalog.model_index["squeezenet"]] * 5


@pytest.mark.parametrize("name", selector.SELECTORS)
@pytest.mark.parametrize("n", [1, 64])
def test_same_seed_same_feedback_same_choices(catalog, name, n):
    a = drive(make_selector(name, CLASSES, catalog), catalog, seed=5, n=n, classes=(0, 1, 2))
    b = drive(make_selector(name, CLASSES, catalog), catalog, seed=5, n=n, classes=(0, 1, 2))
    assert a.tolist() == b.tolist()
    c = drive(make_selector(name, CLASSES, catalog), catalog, seed=6, n=n, classes=(0, 1, 2))
    assert a.tolist() != c.tolist() or name == "ucb1"  # UCB1 draws nothing at random


@pytest.mark.parametrize("name", selector.SELECTORS)
def test_state_json_round_trip_continues_identically(catalog, name):
    sel = make_selector(name, CLASSES, catalog)
    drive(sel, catalog, seed=1, n=16, classes=(0, 1, 2))
    text = sel.state.to_json()
    json.loads(text)  # plain JSON
    assert SelectorState.from_dict(sel.state.to_dict()).to_json() == text
    restored = make_selector(name, CLASSES, catalog)
    restored.load_state(text)
    assert restored.state.to_dict() == sel.state.to_dict()
    assert drive(restored, catalog, seed=2, n=8).tolist() == drive(sel, catalog, seed=2, n=8).tolist()
    assert restored.state.to_json() == sel.state.to_json()


def test_load_state_refuses_other_arms(catalog):
    sel = make_selector("ucb1", CLASSES, catalog)
    with pytest.raises(ValueError, match="does not fit"):
        sel.load_state(make_selector("ucb1", CLASSES[:1], catalog).state)
    with pytest.raises(ValueError, match="does not fit"):
        sel.load_state(make_selector("exp3", CLASSES, catalog).state)


def test_merge_of_disjoint_replicas_equals_one_selector(catalog):
    params = {"half_life_obs": None}
    whole = make_selector("thompson", CLASSES, catalog, params)
    reps = [make_selector("thompson", CLASSES, catalog, params) for _ in range(2)]
    rng = np.random.default_rng(4)
    for step in range(20):
        m = rng.integers(0, len(catalog.models), 32)
        out = feedback(catalog, m, rng)
        whole.observe(0, m, *out)
        reps[step % 2].observe(0, m, *out)
    merged = merge([r.state for r in reps])
    np.testing.assert_allclose(merged.classes[0].stats, whole.state.classes[0].stats)
    np.testing.assert_allclose(merged.classes[0].labels, whole.state.classes[0].labels)
    # from a common base: base + sum(replica - base)
    base = merged.copy()
    for r in reps:
        r.load_state(base)
    for step in range(10):
        m = rng.integers(0, len(catalog.models), 16)
        out = feedback(catalog, m, rng)
        whole.observe(0, m, *out)
        reps[step % 2].observe(0, m, *out)
    merged = merge([r.state for r in reps], base=base)
    np.testing.assert_allclose(merged.classes[0].stats, whole.state.classes[0].stats)
    np.testing.assert_allclose(merged.classes[0].labels, whole.state.classes[0].labels)


def test_merge_adds_exp3_increments(catalog):
    reps = [make_selector("exp3", CLASSES[:1], catalog) for _ in range(2)]
    reps[0].state.classes[0].log_w[:] = 0.0
    reps[0].state.classes[0].log_w[0] = 0.3
    reps[1].state.classes[0].log_w[1] = 0.2
    merged = merge([r.state for r in reps]).classes[0].log_w
    assert merged[0] - merged[1] == pytest.approx(0.1)
    assert merged.max() == 0.0


def test_observe_ignores_models_outside_the_class(catalog):
    sel = make_selector("ucb1", CLASSES, catalog)
    squeezenet = catalog.model_index["squeezenet"]  # 0.554 < 0.70: not an arm of "vision"
    sel.observe(0, np.array([squeezenet]), np.array([10.0]), np.array([True]), np.array([1.0]), np.array([0.0]))
    sel.observe(0, np.array([squeezenet] * 3), np.ones(3), np.ones(3, bool), np.ones(3), np.zeros(3))
    assert sel.state.classes[0].stats.sum() == 0.0


def test_bad_name_and_params_are_clear(catalog):
    with pytest.raises(selector.UnknownSelector, match="known: epsilon-greedy"):
        make_selector("softmax", CLASSES, catalog)
    with pytest.raises(selector.SelectorParamsError, match="epsilon"):
        make_selector("epsilon-greedy", CLASSES, catalog, {"epsilon": 2.0})
    with pytest.raises(selector.SelectorParamsError, match="epsilom"):
        make_selector("epsilon-greedy", CLASSES, catalog, {"epsilom": 0.1})


@pytest.mark.parametrize("name", selector.SELECTORS)
def test_learns_the_better_arm(catalog, name):
    """Two arms, one meets the SLO 95 % of the time, the other 20 %: most late picks are the first."""
    sel = make_selector(name, [QueryClass("a", 200.0, 0.77, 1.0)], catalog, {"half_life_obs": None})
    good, bad = catalog.model_index["resnet50"], catalog.model_index["resnet200"]
    rng, env = np.random.default_rng(0), np.random.default_rng(1)
    picks = []
    for _ in range(1500):
        m = sel.select(0, 1, rng)
        met = env.random() < (0.95 if m[0] == good else 0.2)
        sel.observe(0, m, np.array([100.0]), np.array([met]), np.array([np.nan]), np.array([1e-6]))
        picks.append(m[0])
    assert np.mean(np.array(picks[-500:]) == good) > 0.85
    assert bad in picks  # it explored


def test_labels_one_at_a_time_drop_an_arm(catalog):
    """The n == 1 observe path updates feasibility like the batch path."""
    sel = make_selector("ucb1", [QueryClass("a", 200.0, 0.77, 1.0)], catalog)
    r50 = catalog.model_index["resnet50"]
    one = np.ones(1)
    for i in range(400):
        sel.observe(0, np.array([r50]), one * 50, one > 0, np.array([float(i % 2)]), one * 1e-6)
    assert sel.select(0, 1, np.random.default_rng(0)).tolist() == [catalog.model_index["resnet200"]]
    mean = sel.estimated_accuracy(0)
    assert mean[sel.arms(0).index("resnet50")] == pytest.approx((0.774 * 50 + 200) / 450)


def test_catalog_priors_steer_the_constrained_selector_before_any_outcome():
    """Priors on cost and P(SLO met) make an unobserved variant neither free nor a coin toss:
    with the VM-served variant priced low and likely on time, the first requests go there."""
    import numpy as np

    from controller.catalog import load_catalog
    from controller.core import QueryClass
    from selector import make_selector

    cat = load_catalog("configs/catalog")
    sel = make_selector("constrained", [QueryClass("a", 300, 0.70, 1.0)], cat)
    arms = [cat.model_index[m] for m in sel.arms(0)]
    warm = cat.model_index["resnet18"]
    cost = np.full(len(cat.models), 1e-5)
    cost[warm] = 1e-8
    p_met = np.full(len(cat.models), 0.05)
    p_met[warm] = 0.99
    sel.set_cost_prior(0, cost)
    sel.set_slo_prior(0, p_met)
    picks = sel.select(0, 1000, np.random.default_rng(0))
    assert (picks == warm).mean() > 0.95
    assert set(picks.tolist()) <= set(arms)
    # The priors travel with the state.
    from selector import SelectorState
    back = SelectorState.from_json(sel.state.to_json())
    assert np.allclose(back.classes[0].prior_slo_met, sel.state.classes[0].prior_slo_met)
    assert np.allclose(back.classes[0].prior_cost_usd, sel.state.classes[0].prior_cost_usd)
