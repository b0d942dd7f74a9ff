"""`qreg`: a smoothed level times a learnt burst multiplier, by linear quantile regression.

The horizon's peak 10-s rate in the traces we serve is mostly a short burst on top of the level
(peak / last 10-s rate: median 1.33-1.38, 90th percentile 1.8-2.1), and bursts are hardly
foreseeable from lags (docs/forecast.md, "Where it stands"). What *is* learnable is how big the
burst margin is, relative to the level, given how the level has been moving. So:

    L      = EWMA of the bucket rates, half-life `level_halflife_s` (120 s), plus 1 req/s
    x      = log((EWMA_h + 1) / L) for h in `feature_halflives_s` (30 s, 300 s, 900 s),
             and 1 / sqrt(L) (the Poisson floor: at 4 req/s a 10-s bucket's noise is +-16%,
             at 400 req/s +-1.6%)
    upper  = L * exp(b_q . [1, x]) - 1     q-quantile of log(peak + 1) - log L
    peak   = L * exp(b_50 . [1, x]) - 1    its median
    mean   = L - 1

A multiplicative margin rather than the baselines' additive residual shift: on Berkeley the
rate swings 30-190 req/s a day and burst sizes scale with it, so a shift learnt at noon
over-provisions at night. Rows are weighted by L so the fit minimises the pinball loss in
requests/s, which is what procurement pays for.

The fit is linear quantile regression by iteratively reweighted least squares (numpy only; a
5-column normal equation per iteration), which reaches the same pinball loss as
scikit-learn's QuantileRegressor(solver="highs") on these rows at ~1/20 of its time and, unlike
an LP solve, can be cut into slices: every `refit_interval_s` a job snapshots the last
`fit_window_s` of rows (12 h = 4,320) and each forecast runs `fit_iters_per_tick` iterations
of it until `fit_iters` are done, then the new coefficients go live. Before the first fit
(`min_fit_s` of history) it forecasts the 5-min moving max.
"""
from __future__ import annotations

import math

import numpy as np
from pydantic import Field, model_validator

from procurement.forecast.base import Forecast, PredictorParams, num_horizon_buckets
from procurement.forecast.history import BucketHistory

LOG_RATIO_CLIP = 5.0  # exp(5) = 148x the level: a bound on extrapolating the linear model


class QregParams(PredictorParams):
    level_halflife_s: float = Field(default=120, gt=0, description="half-life of the EWMA level L")
    feature_halflives_s: tuple[float, ...] = Field(
        default=(30, 300, 900), min_length=1, max_length=8, description="half-lives of the EWMAs compared to L")
    fit_window_s: float = Field(default=43200, gt=0, description="train on forecasts made in this look-back")
    refit_interval_s: float = Field(default=1800, gt=0, description="start a training job at most this often")
    min_fit_s: float = Field(default=1800, gt=0, description="history needed before the first fit")
    fit_iters: int = Field(default=60, ge=1, le=1000, description="IRLS iterations per model per fit")
    fit_iters_per_tick: int = Field(default=15, ge=0, description="IRLS iterations per forecast; 0 = whole fit at once")
    irls_eps: float = Field(default=1e-3, gt=0, description="residuals below this count as this (log units)")

    @model_validator(mode="after")
    def _check(self):
        if any(h <= 0 for h in self.feature_halflives_s):
            raise ValueError(f"feature_halflives_s must be > 0, got {self.feature_halflives_s}")
        if self.min_fit_s > self.history_s:
            raise ValueError(f"min_fit_s ({self.min_fit_s}) exceeds history_s ({self.history_s})")
        return self


