"""Lag and seasonal features of the bucket-rate history, and the targets they predict.

Computed for many positions at once (a training window) or for one (a forecast) by the same
code, so training and serving cannot drift apart. Everything is scaled by the current level
L = mean rate of the last 6 buckets (+1 to keep empty traffic finite): trees cannot
extrapolate, and ratios let a model fitted at 100 req/s still say something at 300 req/s.
log1p(L) is kept as a feature so the model can still learn level-dependent burstiness.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

LEVEL_BUCKETS = 6
MEAN_WINDOWS = (3, 30, 180)
MAX_WINDOWS = (6, 30, 180)
LAGS = (0, 1, 2, 5)
FILL = np.array([0.0] + [1.0] * (len(LAGS) + len(MEAN_WINDOWS) + len(MAX_WINDOWS)) + [0.0, 0.0, 0.0, 0.0, -1.0, -1.0])
FEATURE_NAMES = (
    ["log_level"] + [f"lag{l}" for l in LAGS] + [f"mean{w}" for w in MEAN_WINDOWS]
    + [f"max{w}" for w in MAX_WINDOWS] + ["std30", "slope", "phase_sin", "phase_cos", "season_max", "season_mean"])


def _window(r: np.ndarray, pos: np.ndarray, w: int, fn) -> np.ndarray:
    """fn over r[p-w+1 .. p] for each p in pos; NaN where the window starts before r."""
    out = np.full(pos.size, np.nan)
    ok = pos >= w - 1
    if r.size >= w and ok.any():
        out[ok] = fn(sliding_window_view(r, w)[pos[ok] - w + 1], axis=1)
    return out


def level(r: np.ndarray, pos: np.ndarray) -> np.ndarray:
    lo = np.maximum(pos - LEVEL_BUCKETS + 1, 0)
    cs = np.concatenate(([0.0], np.cumsum(r)))
    return (cs[pos + 1] - cs[lo]) / (pos + 1 - lo) + 1.0


def features(r: np.ndarray, pos: np.ndarray, end_s: np.ndarray, num_h: int, season_b: int,
             bucket_s: int) -> np.ndarray:
    """Feature rows (NaN-free) for positions `pos` of the bucket-rate array `r` (rates known up to pos).

    end_s: the time each position's bucket ends, for the phase within the season (the time of
    day with a one-day season).
    season_b: buckets per season; season_max/mean are the peak/mean over the same horizon one
    season earlier (NaN until a season of history exists), the seasonal-naive forecast.
    """
    pos = np.asarray(pos, dtype=np.int64)
    lvl = level(r, pos)
    cols = [np.log1p(lvl)]
    for lag in LAGS:
        v = np.full(pos.size, np.nan)
        ok = pos - lag >= 0
        v[ok] = r[pos[ok] - lag]
        cols.append(v / lvl)
    for w in MEAN_WINDOWS:
        cols.append(_window(r, pos, w, np.mean) / lvl)
    for w in MAX_WINDOWS:
        cols.append(_window(r, pos, w, np.max) / lvl)
    cols.append(_window(r, pos, 30, np.std) / lvl)
    before = _window(r, pos - LEVEL_BUCKETS, LEVEL_BUCKETS, np.mean)  # the 6 buckets before L's
    cols.append((lvl - 1.0 - before) / lvl)
    cols.extend(_phase(end_s, season_b * bucket_s))
    start = pos + 1 - season_b  # first bucket of the same horizon one season ago
    s_max, s_mean = np.full(pos.size, np.nan), np.full(pos.size, np.nan)
    ok = start >= 0
    if ok.any() and r.size >= num_h:
        win = sliding_window_view(r, num_h)[start[ok]]
        s_max[ok], s_mean[ok] = win.max(axis=1), win.mean(axis=1)
    cols.extend([s_max / lvl, s_mean / lvl])
    x = np.column_stack(cols)
    # Fill what the history is too short for (GradientBoostingRegressor takes no NaN): ratios
    # as if the rate had been flat at L, no spread or slope, and -1 (impossible for a ratio) for
    # a missing season so that trees can tell "no season yet" apart.
    return np.where(np.isnan(x), FILL, x)


def _phase(end_s: np.ndarray, season_s: float) -> list[np.ndarray]:
    phase = 2 * np.pi * (np.asarray(end_s, dtype=float) % season_s) / season_s
    return [np.sin(phase), np.cos(phase)]


def targets(r: np.ndarray, pos: np.ndarray, num_h: int) -> tuple[np.ndarray, np.ndarray]:
    """(peak, mean) of r over the num_h buckets after each position (all must exist)."""
    win = sliding_window_view(r, num_h)[np.asarray(pos) + 1]
    return win.max(axis=1), win.mean(axis=1)
