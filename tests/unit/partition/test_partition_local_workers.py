"""A partitioned variant served as a chain of real local function worker processes
(`LocalFunctionProvider` + serving/function_worker.py): each worker loads only its own blocks'
weights, the chain's output is exactly the whole model's, a failed hop is retried or fails
the request explicitly, and nothing is left in the object store either way."""
import os

import numpy as np
import pytest

from procurement.partition_planner import MB
from procurement.providers.local import LocalFunctionProvider
from serving.partition.executor import ChainExecutor, PartitionChainError, PartitionedDeployment
from serving.partition.graph import param_bytes
from serving.partition.handler import PartitionRunner
from serving.partition.store import LocalDirObjectStore
from serving.partition.weights import export_partition_weights, load_partition, partition_weights_path

VARIANT = "squeezenet"
SMALL_LIMIT = 1 * MB  # block 1's output (1.4 MiB) goes through the store


@pytest.fixture(scope="module")
def runner():
    return PartitionRunner()


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)


@pytest.fixture(scope="module")
def whole_output(runner, batch):
    import mxnet as mx
    return runner.whole(VARIANT)(mx.nd.array(batch)).asnumpy()


def local_chain(tmp_path, bounds, env=None):
    store = LocalDirObjectStore(str(tmp_path / "store"))
    weights_dir = str(tmp_path / "weights")
    export_partition_weights(VARIANT, list(zip(bounds, bounds[1:])), weights_dir)
    provider = LocalFunctionProvider(keep_alive_s=600.0, concurrency_limit=4, worker_env={
        "HYBRIDSERVE_PARTITION_STORE": store.root, "HYBRIDSERVE_PARTITION_WEIGHTS": weights_dir, **(env or {})})
    return store, provider


def test_partition_weights_hold_only_their_blocks(runner, batch, tmp_path):
    import mxnet as mx
    blocks = runner.blocks(VARIANT)
    (path,) = export_partition_weights(VARIANT, [(2, 5)], str(tmp_path))
    assert path == partition_weights_path(str(tmp_path), VARIANT, 2, 5)
    part = load_partition(VARIANT, 2, 5, path)
    assert sum(p.data().size * 4 for p in part.collect_params().values()) == sum(param_bytes(b) for b in blocks[2:5])
    x = runner.run(VARIANT, 0, 2, batch)
    np.testing.assert_array_equal(part(mx.nd.array(x)).asnumpy(), runner.run(VARIANT, 2, 5, x))
    with pytest.raises(FileNotFoundError):
        load_partition(VARIANT, 0, 2, str(tmp_path / "missing.params"))


def test_worker_protocol_serves_a_partition_in_process(runner, batch, tmp_path, monkeypatch):
    """The worker's partition mode on in-memory streams (the fast form of the tests below)."""
    import io

    from procurement.providers.worker_protocol import read_message, write_message
    from serving.function_worker import serve
    from serving.partition.handler import inline_tensor, read_tensor
    store = LocalDirObjectStore(str(tmp_path / "store"))
    export_partition_weights(VARIANT, [(0, 2)], str(tmp_path / "weights"))
    monkeypatch.setenv("HYBRIDSERVE_PARTITION_STORE", store.root)
    monkeypatch.setenv("HYBRIDSERVE_PARTITION_WEIGHTS", str(tmp_path / "weights"))
    stdin, stdout = io.BytesIO(), io.BytesIO()
    request = {"request_id": "r", "hop": 0, "attempt": 0, "store_prefix": "p/", "payload_limit_bytes": SMALL_LIMIT,
               "tensor": inline_tensor(batch)}
    write_message(stdin, request)
    write_message(stdin, {**request, "tensor": {"key": "p/r/missing.npy"}})
    stdin.seek(0)
    assert serve("squeezenet-part-0-2", "mxnet", stdin, stdout) == 0  # EOF ends it
    stdout.seek(0)
    status, response, compute_ms, load_ms = read_message(stdout)
    assert status == "ok" and load_ms > 0 and response["load_ms"] == load_ms and compute_ms > 0
    assert response["tensor"] == {"key": "p/r/hop0-a0.npy"}  # 1.4 MiB: over the driver's limit
    np.testing.assert_array_equal(read_tensor(response["tensor"], store), runner.run(VARIANT, 0, 2, batch))
    assert response["param_bytes"] == sum(param_bytes(b) for b in runner.blocks(VARIANT)[0:2])
    status, message = read_message(stdout)
    assert status == "error" and "KeyError" in message  # a bad request: an error reply, the worker lives on


@pytest.mark.slow
def test_chain_of_worker_processes_reassembles_retries_and_cleans(runner, batch, whole_output, tmp_path):
    bounds = (0, 2, 10)
    # Every worker fails its first request after writing its output (to the store when it goes
    # there): a failed hop that left an object behind.
    store, provider = local_chain(tmp_path, bounds, {"HYBRIDSERVE_PARTITION_FAIL_AFTER_OUTPUT": "1"})
    dep = PartitionedDeployment(VARIANT, ((0, 2, 1769), (2, 10, 1769)))
    try:
        strict = ChainExecutor(provider, store, payload_limit_bytes=SMALL_LIMIT, max_attempts=1, timeout_s=120.0)
        strict.deploy(dep)
        with pytest.raises(PartitionChainError, match=r"hop 0 .* failed after 1 attempts.*injected"):
            strict.infer(dep, batch)
        assert store.list_keys() == []

        ex = ChainExecutor(provider, store, payload_limit_bytes=SMALL_LIMIT, max_attempts=2, timeout_s=120.0)
        res = ex.infer(dep, batch)
        np.testing.assert_array_equal(res.output, whole_output)
        assert store.list_keys() == []
        assert [h.attempts for h in res.hops] == [1, 2]  # hop 1's worker failed once, then served
        assert [h.output_via_store for h in res.hops] == [True, False]
        # Each worker holds its own blocks' weights only.
        blocks = runner.blocks(VARIANT)
        assert [h.param_bytes for h in res.hops] == [sum(param_bytes(b) for b in blocks[s:e])
                                                     for s, e in zip(bounds, bounds[1:])]
        stats = provider.stats()
        assert {n: s["memory_mb"] for n, s in stats.items()} == {"squeezenet-part-0-2": 1769,
                                                                 "squeezenet-part-2-10": 1769}
        # One process per partition, started cold once (a real cold start) and reused.
        assert all(s["instances"] == 1 and s["cold_starts"] == 1 for s in stats.values())
        # Warm now: a second request is served by the same processes, no cold start.
        again = ex.infer(dep, batch)
        np.testing.assert_array_equal(again.output, whole_output)
        assert not any(h.cold_start for h in again.hops) and store.list_keys() == []
    finally:
        provider.close()


@pytest.mark.slow
def test_three_partitions_under_memory_limits(runner, batch, whole_output, tmp_path):
    """The planner-sized form: three workers at small memories (cgroup CPU and memory limits)."""
    bounds = (0, 2, 5, 10)
    store, provider = local_chain(tmp_path, bounds)
    dep = PartitionedDeployment(VARIANT, ((0, 2, 512), (2, 5, 512), (5, 10, 1024)))
    try:
        ex = ChainExecutor(provider, store, payload_limit_bytes=SMALL_LIMIT, timeout_s=300.0)
        ex.deploy(dep)
        for _ in range(2):
            res = ex.infer(dep, batch)
            np.testing.assert_array_equal(res.output, whole_output)
            assert store.list_keys() == []
        assert os.listdir(store.root) == []
    finally:
        provider.close()
