"""Tunable parameters of the model selector, validated once at the edge (pydantic).

`make_selector(..., params={...})` takes a plain dict; unknown keys and out-of-range values are
rejected here with the offending value quoted, so a typo in a config never silently falls back
to a default.
"""
from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class SelectorParamsError(ValueError):
    """A selector parameter is unknown or out of range (one line for the operator)."""


class SelectorParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- shared statistics -------------------------------------------------------------------
    half_life_obs: float | None = Field(
        10_000.0, gt=0,
        description="Discount on latency / SLO / reward / cost statistics: an observation's weight "
                    "halves after this many later observations of the same class. None: no discount "
                    "(stationary world). Latency moves with load and cold starts, hence the default.")
    accuracy_prior_count: float = Field(
        50.0, gt=0,
        description="Pseudo-count of the Beta prior on a model's accuracy built from the catalog's "
                    "top-1 figure: Beta(acc * k, (1 - acc) * k).")
    accuracy_z: float = Field(
        2.0, ge=0,
        description="An arm is dropped from a class only once labels show its accuracy below the "
                    "floor with confidence: posterior mean + z * posterior sd < floor.")
    # --- reward scalarisation for the plain bandits (see selector/feedback.py) ------------------
    cost_weight: float = Field(
        0.05, ge=0, le=1,
        description="Weight of the cost term in the reward: r = slo_met * hit - w * min(cost / ref, 1).")
    cost_ref_usd: float = Field(
        1e-4, gt=0, description="Cost per request that counts as 'expensive' (cost term saturates).")
    # --- algorithms --------------------------------------------------------------------------
    epsilon: float = Field(0.1, ge=0, le=1, description="epsilon-greedy: share of random picks.")
    ucb_c: float = Field(
        1.0, ge=0, description="UCB1: bonus scale; index = mean + c * sqrt(2 ln t / n_k).")
    exp3_gamma: float = Field(
        0.05, gt=0, le=1, description="Exp3: share of uniform exploration and learning rate.")
    exp3_max_log_ratio: float = Field(
        10.0, gt=0,
        description="Exp3: log-weights are kept within this distance of the largest, so an arm "
                    "that fell behind can come back after a drift (the effect of Exp3.S's mixing).")
    slo_target: float = Field(
        0.95, gt=0, lt=1,
        description="constrained: an arm is SLO-feasible when its sampled P(SLO met) >= target.")
    slo_prior_met: float = Field(1.0, gt=0, description="constrained: Beta prior pseudo-count of SLO met.")
    slo_prior_missed: float = Field(1.0, gt=0, description="constrained: Beta prior pseudo-count of SLO missed.")

    @model_validator(mode="after")
    def _finite(self):
        if self.half_life_obs is not None and not math.isfinite(self.half_life_obs):
            raise ValueError(f"half_life_obs must be finite or None, got {self.half_life_obs}")
        return self

    @property
    def discount_per_obs(self) -> float:
        """Weight multiplier per observation: 0.5 ** (1 / half_life); 1.0 when not discounting."""
        return 1.0 if self.half_life_obs is None else 0.5 ** (1.0 / self.half_life_obs)


def parse_params(params: dict | None) -> SelectorParams:
    try:
        return SelectorParams(**(params or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']} (got {e.get('input')!r})"
                             for e in exc.errors())
        raise SelectorParamsError(f"bad selector params: {problems}") from None
