"""Duration estimates per function configuration for the function tuner: a catalog prior that
measured durations move, and what a configuration's latency and cost come out to.

Durations are modelled as log-normal (service times are right-skewed and scale
multiplicatively with CPU). Per configuration (memory_mb, batch_size) the estimate of the
log-median mu is Gaussian: prior N(log catalog latency, prior_sd_log^2), updated with the
measured log-durations (conjugate update with the pooled noise variance). Old measurements fade
with `forget` per new one, so the estimate follows drift.

A configuration that has not been measured borrows from measured ones: its prior is scaled by
the measured/prior ratio interpolated in log-memory between its measured neighbours (catalog
shapes are usually right up to a factor), with an uncertainty that grows per octave of distance.
This is what lets the tuner skip most of a sweep.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri  # the standard normal quantile; far cheaper than norm.ppf

from controller.ledger import function_charge_usd


@dataclass(frozen=True)
class EstimatorSettings:
    prior_sd_log: float = 0.3  # how far the catalog may be off (log units: 0.3 ~ x1.35)
    noise_sd_log: float = 0.1  # measurement noise before any is seen (pooled once >= 2 samples)
    transfer_sd_per_octave: float = 0.1  # extra doubt per octave from the nearest measured size
    forget: float = 0.995  # weight of past samples per new sample


@dataclass
class ConfigStats:
    """Exponentially weighted count, mean and squared deviation of log-durations."""

    n: float = 0.0
    mean_log: float = 0.0
    m2_log: float = 0.0

    def add(self, log_d: np.ndarray, forget: float) -> None:
        for x in np.asarray(log_d, dtype=float).ravel():
            self.n *= forget
            self.m2_log *= forget
            self.n += 1.0
            delta = x - self.mean_log
            self.mean_log += delta / self.n
            self.m2_log += delta * (x - self.mean_log)

    def to_list(self) -> list:
        return [self.n, self.mean_log, self.m2_log]


def pooled_noise_sd(stats: dict, default: float, prior_dof: float = 4.0) -> float:
    """Noise sd of log-durations pooled over configurations, shrunk towards `default` with
    `prior_dof` pseudo-degrees of freedom (a scaled inverse-chi-square prior), so that a few
    lucky, tight samples do not make the tuner overconfident about its p95."""
    num = prior_dof * default ** 2 + sum(s.m2_log for s in stats.values() if s.n >= 2)
    den = prior_dof + sum(s.n - 1.0 for s in stats.values() if s.n >= 2)
    return max(0.01, math.sqrt(num / den))


def posterior_log(memory_mb: np.ndarray, prior_log: np.ndarray, stats_by_mem: dict,
                  es: EstimatorSettings, noise_sd: float) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sd) of the log-median duration at each memory size of one batch size.

    `stats_by_mem` maps memory_mb -> ConfigStats of that batch size."""
    mu = prior_log.copy()
    sd = np.full(mu.shape, es.prior_sd_log)
    measured = np.array([m in stats_by_mem and stats_by_mem[m].n > 0 for m in memory_mb])
    for i in np.flatnonzero(measured):
        s = stats_by_mem[memory_mb[i]]
        prec = 1.0 / es.prior_sd_log ** 2 + s.n / noise_sd ** 2
        mu[i] = (prior_log[i] / es.prior_sd_log ** 2 + s.n * s.mean_log / noise_sd ** 2) / prec
        sd[i] = 1.0 / math.sqrt(prec)
    if measured.any() and not measured.all():
        lm = np.log2(memory_mb)
        ratio = mu[measured] - prior_log[measured]
        xs = lm[measured]
        un = ~measured
        # np.interp holds the end values flat beyond the measured range
        mu[un] = prior_log[un] + np.interp(lm[un], xs, ratio)
        octaves = np.min(np.abs(lm[un][:, None] - xs[None, :]), axis=1)
        near_sd = sd[measured][np.argmin(np.abs(lm[un][:, None] - xs[None, :]), axis=1)]
        sd[un] = np.minimum(es.prior_sd_log,
                            np.sqrt(near_sd ** 2 + (es.transfer_sd_per_octave * octaves) ** 2))
    return mu, sd


def p_quantile_ms(mu_log: np.ndarray, noise_sd: float, q: float, cold_ratio: float,
                  cold_extra_ms: float, overhead_ms: float) -> np.ndarray:
    """The q-quantile of end-to-end latency when a share `cold_ratio` of calls start cold.

    Warm latency ~ LogNormal(mu, noise_sd); a cold call adds `cold_extra_ms`. The mixture's
    q-quantile lies among the warm calls while cold_ratio < 1 - q: there it is the warm
    quantile at q / (1 - cold_ratio) (e.g. q = 0.95, 2% cold: the warm 96.9th percentile);
    otherwise it is a cold call's quantile at (q - (1 - cold_ratio)) / cold_ratio."""
    rho = float(np.clip(cold_ratio, 0.0, 1.0))
    if rho < 1.0 - q:
        level = min(q / (1.0 - rho), 0.9999)
        return overhead_ms + np.exp(mu_log + ndtri(level) * noise_sd)
    level = float(np.clip((q - (1.0 - rho)) / rho, 1e-4, 0.9999))
    return overhead_ms + cold_extra_ms + np.exp(mu_log + ndtri(level) * noise_sd)


def expected_cost_usd(mu_log: np.ndarray, noise_sd: float, memory_mb: np.ndarray, batch_size: int,
                      cold_ratio: float, cold_extra_billed_ms: float, fp) -> np.ndarray:
    """Expected $ per request: the mean duration exp(mu + sd^2/2) billed at each memory size,
    cold calls billed their init too, one invocation shared by `batch_size` requests."""
    mean_ms = np.exp(mu_log + 0.5 * noise_sd ** 2)
    warm = function_charge_usd(mean_ms, memory_mb, fp)
    cold = function_charge_usd(mean_ms + cold_extra_billed_ms, memory_mb, fp)
    return ((1.0 - cold_ratio) * warm + cold_ratio * cold) / batch_size
