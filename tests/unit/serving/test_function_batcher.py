"""The live batch queue (serving.function_batcher) on a virtual clock, against an in-memory fake
function provider: batches fill and flush, a request is never held past the point where its
SLO can still be met (hypothesis), failures reach every caller, spill-rate bands route requests."""
from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procurement.providers.base import InvokeResult
from serving.function_batcher import BatchConfig, FunctionBatcher, _Model, band_shares


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer instead of waiting for it (no threads:
    the fake provider runs inline and `asyncio.sleep`s its execution time)."""

    def __init__(self):
        super().__init__()
        self.now_s = 0.0
        real_select = self._selector.select

        def select(timeout=None):
            events = real_select(0)
            if not events:
                if timeout is None:
                    raise RuntimeError("deadlock: nothing scheduled and nothing ready")
                self.now_s += timeout
            return events
        self._selector.select = select

    def time(self) -> float:
        return self.now_s


def run(coro):
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


class FakeFunctions:
    """Functions in memory: a batch of n samples takes `base_ms + per_sample_ms * n` (plus
    `cold_ms` when no instance is idle); the reply's
    row i is sample i's first 3 values times 2 (so each caller can tell its own row)."""

    def __init__(self, base_ms=10.0, per_sample_ms=5.0, idle=True, cold_ms=None, fail=None):
        self.base_ms, self.per_sample_ms = base_ms, per_sample_ms
        self.idle, self.cold_ms, self.fail = idle, cold_ms, fail
        self.calls: list[tuple[float, int]] = []  # (virtual time sent, samples)

    def invoke(self, model, payload, timeout_s):
        n = payload.shape[0]
        self.calls.append((asyncio.get_running_loop().time(), n))
        cold = not self.idle and self.cold_ms is not None  # no idle instance: this one starts cold
        ms = self.base_ms + self.per_sample_ms * n + (self.cold_ms if cold else 0.0)
        if self.fail == "error":
            return InvokeResult(False, None, ms, ms, cold, "error: boom")
        if self.fail == "raise":
            raise OSError("pipe closed")
        rows = payload.reshape(n, -1)[:, :3] * 2.0
        if self.fail == "short":
            rows = rows[:-1]
        return InvokeResult(True, rows, ms, ms, cold)

    def has_idle(self, model):
        return self.idle

    def cold_start_ms(self, model):
        return self.cold_ms


async def inline(fn, *args):
    """The runner the tests inject instead of asyncio.to_thread: run now, take the time it took."""
    res = fn(*args)
    await asyncio.sleep(res.duration_ms / 1000.0)
    return res


def sample(i: float) -> np.ndarray:
    return np.full((1, 4), float(i), np.float32)


async def client(b, i, at_s, slo_ms, out, model="m"):
    await asyncio.sleep(at_s)
    t = asyncio.get_running_loop().time()
    res = await b.invoke(model, sample(i), 30.0, slo_ms)
    out[i] = (t, asyncio.get_running_loop().time(), res)


async def warm_up(b, model="m"):
    """One request alone: the batcher learns the warm execution of one sample (15 ms here)."""
    res = await b.invoke(model, sample(-1), 30.0, 1e6)
    assert res.ok and res.shared_by == 1


def test_plain_configuration_is_one_invoke_per_request_unchanged():
    fake = FakeFunctions()

    async def go():
        b = FunctionBatcher(fake, run_blocking=inline)
        out = {}
        await asyncio.gather(*(client(b, i, 0.0, 200.0, out) for i in range(3)))
        return out
    out = run(go())
    assert [n for _, n in fake.calls] == [1, 1, 1] and all(t == 0.0 for t, _ in fake.calls)
    for i, (_, _, res) in out.items():
        assert res.ok and res.shared_by == 1 and res.duration_ms == 15.0 and res.billed_ms == 15.0
        np.testing.assert_array_equal(res.payload, [[2.0 * i] * 3])


