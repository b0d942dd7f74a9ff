"""Each algorithm's selection and update arithmetic, hand-computed on small states."""
import math

import numpy as np
import pytest

from selector.params import parse_params
from selector.policies import Constrained, EpsilonGreedy, Exp3, Thompson, Ucb1
from selector.state import COST, MET, N, REWARD, ClassState


def state(n, r, met=None, cost=None):
    cs = ClassState("c", list(range(len(n))), [0.8] * len(n))
    cs.stats[N], cs.stats[REWARD] = n, r
    if met is not None:
        cs.stats[MET] = met
    if cost is not None:
        cs.stats[COST] = cost
    return cs


def test_epsilon_greedy_greedy_unplayed_first_and_explores():
    p0 = parse_params({"epsilon": 0.0})
    rng = np.random.default_rng(0)
    cs = state([4.0, 2.0, 0.0], [2.0, 1.8, 0.0])  # means 0.5, 0.9, unplayed
    assert EpsilonGreedy().choose_one(cs, None, rng, p0) == 2
    assert EpsilonGreedy().choose(cs, None, 3, rng, p0).tolist() == [2, 2, 2]
    cs.stats[N, 2], cs.stats[REWARD, 2] = 1.0, 0.1
    assert EpsilonGreedy().choose_one(cs, None, rng, p0) == 1
    assert set(EpsilonGreedy().choose(cs, None, 50, rng, p0).tolist()) == {1}
    # infeasible arms are never picked, greedy or not
    p1 = parse_params({"epsilon": 1.0})
    mask = np.array([True, False, True])
    picks = EpsilonGreedy().choose(cs, mask, 2000, rng, p1)
    assert set(picks.tolist()) == {0, 2}
    assert abs(np.mean(picks == 0) - 0.5) < 0.05
    assert EpsilonGreedy().choose_one(cs, mask, rng, p0) == 0  # mean 0.5 beats 0.1


def test_ucb1_index_by_hand():
    p = parse_params({"ucb_c": 1.0})
    cs = state([2.0, 1.0], [1.5, 0.3])
    # t = 2 + 1 + 1 (the pick being made): index = mean + sqrt(2 ln 4 / n)
    idx0 = 0.75 + math.sqrt(2 * math.log(4) / 2)  # 1.927
    idx1 = 0.30 + math.sqrt(2 * math.log(4) / 1)  # 1.965
    assert idx1 > idx0
    assert Ucb1().choose_one(cs, None, None, p) == 1
    cs.stats[REWARD, 1] = 0.2  # idx1 = 1.865 < idx0
    assert Ucb1().choose_one(cs, None, None, p) == 0
    assert Ucb1().choose_one(cs, np.array([False, True]), None, p) == 1


def test_ucb1_batch_fills_by_virtual_pulls():
    p = parse_params({"ucb_c": 1.0})
    cs = state([100.0, 100.0], [90.0, 50.0])  # means 0.9 and 0.5, t = 200 + n
    picks = Ucb1().choose(cs, None, 4, None, p)
    # ln(204) = 5.318; arm 0 after j virtual pulls: 0.9 + sqrt(10.636 / (100 + j)) = 1.226..1.222,
    # arm 1: 0.5 + 0.326 = 0.826: all four go to arm 0.
    assert picks.tolist() == [0, 0, 0, 0]
    cs = state([0.0, 1.0], [0.0, 1.0])  # unplayed arm 0 first, then indices compete
    picks = Ucb1().choose(cs, None, 3, None, p)
    # ln 4 = 1.386; arm 1: 1 + sqrt(2.773 / 1) = 2.665, then 1 + sqrt(2.773 / 2) = 2.177;
    # arm 0 after one virtual pull: 0 + sqrt(2.773 / 1) = 1.665
    assert picks.tolist() == [0, 1, 1]


def test_thompson_draws_from_the_posterior():
    p = parse_params({})
    cs = state([10.0, 4.0], [7.5, 1.0])
    # Beta(1 + R, 1 + N - R) = Beta(8.5, 3.5) and Beta(2, 4): the same draws by hand
    picks = Thompson().choose(cs, None, 100, np.random.default_rng(7), p)
    theta = np.random.default_rng(7).beta(np.array([8.5, 2.0]), np.array([3.5, 4.0]), size=(100, 2))
    assert picks.tolist() == np.argmax(theta, axis=1).tolist()
    # n == 1 path: small counts draw exact scalar Betas, arm by arm
    rng = np.random.default_rng(9)
    expect = np.argmax([rng.beta(8.5, 3.5), rng.beta(2.0, 4.0)])
    assert Thompson().choose_one(cs, None, np.random.default_rng(9), p) == expect
    # a near-certain posterior wins almost always; an infeasible arm never
    cs = state([1000.0, 1000.0], [900.0, 500.0])
    assert Thompson().choose_one(cs, None, np.random.default_rng(1), p) == 0
    assert set(Thompson().choose(cs, np.array([False, True]), 20, np.random.default_rng(1), p).tolist()) == {1}


