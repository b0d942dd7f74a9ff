"""The selector's learned state: per query class, per arm (model variant) sufficient statistics.

Kept apart from the policy (as Clipper separates `SelectionState` from `SelectionPolicy`): the
state is plain arrays, serializable to a dict / JSON, and states of several router replicas can
be merged (`merge`). Priors are *not* folded into the stored counts; they are applied when an
estimate is read, so summing the counts of replicas never counts a prior twice.

Per class, `stats` is a [NUM_STATS, K] array of discounted sums over observations
(each observation's weight is multiplied by `discount` at every later observation):

    N       weight of observations          REWARD  sum of the scalarised reward in [0, 1]
    MET     sum of slo_met (0/1)            LAT     sum of latency_ms     LAT2  sum of latency_ms**2
    COST    sum of cost_usd

`labels` is a [2, K] array of *undiscounted* label counts (labelled, correct): a model's
accuracy does not drift with load. `log_w` holds Exp3's log-weights.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

N, REWARD, MET, LAT, LAT2, COST = range(6)
NUM_STATS = 6
STATE_VERSION = 1
COST_PRIOR_COUNT = 5.0
SLO_PRIOR_COUNT = 10.0


@dataclass
class ClassState:
    name: str
    arm_models: np.ndarray  # [K] catalog model indices
    prior_accuracy: np.ndarray  # [K] catalog top-1 accuracy (fraction)
    stats: np.ndarray = None  # [NUM_STATS, K] discounted sums, see module docstring
    labels: np.ndarray = None  # [2, K] (number labelled, number correct)
    log_w: np.ndarray = None  # [K] Exp3 log-weights
    prior_cost_usd: np.ndarray = None  # [K] expected $ per request before any is observed
    prior_slo_met: np.ndarray = None  # [K] expected P(SLO met) before any is observed (NaN: none)

    def __post_init__(self):
        k = len(self.arm_models)
        self.arm_models = np.asarray(self.arm_models, dtype=np.int64)
        self.prior_accuracy = np.asarray(self.prior_accuracy, dtype=float)
        self.prior_cost_usd = (np.zeros(k) if self.prior_cost_usd is None
                               else np.asarray(self.prior_cost_usd, dtype=float))
        self.prior_slo_met = (np.full(k, np.nan) if self.prior_slo_met is None
                              else np.asarray(self.prior_slo_met, dtype=float))
        self.stats = np.zeros((NUM_STATS, k)) if self.stats is None else np.asarray(self.stats, dtype=float)
        self.labels = np.zeros((2, k)) if self.labels is None else np.asarray(self.labels, dtype=float)
        self.log_w = np.zeros(k) if self.log_w is None else np.asarray(self.log_w, dtype=float)
        if self.stats.shape != (NUM_STATS, k) or self.labels.shape != (2, k) or self.log_w.shape != (k,):
            raise ValueError(f"class {self.name!r}: state arrays do not match its {k} arms")

    @property
    def num_arms(self) -> int:
        return len(self.arm_models)

    # --- estimates (priors applied here, never stored) ----------------------------------------
    def accuracy_posterior(self, prior_count: float) -> tuple[np.ndarray, np.ndarray]:
        """Beta(acc0 * k + correct, (1 - acc0) * k + wrong): posterior mean and sd per arm."""
        a = self.prior_accuracy * prior_count + self.labels[1]
        b = (1.0 - self.prior_accuracy) * prior_count + (self.labels[0] - self.labels[1])
        mean = a / (a + b)
        sd = np.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
        return mean, sd

    def mean_reward(self) -> np.ndarray:
        """Discounted mean reward per arm; 0 for arms never observed."""
        n = self.stats[N]
        return np.divide(self.stats[REWARD], n, out=np.zeros_like(n), where=n > 0)

    def mean_latency_ms(self) -> np.ndarray:
        n = self.stats[N]
        return np.divide(self.stats[LAT], n, out=np.full_like(n, np.nan), where=n > 0)

    def slo_beta(self, prior_met: float, prior_missed: float) -> tuple[np.ndarray, np.ndarray]:
        """Beta parameters of P(SLO met) per arm: the flat prior (params), plus SLO_PRIOR_COUNT
        pseudo-observations at `prior_slo_met` where one was given, plus what was observed."""
        known = ~np.isnan(self.prior_slo_met)
        p0 = np.where(known, self.prior_slo_met, 0.0)
        met = self.stats[MET]
        a = prior_met + SLO_PRIOR_COUNT * p0 * known + met
        b = prior_missed + SLO_PRIOR_COUNT * (1.0 - p0) * known + self.stats[N] - met
        return a, b

    def mean_cost_usd(self) -> np.ndarray:
        """Observed cost per request, pulled towards `prior_cost_usd` by COST_PRIOR_COUNT
        pseudo-observations (an unobserved arm is not free: it costs what the catalog says)."""
        n = self.stats[N] + COST_PRIOR_COUNT
        return (self.stats[COST] + COST_PRIOR_COUNT * self.prior_cost_usd) / n

    def summary(self, prior_count: float) -> dict:
        """Human-readable estimates per arm (for logs and the CLI)."""
        acc, _ = self.accuracy_posterior(prior_count)
        n = self.stats[N]
        var = np.divide(self.stats[LAT2], n, out=np.zeros_like(n), where=n > 0) - np.nan_to_num(self.mean_latency_ms()) ** 2
        return {"arms": self.arm_models.tolist(), "weight": n.round(3).tolist(),
                "accuracy": acc.round(4).tolist(), "mean_reward": self.mean_reward().round(4).tolist(),
                "slo_met": np.divide(self.stats[MET], n, out=np.full_like(n, np.nan), where=n > 0).round(4).tolist(),
                "latency_ms_mean": self.mean_latency_ms().round(2).tolist(),
                "latency_ms_sd": np.sqrt(np.clip(var, 0, None)).round(2).tolist(),
                "cost_usd_mean": self.mean_cost_usd().tolist()}

    # --- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": self.name, "arm_models": self.arm_models.tolist(),
                "prior_accuracy": self.prior_accuracy.tolist(), "stats": self.stats.tolist(),
                "labels": self.labels.tolist(), "log_w": self.log_w.tolist(),
                "prior_cost_usd": self.prior_cost_usd.tolist(),
                "prior_slo_met": [None if np.isnan(x) else x for x in self.prior_slo_met.tolist()]}

    @classmethod
    def from_dict(cls, d: dict) -> "ClassState":
        slo = d.get("prior_slo_met")
        return cls(d["name"], d["arm_models"], d["prior_accuracy"], d["stats"], d["labels"], d["log_w"],
                   d.get("prior_cost_usd"), None if slo is None else [np.nan if x is None else x for x in slo])

    def copy(self) -> "ClassState":
        return ClassState(self.name, self.arm_models.copy(), self.prior_accuracy.copy(),
                          self.stats.copy(), self.labels.copy(), self.log_w.copy(), self.prior_cost_usd.copy(),
                          self.prior_slo_met.copy())

    def same_arms(self, other: "ClassState") -> bool:
        return self.name == other.name and np.array_equal(self.arm_models, other.arm_models)


@dataclass
class SelectorState:
    """Everything a selector has learned; the policy object holds none of it."""

    algorithm: str
    classes: list[ClassState] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"version": STATE_VERSION, "algorithm": self.algorithm,
                "classes": [c.to_dict() for c in self.classes]}

    @classmethod
    def from_dict(cls, d: dict) -> "SelectorState":
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"selector state version {d.get('version')!r} is not {STATE_VERSION}")
        return cls(d["algorithm"], [ClassState.from_dict(c) for c in d["classes"]])

    def to_json(self) -> str:
        # repr of a float round-trips exactly, so JSON loses nothing.
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "SelectorState":
        return cls.from_dict(json.loads(text))

    def copy(self) -> "SelectorState":
        return SelectorState(self.algorithm, [c.copy() for c in self.classes])


def _check_compatible(states: Sequence[SelectorState]) -> None:
    first = states[0]
    for s in states[1:]:
        if s.algorithm != first.algorithm or len(s.classes) != len(first.classes) or not all(
                a.same_arms(b) for a, b in zip(s.classes, first.classes)):
            raise ValueError("cannot merge selector states with different algorithms, classes or arms")


def merge(states: Sequence[SelectorState], base: SelectorState | None = None) -> SelectorState:
    """Combine the statistics of several router replicas.

    Without `base` the replicas' observations are taken as disjoint and their sums are added.
    With `base` (the snapshot every replica started from) each replica contributes what it
    learned since: merged = base + sum(s - base). Label counts and Exp3 log-weight increments
    add exactly; discounted sums add approximately (each replica discounted on its own clock),
    clipped at zero.
    """
    if not states:
        raise ValueError("merge needs at least one state")
    _check_compatible(list(states) + ([base] if base is not None else []))
    out = (base or SelectorState(states[0].algorithm, [
        ClassState(c.name, c.arm_models.copy(), c.prior_accuracy.copy()) for c in states[0].classes])).copy()
    for ci, merged in enumerate(out.classes):
        origin = merged.copy()
        for s in states:
            c = s.classes[ci]
            merged.stats += c.stats - origin.stats
            merged.labels += c.labels - origin.labels
            merged.log_w += c.log_w - origin.log_w
        np.clip(merged.stats, 0.0, None, out=merged.stats)
        np.clip(merged.labels, 0.0, None, out=merged.labels)
        if merged.num_arms:
            merged.log_w -= merged.log_w.max()  # Exp3 needs only differences; keep them small
    return out
