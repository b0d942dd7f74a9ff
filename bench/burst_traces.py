"""Synthetic flash-crowd traces, seeded, so the hybrid policy is not tuned to WITS and Berkeley.

Each trace is a diurnal base (a sine with a 24-h period, compressed to the trace's length so a
few hours show a full day's swing) with events on top, and per-second Poisson counts:

- `spikes`:  sudden x5-x10 steps of 2-10 minutes (a flash crowd: no ramp, the worst case for a
             VM that boots in 90-100 s);
- `ramps`:   linear climbs to x3-x6 over 2-15 minutes, a plateau of 5-20 minutes, a ramp down
             (a launch or a news story: a forecast can see these coming);
- `mixed`:   both, plus short x2-x3 blips of 10-60 s (the function tier's job).

Written as `second,requests` CSVs (the simulator's trace format) to configs/traces/synthetic/:
python bench/burst_traces.py [--seed 0] [--hours 4] [--base-per-s 140] [--out DIR]
The same seed gives byte-identical files. `make_trace(shape, seed, ...)` returns the counts for a
bench that wants them in memory.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from controller.config import REPO_ROOT  # noqa: E402

SHAPES = ("spikes", "ramps", "mixed")
OUT_DIR = os.path.join(REPO_ROOT, "configs", "traces", "synthetic")


def diurnal_base(duration_s: int, base_per_s: float, swing: float = 0.5) -> np.ndarray:
    """Rate per second: base x (1 + swing x sin), one full period over the trace, lowest at the
    start (a night-to-day-to-night shape), so the base itself moves 3x between trough and crest."""
    t = np.arange(duration_s, dtype=np.float64)
    return base_per_s * (1.0 + swing * np.sin(2 * np.pi * t / duration_s - np.pi / 2))


def _spikes(mult: np.ndarray, rng: np.random.Generator, every_s: float) -> None:
    """Sudden steps x5-x10 lasting 2-10 min, one per `every_s` on average."""
    T = len(mult)
    t = float(rng.uniform(0.2, 0.6) * every_s)
    while t < T - 120:
        dur = int(rng.uniform(120, 600))
        a = int(t)
        mult[a:a + dur] = np.maximum(mult[a:a + dur], rng.uniform(5.0, 10.0))
        t += dur + rng.exponential(every_s)


def _ramps(mult: np.ndarray, rng: np.random.Generator, every_s: float) -> None:
    """Ramp up to x3-x6 over 2-15 min, hold 5-20 min, ramp down over 2-10 min."""
    T = len(mult)
    t = float(rng.uniform(0.2, 0.6) * every_s)
    while t < T - 600:
        up, hold, down = int(rng.uniform(120, 900)), int(rng.uniform(300, 1200)), int(rng.uniform(120, 600))
        peak = rng.uniform(3.0, 6.0)
        shape = np.concatenate([np.linspace(1.0, peak, up), np.full(hold, peak), np.linspace(peak, 1.0, down)])
        a = int(t)
        b = min(T, a + len(shape))
        mult[a:b] = np.maximum(mult[a:b], shape[:b - a])
        t += len(shape) + rng.exponential(every_s)


def _blips(mult: np.ndarray, rng: np.random.Generator, every_s: float) -> None:
    """Short x2-x3 bursts of 10-60 s (below a VM's boot time: only functions can catch them)."""
    T = len(mult)
    t = float(rng.exponential(every_s))
    while t < T - 60:
        dur = int(rng.uniform(10, 60))
        a = int(t)
        mult[a:a + dur] = np.maximum(mult[a:a + dur], rng.uniform(2.0, 3.0))
        t += dur + rng.exponential(every_s)


def make_rate(shape: str, seed: int, duration_s: int, base_per_s: float) -> np.ndarray:
    """The expected rate per second of one synthetic trace (before Poisson sampling)."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    # One stream per shape, derived from the seed, so adding a shape never changes another's.
    rng = np.random.default_rng([seed, SHAPES.index(shape)])
    # Events multiply the base; where two overlap the larger wins (a x10 spike on a x6 ramp is
    # x10, not x60: the flash crowd is the same people).
    mult = np.ones(duration_s)
    if shape == "spikes":
        _spikes(mult, rng, every_s=2400.0)
    elif shape == "ramps":
        _ramps(mult, rng, every_s=2400.0)
    else:
        _spikes(mult, rng, every_s=4800.0)
        _ramps(mult, rng, every_s=4800.0)
        _blips(mult, rng, every_s=300.0)
    return diurnal_base(duration_s, base_per_s) * mult


def make_trace(shape: str, seed: int = 0, duration_s: int = 4 * 3600, base_per_s: float = 140.0) -> np.ndarray:
    """Per-second request counts (int64): Poisson around `make_rate`."""
    rate = make_rate(shape, seed, duration_s, base_per_s)
    rng = np.random.default_rng([seed, SHAPES.index(shape), 1])
    return rng.poisson(rate).astype(np.int64)


def write_trace(path: str, counts: np.ndarray) -> None:
    with open(path, "w") as fh:
        fh.write("second,requests\n")
        fh.write("".join(f"{s},{int(c)}\n" for s, c in enumerate(counts)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hours", type=float, default=4.0)
    ap.add_argument("--base-per-s", type=float, default=140.0, help="mean of the diurnal base (WITS: 143)")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--out", default=OUT_DIR)
    a = ap.parse_args(argv)
    shapes = a.shapes.split(",")
    bad = [s for s in shapes if s not in SHAPES]
    if bad or a.hours <= 0 or a.base_per_s <= 0:
        print(f"burst_traces: bad argument: shapes {bad or 'ok'} (known: {', '.join(SHAPES)}), "
              f"--hours {a.hours}, --base-per-s {a.base_per_s} must be > 0", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    for shape in shapes:
        counts = make_trace(shape, a.seed, int(a.hours * 3600), a.base_per_s)
        path = os.path.join(a.out, f"{shape}.csv")
        write_trace(path, counts)
        print(f"{path}: {len(counts):,} s, {int(counts.sum()):,} requests, mean {counts.mean():.1f}/s, "
              f"max {counts.max()}/s, p99/median {np.percentile(counts, 99) / max(1, np.median(counts)):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
