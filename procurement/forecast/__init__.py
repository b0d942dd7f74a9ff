"""Load predictors: forecast one model's arrival rate over the VM procurement horizon.

    p = make_predictor("gbm-quantile", {"seed": 0, "quantile": 0.9})
    p.observe(now_s, counts_per_s)          # every tick: the per-second counts that ended at now_s
    f = p.forecast(now_s, horizon_s=120.0)  # Forecast(mean_per_s, upper_per_s, peak_per_s)

Baselines "last-value", "moving-max", "ewma", "holt-winters"; ours "qreg" (the best; a level
times a learnt burst multiplier) and "gbm-quantile".
See docs/forecast.md.
"""
from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from procurement.forecast.base import Forecast, ForecastConfigError, Predictor
from procurement.forecast.baselines import Ewma, LastValue, MovingMax
from procurement.forecast.gbm import GbmQuantile
from procurement.forecast.holt_winters import HoltWinters
from procurement.forecast.qreg import Qreg

PREDICTORS: dict[str, type] = {
    cls.name: cls for cls in (LastValue, MovingMax, Ewma, HoltWinters, GbmQuantile, Qreg)
}


def make_predictor(name: str, params: dict | None = None) -> Predictor:
    """Build the predictor `name` with `params` validated against its parameter model."""
    if name not in PREDICTORS:
        raise ForecastConfigError(f"unknown predictor {name!r}; known: {', '.join(sorted(PREDICTORS))}")
    cls = PREDICTORS[name]
    if params is not None and not isinstance(params, Mapping):
        raise ForecastConfigError(f"params for predictor {name!r} must be a dict, got {type(params).__name__}")
    try:
        validated = cls.params_type(**(params or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors())
        raise ForecastConfigError(f"bad parameters for predictor {name!r}: {problems}") from None
    return cls(validated)


__all__ = ["Forecast", "ForecastConfigError", "PREDICTORS", "Predictor", "make_predictor"]