def test_full_batch_goes_at_once_and_each_caller_gets_its_row():
    fake = FakeFunctions()

    async def go():
        b = FunctionBatcher(fake, run_blocking=inline)
        b.configure("m", [BatchConfig(batch_size=4, wait_ms=1000.0)])
        await warm_up(b)
        out = {}
        await asyncio.gather(*(client(b, i, 1.0, 10_000.0, out) for i in range(4)))
        return out
    out = run(go())
    assert fake.calls[1:] == [(pytest.approx(out[0][0]), 4)]
    for i, (t, done, res) in out.items():
        assert res.ok and res.shared_by == 4 and res.billed_ms == 30.0
        assert res.queue_ms == pytest.approx(0.0) and done - t == pytest.approx(0.030)
        np.testing.assert_array_equal(res.payload, [[2.0 * i] * 3])


def test_partial_batch_flushes_after_wait():
    fake = FakeFunctions()

    async def go():
        b = FunctionBatcher(fake, run_blocking=inline)
        b.configure("m", [BatchConfig(batch_size=8, wait_ms=50.0)])
        await warm_up(b)
        out = {}
        await asyncio.gather(client(b, 0, 1.0, 10_000.0, out), client(b, 1, 1.02, 10_000.0, out))
        assert b.queued("m") == 0
        waiting = asyncio.ensure_future(client(b, 2, 1.0, 10_000.0, out))
        await asyncio.sleep(1.01)
        assert b.queued("m") == 1 and b.queued("other") == 0
        await waiting
        return out
    out = run(go())
    assert fake.calls[1] == (pytest.approx(out[0][0] + 0.05), 2)  # arrivals count from the warm-up's end
    assert len(fake.calls) == 3 and fake.calls[2][1] == 1  # the lone third request, after its wait
    assert out[0][2].queue_ms == pytest.approx(50.0) and out[1][2].queue_ms == pytest.approx(30.0)


def test_tight_slo_flushes_early():
    """wait 1000 ms, but SLO 100 ms with a batch of 4 estimated at 4 x 15 = 60 ms: held 40 ms."""
    fake = FakeFunctions()

    async def go():
        b = FunctionBatcher(fake, run_blocking=inline)
        b.configure("m", [BatchConfig(batch_size=4, wait_ms=1000.0)])
        await warm_up(b)
        assert b.exec_ms("m", 4) == pytest.approx(60.0)
        out = {}
        await asyncio.gather(client(b, 0, 1.0, 100.0, out), client(b, 1, 1.01, 100.0, out))
        return out
    out = run(go())
    assert fake.calls[1:] == [(pytest.approx(out[0][0] + 0.04), 2)]
    assert all(done - t <= 0.100 + 1e-9 for t, done, _ in out.values())


def test_no_hold_while_a_cold_start_is_unknown_or_execution_unmeasured():
    fake = FakeFunctions(idle=False, cold_ms=None)

    async def go():
        b = FunctionBatcher(fake, run_blocking=inline)
        b.configure("m", [BatchConfig(batch_size=4, wait_ms=1000.0)])
        out = {}
        await asyncio.gather(*(client(b, i, 0.1 * i, math.inf, out) for i in range(3)))
    run(go())
    assert [n for _, n in fake.calls] == [1, 1, 1]
    assert [t for t, _ in fake.calls] == pytest.approx([0.0, 0.1, 0.2])


@pytest.mark.parametrize("fail", ["error", "raise", "short"])
def test_a_failed_batch_fails_every_caller(fail):
    fake = FakeFunctions()

    async def go():
        b = FunctionBatcher(fake, run_blocking=inline)
        b.configure("m", [BatchConfig(batch_size=3, wait_ms=100.0)])
        await warm_up(b)
        fake.fail = fail
        out = {}
        await asyncio.gather(*(client(b, i, 1.0, 10_000.0, out) for i in range(3)))
        return out
    out = run(go())
    assert len(fake.calls) == 2 and fake.calls[1][1] == 3
    assert all(not res.ok and res.payload is None and res.error.startswith("error") and res.shared_by == 3
               for _, _, res in out.values())