class QuantileFit:
    """Weighted linear quantile regression by IRLS, runnable a few iterations at a time.

    Pinball loss rho_q(r) = |r| * (q if r >= 0 else 1 - q), so with c_i = w_i * (q or 1-q) /
    max(|r_i|, eps) it equals sum c_i r_i^2 at the current residuals: each iteration solves that
    weighted least squares and recomputes c. E.g. q = 0.9, a row 0.2 above the fit gets
    weight 0.9 / 0.2 = 4.5, one 0.2 below gets 0.1 / 0.2 = 0.5, pulling the line up until ~90%
    of the weight lies below it.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, w: np.ndarray, q: float, eps: float):
        self.a = np.column_stack([np.ones(y.size), x])
        self.y, self.w, self.q, self.eps = y, w, q, eps
        self.beta = self._solve(w)  # start from weighted least squares
        self.iters = 0

    def _solve(self, c: np.ndarray) -> np.ndarray:
        ac = self.a.T * c
        # A tiny ridge keeps the system solvable when a feature is constant (flat traffic).
        gram = ac @ self.a + 1e-9 * np.trace(ac @ self.a) * np.eye(self.a.shape[1]) + 1e-12 * np.eye(self.a.shape[1])
        return np.linalg.solve(gram, ac @ self.y)

    def step(self, num: int) -> None:
        for _ in range(num):
            r = self.y - self.a @ self.beta
            c = np.where(r >= 0, self.q, 1.0 - self.q) * self.w / np.maximum(np.abs(r), self.eps)
            self.beta = self._solve(c)
            self.iters += 1


class _TrainingJob:
    """The q-quantile and median fits on one snapshot of rows, advanced a budget at a time."""

    def __init__(self, p: QregParams, x: np.ndarray, y: np.ndarray, w: np.ndarray, num_h: int):
        self.num_h, self.target = num_h, p.fit_iters
        self.fits = [QuantileFit(x, y, w, lvl, p.irls_eps) for lvl in (p.quantile, 0.5)]

    def grow(self, budget: int) -> bool:
        """Run up to `budget` iterations (0: all); True when both fits are complete."""
        for fit in self.fits:
            left = self.target - fit.iters
            if left <= 0:
                continue
            n = left if budget == 0 else min(budget, left)
            fit.step(n)
            if budget:
                budget -= n
                if budget == 0:
                    break
        return all(f.iters >= self.target for f in self.fits)


class Qreg:
    name = "qreg"
    params_type = QregParams

    def __init__(self, params: QregParams):
        p = self.params = params
        self.history = BucketHistory(p.bucket_s, max(1, math.ceil(p.history_s / p.bucket_s)))
        # EWMA smoothing per bucket, level first: alpha = 1 - 2^(-bucket_s / half-life),
        # e.g. 10-s buckets and a 120-s half-life: 1 - 2^(-1/12) = 0.056.
        halflives = (p.level_halflife_s,) + tuple(p.feature_halflives_s)
        self._alphas = np.array([1.0 - 2.0 ** (-p.bucket_s / h) for h in halflives])
        self._ewmas: np.ndarray | None = None
        self._seen = 0  # buckets folded into the EWMAs and the row ring
        # Row ring: [L, features...] per completed bucket k at k % capacity: the fit window plus
        # an hour of horizon (a longer horizon trains on fewer rows).
        self._ring = np.zeros((math.ceil((p.fit_window_s + 3600) / p.bucket_s), len(halflives) + 1))
        self._beta: dict[float, np.ndarray] | None = None  # quantile level -> coefficients
        self._beta_num_h: int | None = None
        self._job: _TrainingJob | None = None
        self._job_s = -math.inf
        self.num_fits = 0

    def observe(self, now_s: float, counts_per_s: np.ndarray) -> None:
        self.history.observe(now_s, counts_per_s)

    def forecast(self, now_s: float, horizon_s: float) -> Forecast:
        num_h = num_horizon_buckets(horizon_s, self.params.bucket_s)
        if self.history.num_done == 0:
            return Forecast(0.0, 0.0, 0.0)
        self._fold()
        self._train(now_s, num_h)
        row = self._ring[(self.history.num_done - 1) % self._ring.shape[0]]
        lvl = float(row[0])
        if self._beta is None or self._beta_num_h != num_h:
            tail = self.history.recent(max(1, math.ceil(300 / self.params.bucket_s)))
            return Forecast(lvl - 1.0, float(tail.max()), float(tail.max()))
        upper, peak = (lvl * math.exp(float(np.clip(b[0] + row[1:] @ b[1:], -LOG_RATIO_CLIP, LOG_RATIO_CLIP))) - 1.0
                       for b in (self._beta[self.params.quantile], self._beta[0.5]))
        peak = max(0.0, peak)
        return Forecast(max(0.0, lvl - 1.0), max(upper, peak), peak)

    # --- state -------------------------------------------------------------------------------
    def _fold(self) -> None:
        """Fold the buckets completed since the last forecast into the EWMAs and row ring."""
        h = self.history
        new = h.recent(h.num_done - self._seen)
        first_k = h.num_done - new.size
        cap, a = self._ring.shape[0], self._alphas
        e = self._ewmas
        for i, y in enumerate(new.tolist()):
            e = np.full(a.size, y) if e is None else a * y + (1.0 - a) * e
            lvl = e[0] + 1.0
            self._ring[(first_k + i) % cap] = np.concatenate(
                ([lvl], np.log((e[1:] + 1.0) / lvl), [1.0 / math.sqrt(lvl)]))
        self._ewmas, self._seen = e, h.num_done

    def _train(self, now_s: float, num_h: int) -> None:
        p = self.params
        if self._job is not None and self._job.num_h != num_h:
            self._job = None  # trained for another horizon
        stale = self._beta is None or self._beta_num_h != num_h
        if self._job is None and (stale or now_s - self._job_s >= p.refit_interval_s):
            self._job = self._start_job(num_h)
            if self._job is not None:
                self._job_s = now_s
        if self._job is not None and self._job.grow(p.fit_iters_per_tick):
            self._beta = {lvl: f.beta.copy() for lvl, f in zip((p.quantile, 0.5), self._job.fits)}
            self._beta_num_h = num_h
            self._job = None
            self.num_fits += 1

    def _start_job(self, num_h: int) -> _TrainingJob | None:
        p, h = self.params, self.history
        done = h.num_done
        last_k = done - 1 - num_h  # last bucket whose whole horizon has happened
        if (last_k + 1) * p.bucket_s < p.min_fit_s:
            return None
        oldest = max(done - h.num_kept, done - self._ring.shape[0], 0)
        first_k = max(oldest, last_k + 1 - math.ceil(p.fit_window_s / p.bucket_s))
        if last_k < first_k:
            return None
        r = h.recent(done - first_k)  # r[0] is bucket first_k
        ks = np.arange(first_k, last_k + 1)
        peak = np.lib.stride_tricks.sliding_window_view(r[1:], num_h)[: ks.size].max(axis=1)
        rows = self._ring[ks % self._ring.shape[0]]
        lvl = rows[:, 0]
        return _TrainingJob(p, rows[:, 1:], np.log((peak + 1.0) / lvl), lvl, num_h)
