"""Reward scalarisation and discounted accumulation, against hand-computed numbers."""
import math

import numpy as np
import pytest

from selector.feedback import accumulate, accumulate_one, scalar_reward, scalarised_reward
from selector.params import parse_params
from selector.state import COST, LAT, LAT2, MET, N, REWARD, ClassState

P = parse_params({"cost_weight": 0.05, "cost_ref_usd": 1e-4})


def test_reward_worked_examples():
    # SLO met, label correct, 2e-5 USD: raw = 1 - 0.05 * 0.2 = 0.99; r = 1.04 / 1.05
    r = scalarised_reward(np.array([1.0]), np.array([1.0]), np.array([2e-5]), P)
    assert r[0] == pytest.approx(1.04 / 1.05)
    # SLO missed, no label, free: raw = 0; r = 0.05 / 1.05
    r = scalarised_reward(np.array([0.0]), np.array([np.nan]), np.array([0.0]), P)
    assert r[0] == pytest.approx(0.05 / 1.05)
    # SLO met, label wrong, cost above the reference (saturates): raw = -0.05; r = 0
    r = scalarised_reward(np.array([1.0]), np.array([0.0]), np.array([1.0]), P)
    assert r[0] == pytest.approx(0.0)
    # the scalar path agrees
    assert scalar_reward(1.0, 1.0, 2e-5, P) == pytest.approx(1.04 / 1.05)
    assert scalar_reward(0.0, math.nan, 0.0, P) == pytest.approx(0.05 / 1.05)


def test_accumulate_discounts_then_adds():
    cs = ClassState("c", [3, 5], [0.7, 0.8])
    d = 0.5
    # batch of two on arm 0 and arm 1, then one on arm 0
    accumulate(cs, np.array([0, 1]), np.array([100.0, 200.0]), np.array([True, False]),
               np.array([1.0, np.nan]), np.array([1e-6, 2e-6]), np.array([0.9, 0.1]), d)
    accumulate_one(cs, 0, 50.0, 1.0, 0.0, 3e-6, 0.5, d)
    # arm 0: first obs weight 0.5 after the later one; arm 1 likewise
    assert cs.stats[N].tolist() == pytest.approx([0.5 + 1.0, 0.5])
    assert cs.stats[REWARD].tolist() == pytest.approx([0.45 + 0.5, 0.05])
    assert cs.stats[MET].tolist() == pytest.approx([0.5 + 1.0, 0.0])
    assert cs.stats[LAT].tolist() == pytest.approx([50.0 + 50.0, 100.0])
    assert cs.stats[LAT2].tolist() == pytest.approx([5000.0 + 2500.0, 20000.0])
    assert cs.stats[COST].tolist() == pytest.approx([0.5e-6 + 3e-6, 1e-6])
    # labels are not discounted: arm 0 labelled twice (one right, one wrong), arm 1 never
    assert cs.labels.tolist() == [[2.0, 0.0], [1.0, 0.0]]


def test_batch_equals_one_by_one_without_discount():
    rng = np.random.default_rng(3)
    m = 50
    pos = rng.integers(0, 3, m)
    lat, met = rng.uniform(10, 300, m), rng.random(m) < 0.8
    correct = np.where(rng.random(m) < 0.5, np.nan, (rng.random(m) < 0.7).astype(float))
    cost = rng.uniform(0, 1e-5, m)
    reward = scalarised_reward(met, correct, cost, P)
    a, b = ClassState("c", [0, 1, 2], [0.7] * 3), ClassState("c", [0, 1, 2], [0.7] * 3)
    accumulate(a, pos, lat, met, correct, cost, reward, 1.0)
    for i in range(m):
        accumulate_one(b, int(pos[i]), lat[i], float(met[i]), correct[i], cost[i], reward[i], 1.0)
    np.testing.assert_allclose(a.stats, b.stats)
    np.testing.assert_allclose(a.labels, b.labels)
