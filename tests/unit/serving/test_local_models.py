"""serving.local_models: the per-variant batcher and the head's models run inside the router."""
import asyncio
import time

import numpy as np
import pytest

from serving.local_models import AsyncBatcher, LocalModel, head_models
from serving.settings import ServingConfig


def _recording_run(sizes, delay_s=0.0):
    async def run(items):
        sizes.append(len(items))
        if delay_s:
            await asyncio.sleep(delay_s)
        return [10 * i for i in items]
    return run


def test_batches_up_to_max_size_and_answers_each_caller_its_own_result():
    sizes = []
    b = AsyncBatcher(_recording_run(sizes), max_batch_size=2, batch_wait_s=0.05)

    async def go():
        return await asyncio.gather(*(b.submit(i) for i in range(5)))
    assert asyncio.run(go()) == [0, 10, 20, 30, 40]
    assert sizes == [2, 2, 1]  # the last one alone, after its wait


def test_a_lone_item_is_flushed_after_the_wait():
    sizes = []
    b = AsyncBatcher(_recording_run(sizes), max_batch_size=8, batch_wait_s=0.05)

    async def go():
        t0 = time.perf_counter()
        out = await b.submit(7)
        return out, time.perf_counter() - t0
    out, took_s = asyncio.run(go())
    assert out == 70 and sizes == [1]
    assert 0.04 <= took_s < 2.0  # waited for company (loop timers may fire ~1 ms early), then went


def test_a_full_batch_goes_without_waiting():
    sizes = []
    b = AsyncBatcher(_recording_run(sizes), max_batch_size=3, batch_wait_s=30.0)

    async def go():
        return await asyncio.wait_for(asyncio.gather(*(b.submit(i) for i in range(3))), timeout=5)
    assert asyncio.run(go()) == [0, 10, 20] and sizes == [3]


def test_items_queued_while_a_batch_runs_form_the_next_batch():
    sizes = []
    b = AsyncBatcher(_recording_run(sizes, delay_s=0.1), max_batch_size=8, batch_wait_s=0.0)

    async def go():
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0.02)  # the first batch (of 1) is running now
        rest = [asyncio.ensure_future(b.submit(i)) for i in (1, 2, 3)]
        return await asyncio.gather(first, *rest)
    assert asyncio.run(go()) == [0, 10, 20, 30]
    assert sizes == [1, 3]


def test_an_error_reaches_every_caller_of_the_batch_and_the_batcher_goes_on():
    async def run(items):
        if "bad" in items:
            raise ValueError("model exploded")
        return items

    b = AsyncBatcher(run, max_batch_size=4, batch_wait_s=0.05)

    async def go():
        res = await asyncio.gather(*(b.submit(x) for x in ("a", "bad", "c")), return_exceptions=True)
        return res, await b.submit("after")
    res, after = asyncio.run(go())
    assert all(isinstance(r, ValueError) and "exploded" in str(r) for r in res)
    assert after == "after"


def test_a_batch_function_that_loses_results_fails_its_callers():
    async def run(items):
        return items[:-1]

    b = AsyncBatcher(run, max_batch_size=2, batch_wait_s=0.01)

    async def go():
        return await asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "1 results for 2" in str(r) for r in asyncio.run(go()))


def test_max_concurrent_batches_run_at_once():
    running, peak = [0], [0]

    async def run(items):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.05)
        running[0] -= 1
        return items

    b = AsyncBatcher(run, max_batch_size=1, batch_wait_s=0.0, max_concurrent=2)

    async def go():
        return await asyncio.gather(*(b.submit(i) for i in range(4)))
    assert asyncio.run(go()) == [0, 1, 2, 3] and peak[0] == 2


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        AsyncBatcher(_recording_run([]), max_batch_size=0, batch_wait_s=0.0)


class FakeModel:
    """Implements the runtime's `predict`: row i of the output is (first input value, batch size)."""

    def __init__(self):
        self.batch_sizes = []

    def predict(self, x):
        self.batch_sizes.append(len(x))
        flat = x.reshape(len(x), -1)
        return np.stack([flat[:, 0], np.full(len(x), len(x), np.float32)], axis=1)


class FakeLoader:
    def __init__(self):
        self.loads = []
        self.models = []

    def __call__(self, variant, runtime):
        self.loads.append((variant, runtime))
        self.models.append(FakeModel())
        return self.models[-1]


def _batch(value, n=1):
    return np.full((n, 1, 8, 8), value, np.float32)


def test_local_model_batches_callers_and_splits_the_rows_back():
    loader = FakeLoader()
    m = LocalModel("digits-small", "mxnet", max_batch_size=8, batch_wait_s=0.05, load=loader)

    async def go():
        return await asyncio.gather(m.infer.remote(_batch(1.0)), m.infer.remote(_batch(2.0, n=2)))
    (p1, ms1, cold1), (p2, ms2, cold2) = asyncio.run(go())
    m.close()
    assert loader.loads == [("digits-small", "mxnet")] and loader.models[0].batch_sizes == [3]
    assert p1.tolist() == [[1.0, 3.0]] and p2.tolist() == [[2.0, 3.0], [2.0, 3.0]]
    assert ms1 == ms2 >= 0.0 and cold1 is cold2 is False  # a standing variant never reports a cold start


