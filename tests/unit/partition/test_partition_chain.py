"""Partitioned execution: partitions reassemble to exactly the whole model, the chain bills
every hop, retries or fails explicitly, and leaves nothing in the object store."""
import os

import numpy as np
import pytest

from controller.config import REPO_ROOT, FunctionPlatformConfig
from controller.layer_graph import load_layer_graph
from controller.ledger import Ledger, function_charge_usd
from procurement.partition_planner import MB, CostModel, PartitionLimits, estimate_partition
from procurement.providers.fake import FakeFunctionProvider
from serving.partition.executor import ChainExecutor, PartitionChainError, PartitionedDeployment
from serving.partition.graph import build_partition
from serving.partition.handler import PartitionHandler, PartitionRunner, function_name, parse_function_name
from serving.partition.store import LocalDirObjectStore

VARIANT = "squeezenet"
# squeezenet's largest border tensor is 1.4 MiB: a 1 MiB payload limit sends some through the store
SMALL_LIMIT = 1 * MB


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


def chain(runner, store, limit=SMALL_LIMIT, **kw):
    handler = PartitionHandler(store, runner, payload_limit_bytes=limit)
    provider = FakeFunctionProvider(handler)
    ledger = Ledger()
    return ChainExecutor(provider, store, FunctionPlatformConfig(), ledger, payload_limit_bytes=limit, **kw), \
        handler, provider, ledger


def test_function_names_round_trip():
    assert parse_function_name(function_name("digits-small", 3, 7)) == ("digits-small", 3, 7)
    with pytest.raises(ValueError):
        parse_function_name("squeezenet")
    with pytest.raises(ValueError):
        parse_function_name("resnet50-part-a-b")


@pytest.mark.parametrize("cuts", [(1,), (4, 8), (2, 5, 9), tuple(range(1, 10))])
def test_partitions_reassemble_exactly(runner, batch, whole_output, cuts):
    import mxnet as mx
    blocks = runner.blocks(VARIANT)
    bounds = (0,) + cuts + (len(blocks),)
    y = mx.nd.array(batch)
    for s, e in zip(bounds, bounds[1:]):
        y = build_partition(blocks, s, e)(y)
    np.testing.assert_allclose(y.asnumpy(), whole_output, rtol=0, atol=0)


def test_chain_output_billing_and_cleanup(runner, batch, whole_output, tmp_path):
    store = LocalDirObjectStore(str(tmp_path))
    ex, _, _, ledger = chain(runner, store)
    dep = PartitionedDeployment(VARIANT, ((0, 2, 1024), (2, 5, 512), (5, 10, 2048)))
    ex.deploy(dep)
    res = ex.infer(dep, batch, request_id="r1")
    np.testing.assert_allclose(res.output, whole_output, rtol=1e-6, atol=1e-6)
    # block 1's output (1.4 MiB) exceeds the 1 MiB payload: it went through the store
    assert [h.output_via_store for h in res.hops] == [True, False, False]
    assert store.list_keys() == []
    expected = sum(function_charge_usd(np.ceil(h.duration_ms), h.memory_mb, FunctionPlatformConfig())
                   for h in res.hops) + 0.005 / 1000 + 0.0004 / 1000
    assert res.cost_usd == pytest.approx(expected) and ledger.function_usd == pytest.approx(expected)


def test_planner_and_executor_agree_on_store_hops(runner, batch, tmp_path, catalog):
    graph = load_layer_graph(os.path.join(REPO_ROOT, "configs", "catalog", "model_graphs"), VARIANT,
                             catalog.model(VARIANT).cold_start_ms)
    limits = PartitionLimits(payload_limit_bytes=SMALL_LIMIT)
    store = LocalDirObjectStore(str(tmp_path))
    ex, _, _, _ = chain(runner, store)
    bounds = (0, 1, 3, 6, 10)
    dep = PartitionedDeployment(VARIANT, tuple((s, e, 1024) for s, e in zip(bounds, bounds[1:])))
    ex.deploy(dep)
    res = ex.infer(dep, batch)
    predicted = [estimate_partition(graph, s, e, 1024, limits, CostModel()).out_via_store
                 for s, e, _ in dep.partitions]
    assert [h.output_via_store for h in res.hops] == predicted


def test_failed_hop_after_storing_is_retried_and_cleaned(runner, batch, whole_output, tmp_path):
    store = LocalDirObjectStore(str(tmp_path))
    ex, handler, provider, ledger = chain(runner, store, max_attempts=2)
    dep = PartitionedDeployment(VARIANT, ((0, 2, 1024), (2, 10, 1024)))
    ex.deploy(dep)
    handler.fail_after_output = 1  # hop 0 writes its output to the store, then fails
    res = ex.infer(dep, batch)
    np.testing.assert_allclose(res.output, whole_output, rtol=1e-6, atol=1e-6)
    assert res.hops[0].attempts == 2 and store.list_keys() == []
    assert ledger.function_usd == pytest.approx(res.cost_usd)  # the failed attempt is billed too


def test_persistent_failure_raises_and_leaves_nothing(runner, batch, tmp_path):
    store = LocalDirObjectStore(str(tmp_path))
    ex, handler, provider, ledger = chain(runner, store, max_attempts=2)
    dep = PartitionedDeployment(VARIANT, ((0, 2, 1024), (2, 10, 1024)))
    ex.deploy(dep)
    # hop 0 succeeds (output stored), hop 1 fails twice at the provider
    real_invoke = provider.invoke

    def invoke(model, payload, timeout_s):
        if model.endswith("-part-2-10"):
            provider.fail_next = 1
        return real_invoke(model, payload, timeout_s)
    provider.invoke = invoke
    with pytest.raises(PartitionChainError, match=r"hop 1 .* failed after 2 attempts"):
        ex.infer(dep, batch)
    assert store.list_keys() == []
    assert ledger.function_usd > 0  # hop 0 and both failed attempts were billed


def test_oversized_request_payload_is_an_explicit_error(runner, tmp_path):
    store = LocalDirObjectStore(str(tmp_path))
    ex, _, _, _ = chain(runner, store, limit=64 * 1024)  # smaller than the 0.6 MB input itself
    dep = PartitionedDeployment(VARIANT, ((0, 10, 1024),))
    ex.deploy(dep)
    with pytest.raises(PartitionChainError, match="exceeds"):
        ex.infer(dep, np.zeros((1, 3, 224, 224), np.float32))
    assert store.list_keys() == []
