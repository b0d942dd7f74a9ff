"""S3ObjectStore (procurement/providers/aws.py) against the contract suite's moto server, and a
partitioned chain whose large tensors go through it."""
import importlib.util
import os
import sys

import numpy as np
import pytest

from controller.config import REPO_ROOT

_spec = importlib.util.spec_from_file_location("contract_conftest", os.path.join(REPO_ROOT, "tests", "contract",
                                                                               "conftest.py"))
_contract = sys.modules.setdefault("contract_conftest", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_contract)  # its dataclasses need the module registered first


@pytest.fixture(scope="module")
def moto_s3():
    saved = {k: os.environ.get(k) for k in _contract.FAKE_ENV}
    os.environ.update(_contract.FAKE_ENV)
    server = _contract.start_moto_server()
    try:
        yield server.endpoint_url
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def s3_store(moto_s3, request):
    from procurement.providers.aws_s3 import S3ObjectStore
    return S3ObjectStore(f"hs-tensors-{request.node.name.lower().replace('_', '-')[:40]}", endpoint_url=moto_s3,
                         key_prefix="t/", create_bucket=True)


def test_s3_store_put_get_list_delete(s3_store):
    s3_store.put("p/r1/hop0-a0.npy", b"abc")
    s3_store.put("p/r1/hop1-a0.npy", b"def")
    s3_store.put("p/r2/hop0-a0.npy", b"ghi")
    assert s3_store.get("p/r1/hop1-a0.npy") == b"def"
    assert s3_store.list_keys("p/r1/") == ["p/r1/hop0-a0.npy", "p/r1/hop1-a0.npy"]
    assert s3_store.delete_prefix("p/r1/") == 2
    assert s3_store.list_keys() == ["p/r2/hop0-a0.npy"]
    with pytest.raises(KeyError):
        s3_store.get("p/r1/hop0-a0.npy")


def test_chain_through_s3_leaves_nothing(s3_store):
    from controller.ledger import Ledger
    from procurement.partition_planner import MB
    from procurement.providers.fake import FakeFunctionProvider
    from serving.partition.executor import ChainExecutor, PartitionedDeployment
    from serving.partition.handler import PartitionHandler, PartitionRunner

    runner = PartitionRunner()
    batch = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    handler = PartitionHandler(s3_store, runner, payload_limit_bytes=1 * MB)
    ex = ChainExecutor(FakeFunctionProvider(handler), s3_store, ledger=Ledger(), payload_limit_bytes=1 * MB)
    dep = PartitionedDeployment("squeezenet", ((0, 2, 1024), (2, 10, 1024)))
    ex.deploy(dep)
    res = ex.infer(dep, batch)
    import mxnet as mx
    np.testing.assert_allclose(res.output, runner.whole("squeezenet")(mx.nd.array(batch)).asnumpy(),
                               rtol=1e-6, atol=1e-6)
    assert res.hops[0].output_via_store and s3_store.list_keys() == []
