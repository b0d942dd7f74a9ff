"""The simple baselines: last value, moving max and EWMA, each residual-calibrated (see base).

Each reads only the bucket history. EWMA keeps its smoothed level incrementally, folding in the
buckets completed since the previous forecast, so a forecast costs O(new buckets).
"""
from __future__ import annotations

import math

from pydantic import Field

from procurement.forecast.base import CalibratedParams, CalibratedPredictor


class LastValue(CalibratedPredictor):
    """Tomorrow is today: mean and peak = the last complete bucket's rate."""

    name = "last-value"
    params_type = CalibratedParams

    def _point(self, num_h: int) -> tuple[float, float]:
        last = float(self.history.recent(1)[-1])
        return last, last


class MovingMaxParams(CalibratedParams):
    window_s: float = Field(default=300, gt=0, description="look-back of the max and mean")


class MovingMax(CalibratedPredictor):
    """Peak = max of the bucket rates of the last `window_s`; mean = their mean."""

    name = "moving-max"
    params_type = MovingMaxParams

    def _point(self, num_h: int) -> tuple[float, float]:
        n = max(1, math.ceil(self.params.window_s / self.params.bucket_s))
        recent = self.history.recent(n)
        return float(recent.mean()), float(recent.max())


class EwmaParams(CalibratedParams):
    halflife_s: float = Field(default=60, gt=0, description="time for a bucket's weight to halve")


class Ewma(CalibratedPredictor):
    """Mean and peak = the exponentially weighted mean of the bucket rates.

    alpha per bucket = 1 - 2^(-bucket_s / halflife_s); e.g. 10-s buckets, 60-s half-life:
    alpha = 1 - 2^(-1/6) = 0.109.
    """

    name = "ewma"
    params_type = EwmaParams

    def __init__(self, params: EwmaParams):
        super().__init__(params)
        self.alpha = 1.0 - 2.0 ** (-params.bucket_s / params.halflife_s)
        self._level: float | None = None
        self._seen = 0  # buckets folded into the level

    def _point(self, num_h: int) -> tuple[float, float]:
        new = self.history.recent(self.history.num_done - self._seen)
        self._seen = self.history.num_done
        level, a = self._level, self.alpha
        for y in new.tolist():
            level = y if level is None else a * y + (1.0 - a) * level
        self._level = level
        return float(level), float(level)
