"""Score a predictor on a trace the way the controller would use it: tick by tick.

The predictor sees the trace from second 0, one tick of per-second counts at a time, and is
asked for a forecast every tick (so online refits and calibration happen as in the loop); only
forecasts made at or after `eval_start_s` are scored against what then happened. Pure: the
caller may time the ticks by passing a clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from procurement.forecast.base import Predictor


def pinball_loss(actual: np.ndarray, predicted: np.ndarray, quantile: float) -> float:
    """Mean quantile (pinball) loss: q (y - f) when under-forecast, (1 - q) (f - y) when over."""
    diff = np.asarray(actual, float) - np.asarray(predicted, float)
    return float(np.mean(np.maximum(quantile * diff, (quantile - 1) * diff)))


@dataclass(frozen=True)
class Scores:
    num_forecasts: int
    pinball: float  # of upper_per_s vs the actual peak, at the predictor's quantile
    under_share: float  # share of forecasts with actual peak > upper_per_s
    over_ratio: float  # mean upper_per_s / mean actual peak (over-provisioning)
    mean_abs_err: float  # |mean_per_s - actual mean|, averaged
    tick_ms_p50: float
    tick_ms_p99: float


def bucket_rates(counts_per_s: np.ndarray, bucket_s: int) -> np.ndarray:
    n = counts_per_s.size // bucket_s
    return counts_per_s[:n * bucket_s].reshape(n, bucket_s).mean(axis=1)


def rollout(predictor: Predictor, counts_per_s: np.ndarray, eval_start_s: int, *, quantile: float,
            horizon_s: float = 120.0, tick_s: int = 10, bucket_s: int = 10,
            clock: Callable[[], float] | None = None) -> Scores:
    """Feed `counts_per_s` (trace second 0 onwards) tick by tick and score forecasts made at
    or after eval_start_s whose horizon ends within the trace. `clock` (e.g.
    time.perf_counter) times each tick's observe + forecast."""
    if tick_s % bucket_s:
        raise ValueError(f"tick_s ({tick_s}) must be a multiple of bucket_s ({bucket_s})")
    counts = np.asarray(counts_per_s, float)
    num_h = max(1, math.ceil(horizon_s / bucket_s - 1e-9))
    rates = bucket_rates(counts, bucket_s)
    win = sliding_window_view(rates, num_h)
    actual_peak, actual_mean = win.max(axis=1), win.mean(axis=1)  # horizon starting at bucket j
    rows, tick_ms = [], []
    for end_s in range(tick_s, counts.size + 1, tick_s):
        t0 = clock() if clock else 0.0
        predictor.observe(float(end_s), counts[end_s - tick_s:end_s])
        fc = predictor.forecast(float(end_s), horizon_s)
        if clock:
            tick_ms.append((clock() - t0) * 1e3)
        j = end_s // bucket_s  # first bucket of the horizon
        if end_s >= eval_start_s and j < actual_peak.size:
            rows.append((fc.upper_per_s, fc.mean_per_s, actual_peak[j], actual_mean[j]))
    if not rows:
        raise ValueError("nothing to score: eval_start_s leaves no complete horizon in the trace")
    upper, mean, peak, amean = np.array(rows).T
    ticks = np.array(tick_ms) if tick_ms else np.zeros(1)
    return Scores(
        num_forecasts=len(rows), pinball=pinball_loss(peak, upper, quantile),
        under_share=float(np.mean(peak > upper)), over_ratio=float(upper.mean() / max(peak.mean(), 1e-12)),
        mean_abs_err=float(np.mean(np.abs(mean - amean))),
        tick_ms_p50=float(np.percentile(ticks, 50)), tick_ms_p99=float(np.percentile(ticks, 99)))


def load_trace(path: str) -> np.ndarray:
    """Per-second request counts of a `second,requests` CSV, indexed by second."""
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    counts = np.zeros(int(data[:, 0].max()) + 1)
    counts[data[:, 0].astype(int)] = data[:, 1]
    return counts
