"""`gbm-quantile`: quantile-loss gradient boosting on lag and seasonal features, refit online.

Three scikit-learn GradientBoostingRegressor models share one feature matrix (features.py) and
predict, as ratios to the current level L:
  - the `quantile` quantile of the horizon's peak bucket rate  -> upper_per_s
  - its median                                                 -> peak_per_s
  - the horizon's mean rate (squared error)                    -> mean_per_s
Rows are weighted by L, so the ratio models minimise the pinball loss in requests/s (a miss
at 300 req/s counts 3x one at 100 req/s), which is the loss procurement pays.

Refits are bounded per tick. Every `refit_interval_s` a training job snapshots the rows of the
last `fit_window_s` (10-s buckets: 2 h = 720 rows whose horizons have fully happened); each
forecast() then grows the job's models by at most `fit_trees_per_tick` trees (warm start), and
the job replaces the live models when all are complete. A tree costs a few ms, so no tick pays
for a whole refit. GradientBoostingRegressor rather than HistGradientBoostingRegressor because
it runs no OpenMP threads: on a shared 2-core machine HistGBR's thread pool made a 720-row fit
take seconds. Before the first model is ready it forecasts the moving max of the last 5 min.

Quantile models fitted on two hours under-cover out of sample when the load drifts (16% of
peaks above a q=0.9 forecast on WITS), so, like the baselines, the model's outputs are
conformally shifted by their own recent residuals (base.ResidualCalibrator; `calibrate`).
"""
from __future__ import annotations

import math

import numpy as np
from pydantic import Field, model_validator

from procurement.forecast import features as F
from procurement.forecast.base import CalibratedParams, Forecast, ResidualCalibrator, num_horizon_buckets
from procurement.forecast.history import BucketHistory

MODEL_KEYS = ("upper", "peak", "mean")


def _regressor_class():
    # Imported on first fit, not at module import: scikit-learn costs ~1.4 s to import, which
    # every `hybridserve simulate` would pay though most forecasters never fit a tree.
    from sklearn.ensemble import GradientBoostingRegressor
    return GradientBoostingRegressor


class GbmParams(CalibratedParams):
    fit_window_s: float = Field(default=7200, gt=0, description="train on forecasts made in this look-back")
    refit_interval_s: float = Field(default=1800, gt=0, description="start a training job at most this often")
    fit_trees_per_tick: int = Field(default=1, ge=0, description="trees grown per forecast; 0 = whole fit at once")
    min_fit_s: float = Field(default=1800, gt=0, description="history needed before the first fit")
    season_s: float = Field(default=86400, gt=0, description="season of the phase and seasonal-lag features")
    n_estimators: int = Field(default=30, ge=1, le=2000, description="boosting rounds per model")
    learning_rate: float = Field(default=0.2, gt=0, le=1)
    max_depth: int = Field(default=3, ge=1, le=8)
    min_samples_leaf: int = Field(default=20, ge=1)

    @model_validator(mode="after")
    def _check(self):
        if self.min_fit_s > self.history_s:
            raise ValueError(f"min_fit_s ({self.min_fit_s}) exceeds history_s ({self.history_s})")
        if self.season_s < 2 * self.bucket_s:
            raise ValueError(f"season_s ({self.season_s}) must span >= 2 buckets of {self.bucket_s} s")
        return self


class _TrainingJob:
    """Models being grown on one snapshot of rows, a few trees per tick."""

    def __init__(self, p: GbmParams, x: np.ndarray, ys: dict[str, np.ndarray], w: np.ndarray, num_h: int):
        self.x, self.ys, self.w, self.num_h = x, ys, w, num_h
        self.target = p.n_estimators
        self.models = {}
        for key in MODEL_KEYS:
            loss = dict(loss="squared_error") if key == "mean" else dict(
                loss="quantile", alpha=p.quantile if key == "upper" else 0.5)
            self.models[key] = _regressor_class()(
                n_estimators=0, learning_rate=p.learning_rate, max_depth=p.max_depth,
                min_samples_leaf=p.min_samples_leaf, warm_start=True, random_state=p.seed, **loss)

    def grow(self, budget: int) -> bool:
        """Add up to `budget` trees (0: all); True when every model is complete."""
        for key in MODEL_KEYS:
            m = self.models[key]
            have = m.n_estimators
            if have >= self.target:
                continue
            add = self.target - have if budget == 0 else min(budget, self.target - have)
            m.set_params(n_estimators=have + add)
            m.fit(self.x, self.ys[key], sample_weight=self.w)
            if budget:
                budget -= add
                if budget == 0:
                    break
        return all(m.n_estimators >= self.target for m in self.models.values())


