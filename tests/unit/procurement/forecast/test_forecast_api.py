"""make_predictor: names, parameter validation, the protocol, edge cases."""
import pickle

import numpy as np
import pytest

from procurement.forecast import PREDICTORS, Forecast, ForecastConfigError, Predictor, make_predictor


def test_registry_names():
    assert set(PREDICTORS) == {"last-value", "moving-max", "ewma", "holt-winters", "gbm-quantile", "qreg"}
    for name in PREDICTORS:
        assert isinstance(make_predictor(name), Predictor)


@pytest.mark.parametrize("name, params, match", [
    ("prophet", None, "unknown predictor 'prophet'"),
    ("ewma", {"halflife": 3}, "halflife"),
    ("gbm-quantile", {"quantile": 1.5}, "quantile"),
    ("moving-max", {"window_s": 0}, "window_s"),
    ("holt-winters", {"season_s": 95}, "whole number"),
    ("gbm-quantile", {"min_fit_s": 10**9}, "exceeds history_s"),
    ("last-value", [1, 2], "must be a dict"),
    ("qreg", {"feature_halflives_s": [30, 0]}, "feature_halflives_s"),
    ("qreg", {"fit_iters": 0}, "fit_iters"),
])
def test_bad_parameters_rejected_with_clear_errors(name, params, match):
    with pytest.raises(ForecastConfigError, match=match):
        make_predictor(name, params)


@pytest.mark.parametrize("name", sorted(PREDICTORS))
def test_empty_history_bad_horizon_and_pickle(name):
    p = make_predictor(name, {"seed": 1})
    assert p.forecast(0, 120) == Forecast(0.0, 0.0, 0.0)
    p.observe(100, np.full(100, 7.0))
    with pytest.raises(ValueError, match="horizon_s"):
        p.forecast(100, 0)
    f = p.forecast(100, 120)
    assert f.upper_per_s >= f.peak_per_s >= 0 and f.mean_per_s == pytest.approx(7.0)
    q = pickle.loads(pickle.dumps(p))
    assert q.forecast(100, 120) == p.forecast(100, 120)
