"""Baseline arithmetic on hand-made series, and residual calibration."""
import numpy as np
import pytest

from procurement.forecast import make_predictor


def feed(p, rates, first_bucket=0, bucket_s=10):
    """Feed one 10-s bucket per tick at the given per-second rates."""
    for i, r in enumerate(rates, start=first_bucket):
        p.observe(float((i + 1) * bucket_s), np.full(bucket_s, float(r)))


RAW = {"calibrate": False}


def test_last_value_is_the_last_bucket_rate():
    p = make_predictor("last-value", RAW)
    feed(p, [3, 9, 4])
    f = p.forecast(30, 120)
    assert (f.mean_per_s, f.peak_per_s, f.upper_per_s) == (4.0, 4.0, 4.0)


def test_moving_max_over_window():
    p = make_predictor("moving-max", {**RAW, "window_s": 30})
    feed(p, [50, 1, 8, 2])  # the 50 is outside the last 30 s
    f = p.forecast(40, 120)
    assert f.peak_per_s == 8.0 and f.upper_per_s == 8.0
    assert f.mean_per_s == pytest.approx((1 + 8 + 2) / 3)


def test_ewma_with_halflife_of_one_bucket():
    p = make_predictor("ewma", {**RAW, "halflife_s": 10})  # alpha = 1 - 2^-1 = 0.5
    feed(p, [8, 0, 4])  # 8 -> 4 -> 4
    assert p.forecast(30, 60).mean_per_s == pytest.approx(4.0)
    feed(p, [12], first_bucket=3)  # incremental: 0.5 * 12 + 0.5 * 4 = 8
    assert p.forecast(40, 60).peak_per_s == pytest.approx(8.0)


def test_holt_winters_simple_smoothing_and_trend_extrapolation():
    # beta = gamma = 0: simple exponential smoothing, level 10 -> 0.5*20 + 0.5*10 = 15
    p = make_predictor("holt-winters", {**RAW, "alpha": 0.5, "beta": 0, "gamma": 0, "phi": 1})
    feed(p, [10, 20])
    assert p.forecast(20, 30).peak_per_s == pytest.approx(15.0)
    # alpha = beta = 1, phi = 1 on a line: level = y, trend = slope 2; 3 buckets ahead of 16
    p = make_predictor("holt-winters", {**RAW, "alpha": 1, "beta": 1, "gamma": 0, "phi": 1})
    feed(p, [10, 12, 14, 16])
    f = p.forecast(40, 30)
    assert f.peak_per_s == pytest.approx(22.0)
    assert f.mean_per_s == pytest.approx(20.0)


def test_holt_winters_learns_a_season():
    # season of 4 buckets: pattern 0, 0, 0, 40 repeated; with gamma=1 the seasonal index of
    # each slot is the last deviation from the level, so the spike is foreseen.
    p = make_predictor("holt-winters", {**RAW, "alpha": 0.01, "beta": 0, "gamma": 1, "phi": 1, "season_s": 40})
    feed(p, [0, 0, 0, 40] * 20)
    assert p.forecast(800, 30).peak_per_s < 15  # next three buckets: no spike
    feed(p, [0, 0], first_bucket=80)
    assert p.forecast(820, 20).peak_per_s > 25  # the spike is 2 buckets ahead


def test_calibration_shifts_by_residual_quantiles():
    # Alternating 10, 20: the 20-s peak after any bucket is 20. Last value's residuals are 10
    # (after a 10) or 0 (after a 20); the 0.9-quantile shift is 10, so upper covers 20.
    p = make_predictor("last-value", {"quantile": 0.9, "min_residuals": 5})
    uppers = []
    for i in range(60):
        p.observe(float((i + 1) * 10), np.full(10, 10.0 if i % 2 == 0 else 20.0))
        uppers.append(p.forecast((i + 1) * 10, 20).upper_per_s)
    assert min(uppers[20:]) >= 20.0
    assert uppers[0] == 10.0  # no residuals yet: the raw point