def test_a_variant_scaled_from_zero_is_cold_once_then_unloaded_when_idle():
    loader = FakeLoader()
    m = LocalModel("resnet50", "mxnet", max_batch_size=4, batch_wait_s=0.0, lazy=True, load=loader)

    async def one():
        return (await m.infer.remote(_batch(0.5)))[2]
    assert not m.loaded
    assert asyncio.run(one()) is True and asyncio.run(one()) is False
    assert not m.reap(idle_unload_s=60.0)  # used just now
    assert m.reap(idle_unload_s=60.0, now_s=m.last_used_s + 61.0) and not m.loaded
    assert asyncio.run(one()) is True and len(loader.loads) == 2
    m.close()


class ReapAfterFirstRelease:
    """A threading.Lock that calls `hook` once, right after its first release: a `reap` from
    another thread landing between two lock holds of one batch."""

    def __init__(self):
        import threading

        self._lock, self.hook = threading.Lock(), None

    def __enter__(self):
        self._lock.acquire()

    def __exit__(self, *exc):
        self._lock.release()
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()


def test_a_reap_during_a_warm_batch_does_not_make_it_cold():
    loader = FakeLoader()
    m = LocalModel("resnet50", "mxnet", max_batch_size=4, batch_wait_s=0.0, lazy=True, load=loader)

    async def one():
        return (await m.infer.remote(_batch(0.5)))[2]
    assert asyncio.run(one()) is True  # the load: the cold start
    m._lock = ReapAfterFirstRelease()
    reaped = []
    m._lock.hook = lambda: reaped.append(m.reap(0.0, now_s=m.last_used_s + 1e6))
    # The model was loaded when this batch took it: warm, though a reap unloaded it meanwhile.
    assert asyncio.run(one()) is False and reaped == [True]
    assert asyncio.run(one()) is True and len(loader.loads) == 2  # the next one loads again: cold
    m.close()


def test_a_standing_variant_is_never_unloaded():
    m = LocalModel("digits-small", "mxnet", max_batch_size=4, batch_wait_s=0.0, load=FakeLoader())
    m.preload()
    deadline = time.monotonic() + 5
    while not m.loaded and time.monotonic() < deadline:
        time.sleep(0.01)
    assert m.loaded and not m.reap(0.0, now_s=m.last_used_s + 1e6) and m.loaded
    m.close()


def test_a_load_error_reaches_the_caller():
    def load(variant, runtime):
        raise FileNotFoundError("no weights")

    m = LocalModel("resnet50", "mxnet", max_batch_size=4, batch_wait_s=0.0, lazy=True, load=load)
    with pytest.raises(FileNotFoundError, match="no weights"):
        asyncio.run(m.infer.remote(_batch(0.0)))
    m.close()


def test_head_models_follow_the_variant_options():
    loader = FakeLoader()
    settings = ServingConfig(variants={"resnet50": {"min_replicas": 0, "max_replicas": 2, "max_batch_size": 4}},
                             digits_min_replicas=1)
    models = head_models(["digits-small", "resnet50"], settings, load=loader)
    small, resnet = models["digits-small"], models["resnet50"]
    assert not small.lazy and resnet.lazy and not resnet.loaded
    assert resnet._batcher.max_batch_size == 4 and resnet._batcher.max_concurrent == 2 and resnet.replicas == 2
    deadline = time.monotonic() + 5  # the standing variant loads in the background
    while not small.loaded and time.monotonic() < deadline:
        time.sleep(0.01)
    assert small.loaded and [v for v, _ in loader.loads] == ["digits-small"]
    for m in models.values():
        m.close()


def test_the_switch_defaults_on():
    assert ServingConfig().head_in_process is True
    assert ServingConfig(head_in_process=False).head_in_process is False


def test_build_app_binds_model_deployments_only_for_the_handle_path():
    from serving.deployments import build_app
    from serving.router import App

    apps = [App("digits", 200, 0.85, ("digits-small", "digits-large"))]
    accuracy = {"digits-small": 0.9, "digits-large": 0.98}
    inproc = build_app(apps, accuracy, ServingConfig())._bound_deployment
    assert inproc.init_args[3] == {}  # no ModelServer on the head: the router runs the models
    handle = build_app(apps, accuracy, ServingConfig(head_in_process=False))._bound_deployment
    bound = {v: app._bound_deployment for v, app in handle.init_args[3].items()}
    assert {v: d.name for v, d in bound.items()} == {"digits-small": "model-digits-small",
                                                      "digits-large": "model-digits-large"}
