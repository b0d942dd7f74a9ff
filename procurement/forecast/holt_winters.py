"""Holt-Winters (additive, damped trend) on bucket rates, in numpy: the classical baseline.

Online form with the seasonal indices initialised to zero, so it is Holt's damped linear trend
for the first season and learns the seasonal profile as the season repeats (with a one-day
season, only traces longer than a day see it). Equations, with m buckets per season:

    l_t = alpha (y_t - s_{t-m}) + (1 - alpha) (l_{t-1} + phi b_{t-1})
    b_t = beta (l_t - l_{t-1}) + (1 - beta) phi b_{t-1}
    s_t = gamma (y_t - l_t) + (1 - gamma) s_{t-m}
    y^_{t+h} = l_t + (phi + ... + phi^h) b_t + s_{t+h-m}

The peak point forecast is the max of y^ over the horizon's buckets, the mean their mean; the
upper quantile comes from residual calibration (see base).
"""
from __future__ import annotations


import numpy as np
from pydantic import Field, model_validator

from procurement.forecast.base import CalibratedParams, CalibratedPredictor


class HoltWintersParams(CalibratedParams):
    alpha: float = Field(default=0.3, gt=0, le=1, description="level smoothing per bucket")
    beta: float = Field(default=0.02, ge=0, le=1, description="trend smoothing per bucket")
    gamma: float = Field(default=0.1, ge=0, le=1, description="seasonal smoothing per bucket")
    phi: float = Field(default=0.98, gt=0, le=1, description="trend damping per bucket")
    season_s: float = Field(default=86400, gt=0, description="season length (one day)")

    @model_validator(mode="after")
    def _season_whole_buckets(self):
        m = self.season_s / self.bucket_s
        if abs(m - round(m)) > 1e-9 or round(m) < 2:
            raise ValueError(f"season_s ({self.season_s}) must be a whole number (>= 2) of "
                             f"bucket_s ({self.bucket_s})")
        return self


class HoltWinters(CalibratedPredictor):
    name = "holt-winters"
    params_type = HoltWintersParams

    def __init__(self, params: HoltWintersParams):
        super().__init__(params)
        self.m = int(round(params.season_s / params.bucket_s))
        self._season = np.zeros(self.m)  # s for bucket k lives at k % m
        self._level: float | None = None
        self._trend = 0.0
        self._seen = 0  # buckets folded into the state

    def _update(self) -> None:
        p = self.params
        new = self.history.recent(self.history.num_done - self._seen)
        first_k = self.history.num_done - new.size
        level, trend, season, m = self._level, self._trend, self._season, self.m
        for i, y in enumerate(new.tolist()):
            j = (first_k + i) % m
            if level is None:
                level = y
                continue
            prev = level
            level = p.alpha * (y - season[j]) + (1 - p.alpha) * (prev + p.phi * trend)
            trend = p.beta * (level - prev) + (1 - p.beta) * p.phi * trend
            season[j] = p.gamma * (y - level) + (1 - p.gamma) * season[j]
        self._level, self._trend, self._seen = level, trend, self.history.num_done

    def _point(self, num_h: int) -> tuple[float, float]:
        self._update()
        h = np.arange(1, num_h + 1)
        phi = self.params.phi
        damp = h.astype(float) if phi == 1 else phi * (1 - phi ** h) / (1 - phi)
        k_next = self.history.num_done + h - 1  # bucket index of horizon step h
        path = self._level + damp * self._trend + self._season[k_next % self.m]
        path = np.maximum(path, 0.0)
        return float(path.mean()), float(path.max())
