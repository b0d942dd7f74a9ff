"""Turning request outcomes into the selector's statistics: the reward scalarisation and the
discounted accumulation shared by every algorithm.

Reward of one request for the plain bandits (epsilon-greedy, UCB1, Thompson, Exp3):

    hit  = correct            when a label came back (1.0 right, 0.0 wrong)
         = 1                  when not (the arm already meets the class's accuracy floor)
    raw  = slo_met * hit - w * min(cost_usd / cost_ref_usd, 1)          in [-w, 1]
    r    = (raw + w) / (1 + w)                                           in [0, 1]

Worked example (w = 0.05, ref = 1e-4 USD): SLO met, label correct, 2e-5 USD ->
raw = 1 - 0.05 * 0.2 = 0.99, r = 1.04 / 1.05 = 0.990476. SLO missed, no label, 0 USD -> r = 0.047619.
The map to [0, 1] is affine, so it changes no ranking; Thompson's Beta update and Exp3's
importance weights need rewards in [0, 1].

Discounting: at each observation every stored sum of the class is multiplied by
`d = 0.5 ** (1 / half_life_obs)`; a batch of m observations multiplies by d ** m once, then adds
the batch (observations inside one batch weigh the same).
"""
from __future__ import annotations

import numpy as np

from selector.params import SelectorParams
from selector.state import NUM_STATS, ClassState


def scalarised_reward(slo_met: np.ndarray, correct: np.ndarray, cost_usd: np.ndarray,
                      params: SelectorParams) -> np.ndarray:
    """Reward in [0, 1] per request; see the module docstring."""
    w = params.cost_weight
    hit = np.where(np.isnan(correct), 1.0, correct)
    raw = slo_met * hit - w * np.minimum(cost_usd / params.cost_ref_usd, 1.0)
    return (raw + w) / (1.0 + w)


def scalar_reward(slo_met: float, correct: float, cost_usd: float, params: SelectorParams) -> float:
    """`scalarised_reward` for one request in plain floats (the router's hot path)."""
    w = params.cost_weight
    hit = 1.0 if correct != correct else correct  # NaN: no label
    raw = slo_met * hit - w * min(cost_usd / params.cost_ref_usd, 1.0)
    return (raw + w) / (1.0 + w)


def accumulate_one(cs: ClassState, k: int, latency_ms: float, slo_met: float, correct: float,
                   cost_usd: float, reward: float, discount: float) -> None:
    """`accumulate` for one request on arm position k, in plain floats."""
    st = cs.stats
    if discount < 1.0:
        st *= discount
    st[:, k] += (1.0, reward, slo_met, latency_ms, latency_ms * latency_ms, cost_usd)
    if correct == correct:  # not NaN
        cs.labels[0, k] += 1.0
        cs.labels[1, k] += correct


def accumulate(cs: ClassState, pos: np.ndarray, latency_ms: np.ndarray, slo_met: np.ndarray,
               correct: np.ndarray, cost_usd: np.ndarray, reward: np.ndarray, discount: float) -> None:
    """Add a batch of outcomes (arm positions `pos`) to the class's statistics, in place."""
    m = len(pos)
    if m == 0:
        return
    if discount < 1.0:
        cs.stats *= discount ** m
    k_arms = cs.num_arms
    lat = latency_ms.astype(float)
    rows = np.stack([np.ones(m), reward, slo_met.astype(float), lat, lat * lat, cost_usd.astype(float)])
    # One bincount over (stat row, arm) pairs instead of one per statistic.
    flat = (np.arange(NUM_STATS)[:, None] * k_arms + pos[None, :]).ravel()
    cs.stats += np.bincount(flat, weights=rows.ravel(), minlength=NUM_STATS * k_arms).reshape(NUM_STATS, k_arms)
    known = ~np.isnan(correct)
    if known.any():
        cs.labels[0] += np.bincount(pos[known], minlength=k_arms)
        cs.labels[1] += np.bincount(pos[known], weights=correct[known].astype(float), minlength=k_arms)
