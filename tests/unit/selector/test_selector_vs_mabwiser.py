"""Our bandits against MABWiser's on the same Bernoulli outcomes (skipped without mabwiser).

MABWiser is a test/bench-only dependency. Rewards are 0/1 (cost weight 0, no labels), so both
libraries see exactly the same reward. Short form (default): UCB1 and Thompson, 1,000 requests,
3 seeds. epsilon-greedy's regret varies a lot from seed to seed (an early greedy lock-in), so
its comparison needs 12 seeds and is marked slow.
"""
import numpy as np
import pytest

from controller.core import QueryClass
from selector import make_selector

mabwiser_mab = pytest.importorskip("mabwiser.mab")

P_SLO = {"inception": 0.9, "mobilenet": 0.8, "resnet200": 0.6, "resnet50": 0.75}
STEPS = 1000


def run_ours(name, catalog, met, seed):
    sel = make_selector(name, [QueryClass("a", 200.0, 0.725, 1.0)], catalog,
                        {"cost_weight": 0.0, "half_life_obs": None})
    arms = sel.arms(0)
    pos = {catalog.model_index[a]: k for k, a in enumerate(arms)}
    rng, chosen = np.random.default_rng(seed), []
    for t in range(STEPS):
        m = sel.select(0, 1, rng)
        k = pos[int(m[0])]
        sel.observe(0, m, np.array([100.0]), met[t, k:k + 1], np.array([np.nan]), np.array([0.0]))
        chosen.append(k)
    return np.array(chosen)


def run_mabwiser(policy, met, seed):
    k_arms = met.shape[1]
    mab = mabwiser_mab.MAB(list(range(k_arms)), policy, seed=seed)
    mab.fit(list(range(k_arms)), [int(met[0, k]) for k in range(k_arms)])
    chosen = list(range(k_arms))
    for t in range(k_arms, STEPS):
        k = int(mab.predict())
        mab.partial_fit([k], [int(met[t, k])])
        chosen.append(k)
    return np.array(chosen)


def compare(catalog, name, policy, seeds):
    arms = [m.name for m in catalog.models if m.top1_accuracy >= 0.725]
    assert arms == sorted(P_SLO)
    p = np.array([P_SLO[a] for a in arms])
    ours, theirs = [], []
    for seed in range(seeds):
        met = np.random.default_rng(100 + seed).random((STEPS, len(p))) < p  # common outcomes
        ours.append(np.sum(p.max() - p[run_ours(name, catalog, met, seed)]))
        theirs.append(np.sum(p.max() - p[run_mabwiser(policy(mabwiser_mab.LearningPolicy), met, seed)]))
    # no worse, up to the noise of a few seeds (regrets here are ~10-60)
    assert np.mean(ours) <= 1.15 * np.mean(theirs) + 10.0, (ours, theirs)


@pytest.mark.parametrize("name,policy", [
    ("thompson", lambda lp: lp.ThompsonSampling()),
    ("ucb1", lambda lp: lp.UCB1(alpha=1.0)),
])
def test_regret_no_worse_than_mabwiser(catalog, name, policy):
    compare(catalog, name, policy, seeds=3)


@pytest.mark.slow
def test_epsilon_greedy_regret_no_worse_than_mabwiser(catalog):
    compare(catalog, "epsilon-greedy", lambda lp: lp.EpsilonGreedy(epsilon=0.1), seeds=12)
