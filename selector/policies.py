"""The selection policies: stateless objects that read a `ClassState` and pick arms.

Each policy has `choose(cs, feasible, n, rng, p) -> positions` (arm positions, length n) and
`update(cs, pos, reward, feasible, p)` for learning beyond the shared statistics (only Exp3 has
any). `feasible` is a bool mask over arms (accuracy floor still plausible) or None when every
arm is feasible (the common case, kept cheap for the hot path). Batches: one call picks n
requests at once, as a batched bandit does, with per-request randomness where the algorithm
has any. Update rules (s = stats of the class; all sums discounted, see selector/feedback.py):

- epsilon-greedy: mean_k = REWARD_k / N_k; greedy = argmax mean (an arm never observed first);
  each request takes a uniform feasible arm with probability epsilon.
- UCB1: index_k = mean_k + c * sqrt(2 ln T / N_k), T = sum_k N_k (+ the batch). A batch of n is
  filled greedily as if each pick were one more pull with an unchanged mean: the n largest of
  index_k(j) = mean_k + c * sqrt(2 ln(T + n) / (N_k + j)), j = 0, 1, ...
- Thompson: theta_k ~ Beta(1 + REWARD_k, 1 + N_k - REWARD_k) per request (fractional Bernoulli
  update of rewards in [0, 1]); pick argmax theta.
- Exp3: p_k = (1 - g) * w_k / sum w + g / K; after reward r on arm k: log w_k += g * (r / p_k) / K.
  Log-weights are kept within `exp3_max_log_ratio` of the largest (tracks drift, as Exp3.S).
- constrained: q_k ~ Beta(a0 + MET_k, b0 + N_k - MET_k) per request (P(SLO met)); among arms with
  q_k >= slo_target pick the lowest mean cost (observed, pulled towards the arm's prior cost; with no prior an unobserved arm counts as free, so
  they are tried; equal costs go to the lower arm position); when no arm qualifies, pick the
  largest q_k. Sampling q is the exploration: an arm
  with few observations sometimes draws above the target.

The n == 1 path (`choose_one`, the live router) runs the same rules in plain Python floats over
the K <= ~10 arms: numpy's per-call overhead (~1-5 us, and ~30 us for `Generator.beta` with
array parameters) would dominate. There a Beta(a, b) draw with min(a, b) >= 30 uses its normal
approximation (same mean and variance; Gaussian Thompson sampling, Agrawal & Goyal 2013),
below that an exact scalar Beta draw.
"""
from __future__ import annotations

import math

import numpy as np

from selector.params import SelectorParams
from selector.state import COST, COST_PRIOR_COUNT, MET, N, REWARD, SLO_PRIOR_COUNT, ClassState

BETA_NORMAL_MIN = 30.0  # n == 1 path: Beta(a, b) drawn as a normal when min(a, b) >= this


def _unplayed(cs: ClassState, feasible: np.ndarray | None) -> np.ndarray:
    unplayed = cs.stats[N] == 0.0
    return np.flatnonzero(unplayed if feasible is None else unplayed & feasible)


