"""How much of a model's demand VMs should cover: the VM/function split as one cost problem.

A VM bought now serves from one boot later; what it does not cover spills to functions. Per
unit of VM capacity (1 request/s held for a second), a VM costs `a` = price / (3,600 x capacity x
utilization) and saves `f` (a function call's $) for each request it takes instead of a function.
The marginal unit above a cover x is used only in the seconds when demand exceeds x, so (the
newsvendor argument) the cheapest cover is the demand quantile where

    P(demand_s > x) = a / f        (the critical ratio; >= 1: functions for everything)

Example: mobilenet on c5.large, $0.085/h for 94 req/s at 0.8 use: a = 3.1e-7 $; a 512-MB call
of ~110 ms costs f = 1.1e-6 $; a / f = 0.28, so VMs cover the 72nd percentile of per-second
demand and functions the top 28 % of seconds' excess.

The quantile is of demand one boot horizon ahead, and the forecast error over that horizon is
what makes it hard. It is taken empirically from the model's own recent history: the ratio
R_t = (d_t + 1) / (level_(t - lead) + 1) of each second's demand to the trailing level one lead
earlier (the level being the mean of the `level_window_s` seconds before), so R carries both the
per-second noise and how far the level moved over a lead; cover = (level_now + 1) x Q_(1-a/f)(R)
- 1. Pure and cheap: one quantile over at most `history_s` floats per model per tick.
"""
from __future__ import annotations

import math

import numpy as np

HISTORY_S = 1800  # seconds of per-model demand kept (30 min: a few bursts, a fraction of a day)
LEVEL_WINDOW_S = 60  # the level is the mean rate over this many seconds
MIN_HISTORY_S = 300  # below this much history the caller falls back to its forecast


def critical_ratio(vm_usd_per_h: float, vm_capacity_per_s: float, utilization: float,
                   fn_usd_per_request: float | None) -> float:
    """a / f above: the share of seconds in which a marginal VM unit must be busy to pay for
    itself. 0 when no function can serve the model (VMs must cover everything)."""
    if fn_usd_per_request is None or fn_usd_per_request <= 0:
        return 0.0
    a = vm_usd_per_h / 3600.0 / max(1e-12, vm_capacity_per_s * utilization)
    return a / fn_usd_per_request


def append_history(hist: np.ndarray | None, counts_per_s: np.ndarray, keep_s: int = HISTORY_S) -> np.ndarray:
    """The last `keep_s` seconds of per-second demand, oldest first."""
    if hist is None or hist.size == 0:
        out = np.asarray(counts_per_s, dtype=np.float64)
    else:
        out = np.concatenate([hist, np.asarray(counts_per_s, dtype=np.float64)])
    return out[-keep_s:]


def cover_rate_per_s(hist: np.ndarray, lead_s: float, ratio: float, *,
                     level_window_s: int = LEVEL_WINDOW_S, fast_window_s: int = 0,
                     min_history_s: int = MIN_HISTORY_S, unit_per_s: float | None = None) -> float | None:
    """Demand rate VMs ready one `lead_s` from now should cover (req/s), or None when the
    history is too short to say (or `ratio` >= 1: functions are cheaper for every second).
    With `unit_per_s` (one VM's usable capacity) the cover is a whole number of such VMs."""
    if ratio >= 1.0:
        return None
    n = hist.size
    lead = int(math.ceil(lead_s))
    w = int(level_window_s)
    if n < max(min_history_s, w + lead + 60):
        return None
    cum = np.concatenate([[0.0], np.cumsum(hist)])
    # level before second i: mean of hist[i - w : i]; ratios for t in [w + lead, n)
    t = np.arange(w + lead, n)
    level_then = (cum[t - lead] - cum[t - lead - w]) / w
    level_now = (cum[n] - cum[n - w]) / w
    if fast_window_s:  # the level is the larger of the slow and the fast mean: a jump shows at once
        f = int(fast_window_s)
        level_then = np.maximum(level_then, (cum[t - lead] - cum[t - lead - f]) / f)
        level_now = max(level_now, (cum[n] - cum[n - f]) / f)
    r = (hist[t] + 1.0) / (level_then + 1.0)
    if unit_per_s is None or ratio <= 0:
        q = float(np.quantile(r, 1.0 - ratio)) if ratio > 0 else float(r.max())
        return max(0.0, (level_now + 1.0) * q - 1.0)
    return whole_vms_cover(np.maximum(0.0, (level_now + 1.0) * r - 1.0), unit_per_s, ratio) * unit_per_s


def whole_vms_cover(demand_sample: np.ndarray, unit_per_s: float, ratio: float) -> int:
    """VMs of `unit_per_s` usable capacity each to run, by the same marginal rule in whole VMs:
    the k-th VM serves E[clip(D - (k - 1) u, 0, u)] requests a second, and is worth its price
    while that is at least `ratio` x u (its cost in requests' worth of functions). Rounding a
    quantile up to whole VMs instead pays for a partly idle VM whenever the quantile is just
    over a multiple of u (WITS at 200 req/s on 75-req/s c5.large units: 3 VMs, not 4)."""
    d = np.sort(np.asarray(demand_sample, dtype=np.float64))
    if d.size == 0 or unit_per_s <= 0:
        return 0
    k_max = int(math.ceil(d[-1] / unit_per_s))
    lo = np.arange(k_max + 1) * unit_per_s  # VM k spans [lo_(k-1), lo_k), k = 1..k_max
    # served by VM k = E[clip(D - lo_(k-1), 0, u)] = g(lo_(k-1)) - g(lo_k), g(x) = E[max(0, D - x)]:
    # with the sample sorted, g is a suffix sum less x times the count above x (O(n log n + k),
    # not a k x n matrix: at x100 WITS rate a model runs hundreds of VMs)
    suffix = np.concatenate([np.cumsum(d[::-1])[::-1], [0.0]])
    above = np.searchsorted(d, lo, side="right")
    g = (suffix[above] - lo * (d.size - above)) / d.size
    served = g[:-1] - g[1:]
    worth = served >= ratio * unit_per_s * (1.0 - 1e-12)
    return int(np.flatnonzero(worth)[-1] + 1) if worth.any() else 0
