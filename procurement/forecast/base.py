"""What every load predictor shares: the `Forecast` record, the `Predictor` protocol, the common
parameters, and the residual calibration that turns a baseline's point forecast into an upper
quantile.

What is forecast (one model's arrivals): over the next `horizon_s` seconds, cut into
`bucket_s`-second buckets (10 s), the *peak* bucket rate (max over the horizon of the 10-s
mean requests/s) that VM capacity must cover, and the mean rate. 10-s means rather than single
seconds because a VM replica's queue absorbs a burst shorter than a few seconds within a 300 ms
SLO only partly, but the per-second maximum is mostly Poisson noise that no predictor can call
and that the function tier exists to absorb. The horizon is rounded up to whole buckets.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from procurement.forecast.history import BucketHistory


@dataclass(frozen=True)
class Forecast:
    """Arrival-rate forecast of one model over a horizon, in requests/s.

    mean_per_s: expected mean rate over the horizon.
    upper_per_s: the `quantile` (e.g. 0.9) quantile of the peak 10-s rate: what to provision.
    peak_per_s: the median estimate of that peak.
    """

    mean_per_s: float
    upper_per_s: float
    peak_per_s: float


@runtime_checkable
class Predictor(Protocol):
    """A load predictor. Holds its own state; picklable; deterministic given params["seed"]."""

    name: str

    def observe(self, now_s: float, counts_per_s: np.ndarray) -> None:
        """Append the per-second counts of the seconds that ended at now_s."""

    def forecast(self, now_s: float, horizon_s: float) -> Forecast:
        """Forecast the rate over (now_s, now_s + horizon_s]."""


class ForecastConfigError(ValueError):
    """Unknown predictor name or bad predictor parameters."""


class PredictorParams(BaseModel):
    """Parameters every predictor takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seed: int = Field(default=0, ge=0, description="seeds any randomness the predictor uses")
    quantile: float = Field(default=0.9, gt=0.5, lt=1, description="quantile of the peak that upper_per_s estimates")
    bucket_s: int = Field(default=10, ge=1, le=300, description="rates are averaged over buckets of this many seconds")
    history_s: float = Field(default=2 * 86400 + 3600, gt=0, description="arrival history kept")


class CalibratedParams(PredictorParams):
    """Baselines: a point forecast of the peak, shifted by quantiles of its own recent errors."""

    calibrate: bool = Field(default=True, description="shift the point peak by quantiles of recent residuals")
    calibration_window_s: float = Field(default=3600, gt=0, description="residuals from forecasts made this far back")
    min_residuals: int = Field(default=10, ge=1, description="residuals needed before calibration applies")


def num_horizon_buckets(horizon_s: float, bucket_s: int) -> int:
    if not horizon_s > 0 or not math.isfinite(horizon_s):
        raise ValueError(f"horizon_s must be a positive number, got {horizon_s}")
    return max(1, math.ceil(horizon_s / bucket_s - 1e-9))


class ResidualCalibrator:
    """Shifts point forecasts of the peak by quantiles of their own recent errors.

    Split-conformal in spirit: each forecast's points (e.g. a median and an upper estimate of
    the peak) are remembered; once the horizon has passed, the residuals actual_peak - point
    join a window of the last `window` forecasts, and point i is then shifted by the
    levels[i]-quantile of its residuals. A forecaster biased low (last value) or high (moving
    max), or a quantile model that under-covers out of sample, is thereby brought to the
    coverage target it claims.
    """

    @classmethod
    def for_params(cls, params) -> "ResidualCalibrator":
        """The median and the `quantile` of the peak, over the calibration window in buckets."""
        return cls((0.5, params.quantile), max(1, math.ceil(params.calibration_window_s / params.bucket_s)),
                   params.min_residuals)

    def __init__(self, levels: tuple[float, ...], window: int, min_residuals: int):
        self.levels, self.min_residuals = levels, min_residuals
        self._pending: deque[tuple[int, int, tuple[float, ...]]] = deque()  # (last bucket, num_h, points)
        self._residuals: deque[tuple[float, ...]] = deque(maxlen=window)
        self._num_h: int | None = None

    def calibrate(self, history: BucketHistory, num_h: int, points: tuple[float, ...]) -> tuple[float, ...]:
        """Record `points` (forecast now, from the history's last complete bucket) and return
        them shifted by the residual quantiles learnt so far (unshifted until min_residuals)."""
        self._resolve(history, num_h)
        last_k = history.num_done - 1
        if not self._pending or self._pending[-1][0] != last_k:  # one record per bucket
            self._pending.append((last_k, num_h, tuple(points)))
        if len(self._residuals) < self.min_residuals:
            return tuple(points)
        res = np.array(self._residuals)
        shifts = [np.quantile(res[:, i], lvl) for i, lvl in enumerate(self.levels)]
        return tuple(float(p + s) for p, s in zip(points, shifts))

    def _resolve(self, history: BucketHistory, num_h: int) -> None:
        if self._num_h != num_h:  # residuals of another horizon say nothing about this one
            self._residuals.clear()
            self._pending = deque(p for p in self._pending if p[1] == num_h)
            self._num_h = num_h
        done = history.num_done
        oldest_kept = done - history.num_kept
        while self._pending and self._pending[0][0] + num_h <= done - 1:
            k, _, points = self._pending.popleft()
            if k + 1 < oldest_kept:
                continue  # its horizon fell out of the history
            actual = float(history.recent(done - (k + 1))[:num_h].max())
            self._residuals.append(tuple(actual - p for p in points))


class CalibratedPredictor:
    """Base of the baselines: subclasses give `_point(num_h) -> (mean, peak)` from the history;
    peak_per_s = point + median residual, upper_per_s = point + q-quantile residual."""

    name = "calibrated"
    params_type: type[CalibratedParams] = CalibratedParams

    def __init__(self, params: CalibratedParams):
        self.params = params
        self.history = BucketHistory(params.bucket_s, max(1, math.ceil(params.history_s / params.bucket_s)))
        self.calibrator = ResidualCalibrator.for_params(params)

    def observe(self, now_s: float, counts_per_s: np.ndarray) -> None:
        self.history.observe(now_s, counts_per_s)

    def forecast(self, now_s: float, horizon_s: float) -> Forecast:
        num_h = num_horizon_buckets(horizon_s, self.params.bucket_s)
        if self.history.num_done == 0:
            return Forecast(0.0, 0.0, 0.0)
        mean, point = self._point(num_h)
        if not self.params.calibrate:
            return Forecast(float(mean), float(point), float(point))
        peak, upper = self.calibrator.calibrate(self.history, num_h, (point, point))
        return Forecast(float(mean), max(0.0, upper), max(0.0, peak))

    def _point(self, num_h: int) -> tuple[float, float]:
        raise NotImplementedError