class GbmQuantile:
    name = "gbm-quantile"
    params_type = GbmParams

    def __init__(self, params: GbmParams):
        self.params = params
        self.history = BucketHistory(params.bucket_s, max(1, math.ceil(params.history_s / params.bucket_s)))
        self.season_b = max(2, round(params.season_s / params.bucket_s))
        self._models: dict | None = None
        self._models_num_h: int | None = None
        self._job: _TrainingJob | None = None
        self._job_s = -math.inf  # when the last training job started
        self.num_fits = 0  # completed training jobs
        self.calibrator = ResidualCalibrator.for_params(params)

    def observe(self, now_s: float, counts_per_s: np.ndarray) -> None:
        self.history.observe(now_s, counts_per_s)

    def forecast(self, now_s: float, horizon_s: float) -> Forecast:
        num_h = num_horizon_buckets(horizon_s, self.params.bucket_s)
        r = self.history.recent()
        if r.size == 0:
            return Forecast(0.0, 0.0, 0.0)
        self._train(now_s, r, num_h)
        if self._models is None or num_h != self._models_num_h:
            tail = r[-max(1, math.ceil(300 / self.params.bucket_s)):]
            return Forecast(float(tail[-F.LEVEL_BUCKETS:].mean()), float(tail.max()), float(tail.max()))
        pos = np.array([r.size - 1])
        x = self._rows(r, pos, num_h)
        lvl = float(F.level(r, pos)[0])
        upper, peak, mean = (float(self._models[k].predict(x)[0]) * lvl for k in MODEL_KEYS)
        if self.params.calibrate:
            peak, upper = self.calibrator.calibrate(self.history, num_h, (peak, upper))
        peak, mean = max(0.0, peak), max(0.0, mean)
        return Forecast(mean, max(upper, peak), peak)

    def _rows(self, r: np.ndarray, pos: np.ndarray, num_h: int) -> np.ndarray:
        first_k = self.history.num_done - r.size  # bucket index of r[0]
        end_s = self.history.bucket_end_s(first_k + pos)
        return F.features(r, pos, end_s, num_h, self.season_b, self.params.bucket_s)

    def _train(self, now_s: float, r: np.ndarray, num_h: int) -> None:
        p = self.params
        if self._job is not None and self._job.num_h != num_h:
            self._job = None  # trained for another horizon
        stale = self._models is None or self._models_num_h != num_h
        if self._job is None and (stale or now_s - self._job_s >= p.refit_interval_s):
            self._job = self._start_job(r, num_h)
            if self._job is not None:
                self._job_s = now_s
        if self._job is not None and self._job.grow(p.fit_trees_per_tick):
            self._models, self._models_num_h = self._job.models, num_h
            self._job = None
            self.num_fits += 1

    def _start_job(self, r: np.ndarray, num_h: int) -> _TrainingJob | None:
        p = self.params
        last = r.size - 1 - num_h  # last position whose whole horizon is known
        if (last + 1) * p.bucket_s < p.min_fit_s:
            return None
        first = max(0, last + 1 - math.ceil(p.fit_window_s / p.bucket_s))
        pos = np.arange(first, last + 1)
        lvl = F.level(r, pos)
        peak, mean = F.targets(r, pos, num_h)
        ys = {"upper": peak / lvl, "peak": peak / lvl, "mean": mean / lvl}
        return _TrainingJob(p, self._rows(r, pos, num_h), ys, lvl, num_h)