def test_exp3_update_by_hand():
    p = parse_params({"exp3_gamma": 0.1, "exp3_max_log_ratio": 10.0})
    cs = state([0.0, 0.0], [0.0, 0.0])
    assert Exp3.probabilities(cs, None, p).tolist() == pytest.approx([0.5, 0.5])
    # reward 0.8 on arm 0 with p = 0.5: log w0 += 0.1 * (0.8 / 0.5) / 2 = 0.08 (then shifted so max = 0)
    Exp3().update(cs, np.array([0]), np.array([0.8]), None, p)
    assert cs.log_w.tolist() == pytest.approx([0.0, -0.08])
    w1 = math.exp(-0.08)
    p0 = 0.9 / (1 + w1) + 0.05
    assert Exp3.probabilities(cs, None, p).tolist() == pytest.approx([p0, 1 - p0])
    assert Exp3._probabilities_one(cs, None, p) == pytest.approx([p0, 1 - p0])
    # a batch: both rewards weighted with the same distribution
    before = cs.log_w.copy()
    Exp3().update(cs, np.array([1, 1]), np.array([1.0, 0.5]), None, p)
    inc = 0.1 / 2 * (1.5 / (1 - p0))
    expect = np.array([before[0], before[1] + inc])
    assert cs.log_w.tolist() == pytest.approx((expect - expect.max()).tolist())
    # the log-ratio cap keeps a losing arm within reach
    cs.log_w[:] = [0.0, -50.0]
    Exp3().update(cs, np.array([0]), np.array([0.0]), None, p)
    assert cs.log_w.tolist() == pytest.approx([0.0, -10.0])


def test_exp3_sampling_follows_probabilities():
    p = parse_params({"exp3_gamma": 0.2})
    cs = state([0.0] * 3, [0.0] * 3)
    cs.log_w[:] = [0.0, math.log(0.5), -100.0]
    prob = Exp3.probabilities(cs, None, p)
    picks = Exp3().choose(cs, None, 20000, np.random.default_rng(0), p)
    np.testing.assert_allclose(np.bincount(picks, minlength=3) / 20000, prob, atol=0.015)
    rng = np.random.default_rng(1)
    one = [Exp3().choose_one(cs, None, rng, p) for _ in range(5000)]
    np.testing.assert_allclose(np.bincount(one, minlength=3) / 5000, prob, atol=0.025)


def test_constrained_cheapest_arm_likely_to_meet_slo():
    p = parse_params({"slo_target": 0.95})
    # arm 0 cheap but meets the SLO 10 % of the time; arm 1 dearer, always meets; arm 2 dearest
    cs = state([1000.0, 1000.0, 1000.0], [0.0] * 3, met=[100.0, 1000.0, 1000.0],
               cost=[1e-3, 5e-3, 9e-3])
    rng = np.random.default_rng(0)
    assert set(Constrained().choose(cs, None, 200, rng, p).tolist()) == {1}
    assert {Constrained().choose_one(cs, None, rng, p) for _ in range(50)} == {1}
    cs.stats[MET, 0] = 1000.0  # now the cheap arm meets it too
    assert set(Constrained().choose(cs, None, 200, rng, p).tolist()) == {0}
    assert Constrained().choose_one(cs, None, rng, p) == 0
    # none qualifies: the likeliest to meet the SLO
    cs.stats[MET] = [100.0, 500.0, 300.0]
    assert set(Constrained().choose(cs, None, 100, rng, p).tolist()) == {1}
    assert Constrained().choose_one(cs, None, rng, p) == 1


def test_constrained_explores_unobserved_arms():
    p = parse_params({"slo_target": 0.95})
    cs = state([1000.0, 0.0], [0.0, 0.0], met=[1000.0, 0.0], cost=[1e-3, 0.0])
    # arm 1 unobserved: counted free, so it wins whenever its Beta(1, 1) draw passes 0.95 (~5 %)
    picks = Constrained().choose(cs, None, 20000, np.random.default_rng(0), p)
    assert 0.04 < np.mean(picks == 1) < 0.06
