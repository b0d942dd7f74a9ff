"""gbm-quantile: learns a clear seasonal step pattern, deterministic, picklable."""
import pickle

import numpy as np
import pytest

from procurement.forecast import make_predictor
from procurement.forecast.evaluate import rollout

# A square wave: 20 req/s for 10 min, 100 req/s for 10 min, Poisson noise. The step up is
# foreseeable from the phase within the 20-min season; last value always misses it.
PERIOD_S = 1200
GBM = {"season_s": PERIOD_S, "fit_window_s": 3600, "refit_interval_s": 1800, "fit_trees_per_tick": 0,
       "n_estimators": 30, "min_fit_s": 1800, "seed": 3}


def square_wave(num_s: int, seed: int = 0) -> np.ndarray:
    t = np.arange(num_s)
    rate = np.where((t % PERIOD_S) < PERIOD_S // 2, 20.0, 100.0)
    return np.random.default_rng(seed).poisson(rate).astype(float)


def beats_last_value(num_s, eval_start_s, params):
    counts = square_wave(num_s)
    gbm = rollout(make_predictor("gbm-quantile", params), counts, eval_start_s, quantile=0.9)
    last = rollout(make_predictor("last-value"), counts, eval_start_s, quantile=0.9)
    assert gbm.pinball < 0.5 * last.pinball
    assert gbm.under_share <= 0.25


def test_gbm_beats_last_value_on_a_step_pattern_short():
    beats_last_value(4800, 3000, {**GBM, "min_fit_s": 1200, "fit_window_s": 2400})


@pytest.mark.slow
def test_gbm_beats_last_value_on_a_step_pattern():
    beats_last_value(9000, 5400, GBM)


def run(p, counts, ticks):
    out = []
    for i in range(ticks):
        end = (i + 1) * 10
        p.observe(end, counts[end - 10:end])
        out.append(p.forecast(end, 120))
    return out


def test_same_seed_same_forecasts_and_pickle_round_trip():
    counts = square_wave(6000, seed=1)
    a, b = make_predictor("gbm-quantile", GBM), make_predictor("gbm-quantile", GBM)
    fa, fb = run(a, counts, 300), run(b, counts, 300)
    assert fa == fb
    assert a.num_fits >= 1
    c = pickle.loads(pickle.dumps(a))
    rest = counts[3000:]
    for i in range(60):  # continue both from second 3000: identical forecasts, incl. a refit
        end = 3000 + (i + 1) * 10
        for p in (a, c):
            p.observe(end, rest[end - 3010:end - 3000])
        assert a.forecast(end, 120) == c.forecast(end, 120)


def test_staged_training_bounds_trees_per_tick():
    p = make_predictor("gbm-quantile", {**GBM, "fit_trees_per_tick": 2, "n_estimators": 4})
    counts = square_wave(2400)
    fits = []
    for i in range(240):
        end = (i + 1) * 10
        p.observe(end, counts[end - 10:end])
        p.forecast(end, 120)
        fits.append(p.num_fits)
    # 3 models x 4 trees at 2 trees a tick: the first model set is live 6 ticks after min_fit_s
    first = fits.index(1)
    assert first == pytest.approx((1800 + 120) // 10 + 5, abs=2)