def test_reconfiguring_sends_the_queued_requests_at_once():
    fake = FakeFunctions()

    async def go():
        b = FunctionBatcher(fake, run_blocking=inline)
        b.configure("m", [BatchConfig(batch_size=8, wait_ms=500.0)])
        await warm_up(b)
        out = {}
        tasks = [asyncio.ensure_future(client(b, i, 1.0, 10_000.0, out)) for i in range(2)]

        async def replan():
            await asyncio.sleep(1.1)
            b.configure("m", [BatchConfig()])
        await asyncio.gather(*tasks, replan())
        return out
    out = run(go())
    assert fake.calls[1:] == [(pytest.approx(out[0][0] + 0.1), 2)] and all(r.ok for _, _, r in out.values())


def test_band_shares_fill_from_the_bottom():
    bands = [BatchConfig(1, 0.0, 0.0, 5.0), BatchConfig(4, 50.0, 5.0, math.inf)]
    assert band_shares(bands, 3.0).tolist() == [3.0, 0.0]
    assert band_shares(bands, 8.0).tolist() == [5.0, 3.0]


def test_requests_split_among_bands_in_proportion_to_the_rate():
    m = _Model([BatchConfig(4, 50.0, 5.0, math.inf), BatchConfig(1, 0.0, 0.0, 5.0)], window_s=2.0)
    assert m.configs[0].rate_lo_per_s == 0.0  # bottom band first whatever the order given
    low = [m.band(3.0) for _ in range(30)]
    high = [m.band(8.0) for _ in range(80)]
    assert set(low) == {0}
    assert high.count(0) == 50 and high.count(1) == 30  # 5 of every 8, spread, not in runs
    assert max(len(r) for r in "".join(map(str, high)).split("0")) == 1


def test_live_rate_routes_a_burst_to_the_top_band():
    """Bands [0, 5) unbatched and [5, inf) batched by 4: at 2 req/s nothing is batched; at 40
    req/s most requests ride the batched configuration."""
    fake = FakeFunctions()

    async def go():
        b = FunctionBatcher(fake, run_blocking=inline, window_s=1.0)
        b.configure("m", [BatchConfig(1, 0.0, 0.0, 5.0), BatchConfig(4, 100.0, 5.0, math.inf)])
        await warm_up(b)
        out = {}
        slow = [client(b, i, 1.0 + 0.5 * i, 10_000.0, out) for i in range(4)]
        fast = [client(b, 100 + i, 5.0 + 0.025 * i, 10_000.0, out) for i in range(80)]
        await asyncio.gather(*slow, *fast)
        return out
    out = run(go())
    assert all(out[i][2].shared_by == 1 for i in range(4))
    batched = sum(out[100 + i][2].shared_by > 1 for i in range(80))
    assert batched >= 50


@settings(max_examples=60, deadline=None)
@given(gaps_s=st.lists(st.floats(0.0, 0.15), min_size=1, max_size=30),
       slos_ms=st.lists(st.floats(20.0, 400.0), min_size=30, max_size=30),
       batch_size=st.integers(1, 8), wait_ms=st.floats(0.0, 300.0),
       cold=st.booleans())
def test_never_held_past_the_point_its_slo_can_still_be_met(gaps_s, slos_ms, batch_size, wait_ms, cold):
    """A request waits at most min(wait, SLO - exec(batch) - cold), with the estimates at its
    arrival (an upper bound of the real execution here: d(n) = 10 + 5n <= d(k) n / k for k <= n).
    So a request that waited at all meets its SLO, and so does every request whose SLO covers
    the first estimate of a full batch (estimates only tighten as batch sizes are measured)."""
    fake = FakeFunctions(idle=not cold, cold_ms=25.0)
    arrivals = np.cumsum(gaps_s) + 1.0

    async def go():
        b = FunctionBatcher(fake, run_blocking=inline)
        fake.idle, fake.cold_ms = True, 25.0
        b.configure("m", [BatchConfig(batch_size, wait_ms)])
        await warm_up(b)
        fake.idle = not cold
        est_ms = b.exec_ms("m", batch_size) + (25.0 if cold else 0.0)
        out = {}
        await asyncio.gather(*(client(b, i, float(a), slos_ms[i], out) for i, a in enumerate(arrivals)))
        return out, est_ms
    out, est_ms = run(go())
    assert sum(n for _, n in fake.calls) == len(arrivals) + 1
    for i, (t, done, res) in out.items():
        latency_ms = (done - t) * 1000.0
        assert res.ok and res.queue_ms <= wait_ms + 1e-6
        if res.queue_ms > 1e-6 or slos_ms[i] >= est_ms:
            assert latency_ms <= slos_ms[i] + 1e-6, (res, est_ms)


