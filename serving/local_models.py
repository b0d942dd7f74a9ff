"""The head's standing models run inside the router process (no Ray hop), like Triton's
in-process backends.

With `serving.head_in_process` (the default) the router does not send a request for a variant's
head target to a ModelServer replica through its DeploymentHandle: it runs the model itself.
Measured with py-spy on the live router (bench/live_router_overhead.py), the handle call was
most of the router path's extra CPU: Serve's request router thread, the actor call and its
serialization in the router, then the model replica's own Serve machinery (replica wrapper,
`@serve.batch` with its Ray metrics) around a forward pass of well under a millisecond. Replicas
on procured VMs are still reached through their handles (a real network hop in the cloud).

- `AsyncBatcher`: `@serve.batch`'s rule without Ray. Callers `await submit(item)`; a worker
  takes the oldest queued item, waits until `max_batch_size` items are queued or
  `batch_wait_s` has passed since that item arrived (items that queued while the previous batch
  ran may be due at once), runs `run(items)` -> one result per item, in order, and hands each
  caller its result; an exception from `run` is raised to every caller of that batch. Up to
  `max_concurrent` batches run at once.
- `LocalModel`: one variant's head replicas: the runtime is loaded on first use (or in the
  background at start for a standing variant), batches run in a thread of its own so the
  router's event loop stays free, `replicas` threads at most. It is called like the variant's
  DeploymentHandle (`await model.infer.remote(batch)` -> (probabilities, batch ms, cold start)),
  so the router's target choice, accounting and retry code treat both targets alike. A variant
  scaled from zero (`min_replicas: 0`) reports its first batch after a load as a cold start,
  and is unloaded after `idle_unload_s` without requests (`reap`), as Serve scales it to zero.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, Awaitable, Callable, Sequence

import numpy as np


class AsyncBatcher:
    """Per-caller items in, batches out; use from one event loop (the first `submit`'s)."""

    def __init__(self, run: Callable[[list], Awaitable[Sequence]], max_batch_size: int, batch_wait_s: float,
                 max_concurrent: int = 1):
        if max_batch_size < 1 or batch_wait_s < 0 or max_concurrent < 1:
            raise ValueError(f"bad batcher: max_batch_size {max_batch_size}, batch_wait_s {batch_wait_s}, "
                             f"max_concurrent {max_concurrent}")
        self._run = run
        self.max_batch_size = int(max_batch_size)
        self.batch_wait_s = float(batch_wait_s)
        self.max_concurrent = int(max_concurrent)
        self._queue: deque[tuple[Any, asyncio.Future, float]] = deque()  # (item, future, arrival time)
        self._wake: asyncio.Future | None = None  # idle workers wait on it; a new item sets it
        self._workers: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the workers' loop
        self.batches = 0  # batches run so far (tests, status)

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first call (or a new loop: the old one's workers are gone)
            self._loop, self._wake = loop, None
            self._workers = [loop.create_task(self._work()) for _ in range(self.max_concurrent)]
        fut = loop.create_future()
        self._queue.append((item, fut, loop.time()))
        self._notify()
        return await fut

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        self._wake = None

    async def _sleep(self, loop: asyncio.AbstractEventLoop, until: float | None) -> None:
        """Until the next item arrives (or `until`, on the loop's clock, whichever is first)."""
        if self._wake is None:
            self._wake = loop.create_future()
        wake = self._wake
        timer = loop.call_at(until, self._notify) if until is not None else None
        try:
            await asyncio.shield(wake)  # shared by the idle workers: one's cancel must not cancel it
        finally:
            if timer is not None:
                timer.cancel()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                await self._sleep(loop, None)
                continue
            due = self._queue[0][2] + self.batch_wait_s
            if len(self._queue) < self.max_batch_size and loop.time() < due:
                await self._sleep(loop, due)
                continue
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch_size))]
            await self._run_batch(batch)

    async def _run_batch(self, batch: list) -> None:
        self.batches += 1
        try:
            results = await self._run([item for item, _, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
        except Exception as e:  # every caller of the batch gets it; the worker goes on
            for _, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        for (_, fut, _), res in zip(batch, results):
            if not fut.done():  # else the caller went away (cancelled)
                fut.set_result(res)

    def close(self) -> None:
        """Stop the workers (from any thread: Serve may end a replica from another one)."""
        loop, workers = self._loop, self._workers
        self._workers, self._loop = [], None
        if loop is not None and not loop.is_closed():
            for w in workers:
                loop.call_soon_threadsafe(w.cancel)


class LocalModel:
    """One variant's head replicas inside the router: `await infer.remote(batch)` ->
    (probabilities N×classes, batch compute ms, cold start), as ModelServer.infer returns."""

    def __init__(self, variant: str, runtime: str, max_batch_size: int, batch_wait_s: float, replicas: int = 1,
                 lazy: bool = False, load: Callable[..., Any] | None = None):
        self.variant, self.runtime, self.lazy = variant, runtime, lazy
        self.replicas = max(1, replicas)  # batches that run at once (the router's target choice reads it)
        self._load_fn = load
        self._model = None
        self._lock = threading.Lock()  # one load at a time; reap vs. a batch picking up the model
        self._cold_pending = lazy
        self.last_used_s = time.monotonic()
        self._executor = ThreadPoolExecutor(max_workers=self.replicas, thread_name_prefix=f"model-{variant}")
        self._batcher = AsyncBatcher(self._forward, max_batch_size, batch_wait_s, max_concurrent=self.replicas)
        self.infer = SimpleNamespace(remote=self._submit)  # the DeploymentHandle call shape

    def _submit(self, batch, batch_size: int | None = None):
        """Queue one caller's batch; `batch_size` (the plan's, Route.vm_batch_size) becomes the
        batcher's size first, as ModelServer.infer applies it on a VM."""
        if batch_size is not None and int(batch_size) >= 1:
            self._batcher.max_batch_size = int(batch_size)
        return self._batcher.submit(batch)

    def _get(self):
        with self._lock:
            return self._loaded_locked()

    def _loaded_locked(self):
        if self._model is None:
            load = self._load_fn
            if load is None:
                from serving.runtimes import load_model as load
            self._model = load(self.variant, runtime=self.runtime)
        return self._model

    def _take(self) -> tuple[Any, bool]:
        """The model (loaded if need be) and whether this batch is the cold start, read under
        one lock hold: a `reap` between the two would mark a warm batch as cold."""
        with self._lock:
            model = self._loaded_locked()
            cold, self._cold_pending = self._cold_pending, False
            return model, cold

    def preload(self) -> None:
        """Load now, in the background (a standing variant's first request must not pay it)."""
        self._executor.submit(self._get)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _predict(self, x: np.ndarray) -> tuple[np.ndarray, float, bool]:
        model, cold = self._take()  # a load just now (scale from zero) makes this batch the cold start
        t0 = time.perf_counter()
        probs = model.predict(x)
        return probs, (time.perf_counter() - t0) * 1000.0, cold

    async def _forward(self, batches: list[np.ndarray]) -> list[tuple[np.ndarray, float, bool]]:
        self.last_used_s = time.monotonic()
        x = batches[0] if len(batches) == 1 else np.concatenate(batches, axis=0)
        probs, batch_ms, cold = await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, x)
        self.last_used_s = time.monotonic()
        out, start = [], 0
        for b in batches:
            out.append((probs[start:start + len(b)], batch_ms, cold))
            start += len(b)
        return out

    def reap(self, idle_unload_s: float, now_s: float | None = None) -> bool:
        """Unload a variant scaled from zero after `idle_unload_s` without requests (its next
        batch is a cold start again); True if it was unloaded. Standing variants stay loaded."""
        now_s = time.monotonic() if now_s is None else now_s
        if not self.lazy or now_s - self.last_used_s < idle_unload_s:
            return False
        with self._lock:
            if self._model is None:
                return False
            self._model, self._cold_pending = None, True
        return True

    def close(self) -> None:
        self._batcher.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def head_models(variants: Sequence[str], settings, load: Callable[..., Any] | None = None) -> dict[str, LocalModel]:
    """The head's replicas of each variant as LocalModels (`settings`: a ServingConfig), with the
    batching of the variant's ModelServer deployment; standing variants start loading now.
    Concurrency: the variant's replica count (`max_replicas`, as Serve would scale it)."""
    out = {}
    for v in variants:
        opts = settings.options_for(v)
        lazy = opts.min_replicas == 0
        out[v] = LocalModel(v, opts.runtime, opts.max_batch_size, opts.batch_wait_timeout_s,
                            replicas=max(opts.min_replicas, opts.max_replicas), lazy=lazy, load=load)
        if not lazy:
            out[v].preload()
    return out