def _uniform_feasible(feasible: np.ndarray | None, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if feasible is None:
        return rng.integers(0, k, size=n)
    idx = np.flatnonzero(feasible)
    return idx[rng.integers(0, len(idx), size=n)]


# --- n == 1 helpers (plain Python) -------------------------------------------------------------
def _allowed(feasible: np.ndarray | None, k: int) -> list[int]:
    return list(range(k)) if feasible is None else np.flatnonzero(feasible).tolist()


def _beta_scalar(a: float, b: float, rng: np.random.Generator) -> float:
    """One Beta(a, b) draw; its normal approximation for large counts (see docstring)."""
    if a >= BETA_NORMAL_MIN and b >= BETA_NORMAL_MIN:
        s = a + b
        return a / s + rng.standard_normal() * math.sqrt(a * b / (s * s * (s + 1.0)))
    return rng.beta(a, b)


def _beta_one(a: list[float], b: list[float], rng: np.random.Generator) -> list[float]:
    """One Beta(a_k, b_k) draw per arm."""
    return [_beta_scalar(ak, bk, rng) for ak, bk in zip(a, b)]


def _argmax(values: list[float], allowed: list[int]) -> int:
    best = allowed[0]
    for k in allowed:
        if values[k] > values[best]:
            best = k
    return best


class EpsilonGreedy:
    name = "epsilon-greedy"

    def choose_one(self, cs, feasible, rng, p: SelectorParams) -> int:
        allowed = _allowed(feasible, cs.num_arms)
        if rng.random() < p.epsilon:
            return allowed[int(rng.random() * len(allowed))]
        n, r = cs.stats[N].tolist(), cs.stats[REWARD].tolist()
        for k in allowed:
            if n[k] == 0.0:
                return k  # an arm never observed first
        return _argmax([rk / nk if nk > 0 else 0.0 for rk, nk in zip(r, n)], allowed)

    def choose(self, cs, feasible, n, rng, p: SelectorParams):
        unplayed = _unplayed(cs, feasible)
        if unplayed.size:
            greedy = np.resize(unplayed, n)  # round-robin over arms never observed
        else:
            mean = cs.mean_reward()
            if feasible is not None:
                mean = np.where(feasible, mean, -np.inf)
            greedy = np.full(n, int(np.argmax(mean)))
        explore = rng.random(n) < p.epsilon
        if not explore.any():
            return greedy
        return np.where(explore, _uniform_feasible(feasible, cs.num_arms, n, rng), greedy)

    def update(self, cs, pos, reward, feasible, p):
        pass


class Ucb1:
    name = "ucb1"

    def choose_one(self, cs, feasible, rng, p: SelectorParams) -> int:
        allowed = _allowed(feasible, cs.num_arms)
        n, r = cs.stats[N].tolist(), cs.stats[REWARD].tolist()
        two_c2_log_t = 2.0 * p.ucb_c * p.ucb_c * math.log(max(sum(n) + 1.0, 1.0))
        index = []
        for rk, nk in zip(r, n):
            index.append(rk / nk + math.sqrt(two_c2_log_t / nk) if nk > 0 else math.inf)
        return _argmax(index, allowed)

    def choose(self, cs, feasible, n, rng, p: SelectorParams):
        counts = cs.stats[N]
        mean = cs.mean_reward()
        log_t = math.log(max(float(counts.sum()) + n, 1.0))
        # index of arm k after j more (virtual) pulls, j = 0..n-1: [K, n]
        pulls = counts[:, None] + np.arange(n)[None, :]
        with np.errstate(divide="ignore"):
            index = mean[:, None] + p.ucb_c * np.sqrt(2.0 * log_t / pulls)  # 1/0 -> inf: unplayed first
        if feasible is not None:
            index[~feasible] = -np.inf
        top = np.argsort(-index.ravel(), kind="stable")[:n]  # stable: ties go to the lower arm
        return top // n  # row of each pick = arm position, in decreasing index order

    def update(self, cs, pos, reward, feasible, p):
        pass


class Thompson:
    name = "thompson"

    def choose_one(self, cs, feasible, rng, p: SelectorParams) -> int:
        n, r = cs.stats[N].tolist(), cs.stats[REWARD].tolist()
        theta = _beta_one([1.0 + rk for rk in r], [1.0 + nk - rk for rk, nk in zip(r, n)], rng)
        return _argmax(theta, _allowed(feasible, cs.num_arms))

    def choose(self, cs, feasible, n, rng, p: SelectorParams):
        a = 1.0 + cs.stats[REWARD]
        b = 1.0 + cs.stats[N] - cs.stats[REWARD]
        theta = rng.beta(a, b, size=(n, cs.num_arms))
        if feasible is not None:
            theta[:, ~feasible] = -1.0
        return np.argmax(theta, axis=1)

    def update(self, cs, pos, reward, feasible, p):
        pass


class Exp3:
    name = "exp3"

    @staticmethod
    def probabilities(cs: ClassState, feasible, p: SelectorParams) -> np.ndarray:
        w = np.exp(cs.log_w - cs.log_w.max())
        if feasible is not None:
            w = np.where(feasible, w, 0.0)
            uniform = np.where(feasible, 1.0 / int(feasible.sum()), 0.0)
        else:
            uniform = 1.0 / cs.num_arms
        return (1.0 - p.exp3_gamma) * w / w.sum() + p.exp3_gamma * uniform

    @staticmethod
    def _probabilities_one(cs, feasible, p: SelectorParams) -> list[float]:
        lw = cs.log_w.tolist()
        top = max(lw)
        if feasible is None:
            w = [math.exp(x - top) for x in lw]
            scale, u = (1.0 - p.exp3_gamma) / sum(w), p.exp3_gamma / len(w)
            return [wk * scale + u for wk in w]
        ok = feasible.tolist()
        w = [math.exp(x - top) if okk else 0.0 for x, okk in zip(lw, ok)]
        scale, u = (1.0 - p.exp3_gamma) / sum(w), p.exp3_gamma / sum(ok)
        return [wk * scale + u if okk else 0.0 for wk, okk in zip(w, ok)]

    def choose_one(self, cs, feasible, rng, p: SelectorParams) -> int:
        prob = self._probabilities_one(cs, feasible, p)
        x = rng.random() * sum(prob)
        acc = 0.0
        for k, pk in enumerate(prob):
            acc += pk
            if x < acc and pk > 0.0:
                return k
        return max(k for k, pk in enumerate(prob) if pk > 0.0)  # x at the very top (rounding)

    def choose(self, cs, feasible, n, rng, p: SelectorParams):
        cdf = np.cumsum(self.probabilities(cs, feasible, p))
        pos = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
        return np.minimum(pos, cs.num_arms - 1)

    def update(self, cs, pos, reward, feasible, p: SelectorParams):
        # Importance weight with the distribution the picks were drawn from (unchanged since the
        # last choose unless other feedback arrived in between: then it is an approximation).
        k_feasible = cs.num_arms if feasible is None else int(feasible.sum())
        cap = p.exp3_max_log_ratio
        if len(pos) == 1:
            k = int(pos[0])
            prob_k = self._probabilities_one(cs, feasible, p)[k]
            lw = cs.log_w.tolist()
            lw[k] += p.exp3_gamma * float(reward[0]) / prob_k / k_feasible
            top = max(lw)
            cs.log_w[:] = [max(x, top - cap) - top for x in lw]
            return
        prob = self.probabilities(cs, feasible, p)
        cs.log_w += p.exp3_gamma / k_feasible * np.bincount(pos, weights=reward / prob[pos], minlength=cs.num_arms)
        top = cs.log_w.max()
        np.maximum(cs.log_w, top - cap, out=cs.log_w)
        cs.log_w -= top


class Constrained:
    name = "constrained"

    def choose_one(self, cs, feasible, rng, p: SelectorParams) -> int:
        # Plain floats (numpy's per-call cost dominates at 6 arms): the same Beta parameters as
        # ClassState.slo_beta and the same mean cost as ClassState.mean_cost_usd.
        n, met, cost = cs.stats[N].tolist(), cs.stats[MET].tolist(), cs.stats[COST].tolist()
        p_met, p_cost = cs.prior_slo_met.tolist(), cs.prior_cost_usd.tolist()
        c0, s0 = COST_PRIOR_COUNT, SLO_PRIOR_COUNT
        mean_cost = [(ck + c0 * pc) / (nk + c0) for ck, pc, nk in zip(cost, p_cost, n)]
        # Arms in order of cost (stable: equal costs by position); the first whose sampled
        # P(SLO met) reaches the target wins, so usually a single Beta draw is needed.
        q: dict[int, float] = {}
        for k in sorted(_allowed(feasible, cs.num_arms), key=mean_cost.__getitem__):
            pk = p_met[k]
            prior = 0.0 if pk != pk else pk  # NaN: no prior for this arm
            known = 0.0 if pk != pk else s0
            a = p.slo_prior_met + known * prior + met[k]
            b = p.slo_prior_missed + known * (1.0 - prior) + n[k] - met[k]
            q[k] = _beta_scalar(a, b, rng)
            if q[k] >= p.slo_target:
                return k
        return max(q, key=q.__getitem__)  # none qualifies: the likeliest to meet the SLO

    def choose(self, cs, feasible, n, rng, p: SelectorParams):
        a, b = cs.slo_beta(p.slo_prior_met, p.slo_prior_missed)
        q = rng.beta(a, b, size=(n, cs.num_arms))  # sampled P(SLO met) per request and arm
        if feasible is not None:
            q[:, ~feasible] = -1.0
        # Cheapest qualifying arm (argmin: equal costs go to the lower position, as on the n == 1 path).
        cost = np.where(q >= p.slo_target, cs.mean_cost_usd()[None, :], np.inf)
        cheapest = np.argmin(cost, axis=1)
        none = np.isinf(cost[np.arange(n), cheapest])
        if none.any():
            cheapest = np.where(none, np.argmax(q, axis=1), cheapest)
        return cheapest

    def update(self, cs, pos, reward, feasible, p):
        pass


POLICIES = {cls.name: cls for cls in (EpsilonGreedy, Ucb1, Thompson, Exp3, Constrained)}