def test_slack_is_kept_for_the_path_around_the_invocation():
    """SLO 100 ms, slack 20 ms, a batch of 4 estimated at 60 ms: held 20 ms, not 40."""
    fake = FakeFunctions()

    async def go():
        b = FunctionBatcher(fake, run_blocking=inline, slack_ms=20.0)
        b.configure("m", [BatchConfig(batch_size=4, wait_ms=1000.0)])
        await warm_up(b)
        out = {}
        await client(b, 0, 1.0, 100.0, out)
        return out
    out = run(go())
    assert fake.calls[1:] == [(pytest.approx(out[0][0] + 0.02), 1)]


def test_execution_estimate_from_measured_batches():
    fake = FakeFunctions(base_ms=14.0, per_sample_ms=1.0)  # 15 ms at 1, 16 ms at 2, 22 ms at 8

    async def go():
        b = FunctionBatcher(fake, run_blocking=inline)
        assert b.exec_ms("m", 8) == math.inf  # nothing measured: no hold
        await b.invoke("m", sample(0), 30.0)
        assert b.exec_ms("m", 8) == pytest.approx(120.0)  # one size: at most 8 calls' worth
        await b.invoke("m", np.concatenate([sample(1), sample(2)]), 30.0)
        assert b.exec_ms("m", 8) == pytest.approx(22.0)  # affine through 1 and 2
        assert b.exec_ms("m", 1) == pytest.approx(15.0)
    run(go())


def test_configure_from_another_thread_runs_on_the_serving_loop():
    """The control loop's apply_control may run on a thread of its own: the change (and the
    flush of what was queued under the old configuration) happens on the event loop."""
    import threading

    fake = FakeFunctions()

    async def go():
        b = FunctionBatcher(fake, run_blocking=inline)
        b.configure("m", [BatchConfig(batch_size=8, wait_ms=500.0)])
        await warm_up(b)
        out = {}
        tasks = [asyncio.ensure_future(client(b, i, 1.0, 10_000.0, out)) for i in range(2)]
        await asyncio.sleep(1.1)
        t = threading.Thread(target=b.configure, args=("m", [BatchConfig()]))
        t.start()
        t.join()
        assert b.configs("m")[0].batch_size == 8  # not yet: queued for the loop
        await asyncio.gather(*tasks)
        assert b.configs("m") == (BatchConfig(),)
        return out
    out = run(go())
    assert fake.calls[1:] == [(pytest.approx(out[0][0] + 0.1), 2)]


def test_a_provider_exception_is_a_failed_result_unbatched_too():
    """The unbatched path (plain configuration, or a request of several rows) turns a provider
    exception into a failed result, as the batched path does, rather than raising it."""
    fake = FakeFunctions(fail="raise")

    async def go():
        b = FunctionBatcher(fake, run_blocking=inline)
        plain = await b.invoke("m", sample(1), 30.0, 1e6)
        b.configure("m", [BatchConfig(batch_size=3, wait_ms=100.0)])
        several = await b.invoke("m", np.concatenate([sample(1), sample(2)]), 30.0, 1e6)
        return plain, several
    for res in run(go()):
        assert not res.ok and res.payload is None and res.error == "error: OSError: pipe closed"
