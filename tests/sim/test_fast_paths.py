"""The simulator's shortcuts give exactly the results of the long way round.

`FunctionPool.idle` (a second without requests, in plain Python) against `_advance` with nothing
carried, the pool's once-per-configure bills against `function_charge_usd` per call, and whole
runs against figures recorded (as float.hex) from the engine before the shortcuts existed.
"""
import numpy as np

from controller.ledger import function_charge_usd
from controller.sim.engine import Simulation
from controller.sim.function_pool import FunctionPool
from controller.sim.results import HIST_BINS


def _state(p: FunctionPool):
    return (p.alive, list(p._peaks), p.peak_concurrency, p._carry_end_s.tolist(), p.invocations, p.cold_starts,
            p.duration_sum_ms)


def test_idle_matches_advance_with_nothing_carried(config, catalog):
    fp = config.functions.model_copy(update={"keep_alive_s": 5})
    fast, slow = FunctionPool("resnet18", catalog, fp), FunctionPool("resnet18", catalog, fp)
    for p in (fast, slow):
        p.configure(2048, warm_pool=1)
    rng = np.random.default_rng(3)
    for s in range(200):
        if rng.random() < 0.3:  # a busy second (bursts raise the living count above the warm pool)
            offs = np.sort(rng.random(int(rng.integers(1, 30))))
            out_f, out_s = fast.serve(s, offs, 1000), slow.serve(s, offs, 1000)
            for a, b in zip(out_f, out_s):
                assert np.array_equal(a, b)
        else:
            fast.idle(s)
            if slow._carry_end_s.size or slow.alive > slow.warm_pool:  # the old idle second
                slow._advance(s, int(np.count_nonzero(slow._carry_end_s > 0.0)), slow._carry_end_s - 1.0)
        assert _state(fast) == _state(slow)


def test_cached_bills_equal_the_ledger(config, catalog):
    p = FunctionPool("resnet18", catalog, config.functions)
    p.configure(1769, warm_pool=0)
    offs = np.array([0.0, 0.0, 0.0, 0.5, 0.9])  # a burst: cold starts, then warm calls
    ok, lat, cold, cost = p.serve(0, offs, 1000)
    assert cold.any() and not cold.all()
    billed = p.duration_ms + p._cold_ms * cold
    assert cost.tolist() == function_charge_usd(billed, p.memory_mb, config.functions).tolist()


# Recorded from the engine at c3a037a (before the fast paths): a 1,200-s Poisson trace at 7/s
# with every 7th second of 300-900 empty. Columns: requests, served_vm, served_function,
# cold_starts, slo_violations, function_usd, vm_usd, accuracy_sum (hex), and the histograms'
# index-weighted sums.
RECORDED = {
    "hybrid": (7711, 0, 7711, 0, 0, "0x1.05f8a3fffea24p-7", "0x0.0p+0", "0x1.61429ba5e352cp+12", 23472284, 23472284),
    "mark": (7711, 7711, 0, 0, 0, "0x0.0p+0", "0x1.d0369d0369d04p-6", "0x1.61429ba5e352cp+12", 18535407, 0),
}


def test_runs_match_figures_recorded_before_the_fast_paths(config, catalog):
    counts = np.random.default_rng(0).poisson(7.0, 1200).astype(np.int64)
    counts[300:900:7] = 0
    w = np.arange(HIST_BINS)
    for pol, want in RECORDED.items():
        r = Simulation(config, catalog, counts, pol).run()
        got = (r.requests, r.served_vm, r.served_function, r.cold_starts, r.slo_violations, r.function_usd.hex(),
               r.vm_usd.hex(), r.accuracy_sum.hex(), int(r.latency_hist @ w), int(r.function_latency_hist @ w))
        assert got == want, pol
