"""KServe v2 gRPC against the live system with the stock Triton client (tritonclient.grpc):
health, metadata, infer on an app and on a variant, and errors as gRPC status codes."""
import numpy as np
import pytest

from serving import digits

pytestmark = pytest.mark.live
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

VARIANTS = {"digits-small", "digits-medium", "digits-large"}


@pytest.fixture(scope="module")
def client(live):
    return grpcclient.InferenceServerClient(live.grpc_target)


def _input(x):
    inp = grpcclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x.astype(np.float32))
    return inp


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("digits-small")
    meta = client.get_server_metadata()
    assert meta.name == "hybridserve" and "binary_tensor_data" in meta.extensions
    model = client.get_model_metadata("digits")
    assert model.name == "digits" and {i.name for i in model.inputs} == {"image", "input"}


def test_infer_app_and_variant(client):
    x, y = digits.test_samples()
    result = client.infer("digits", [_input(x[:4])], request_id="g-1",
                          outputs=[grpcclient.InferRequestedOutput("class_ids")])
    resp = result.get_response()
    assert resp.id == "g-1" and resp.parameters["variant"].string_param in VARIANTS
    assert result.as_numpy("class_ids").shape == (4, 5)
    result = client.infer("digits-large", [_input(x[:32])])
    top1 = result.as_numpy("class_ids")[:, 0]
    assert (top1 == y[:32]).mean() >= 0.85
    labels = result.as_numpy("labels")
    assert labels.shape == (32, 5) and labels[0, 0].decode() in digits.LABELS


def test_errors_are_status_codes(client):
    x, _ = digits.test_samples()
    with pytest.raises(InferenceServerException) as e:
        client.infer("no-such-model", [_input(x[:1])])
    assert e.value.status() == "StatusCode.NOT_FOUND" and "no-such-model" in e.value.message()
    bad = grpcclient.InferInput("input", [1, 1, 8, 7], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 1, 8, 7), np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("digits-small", [bad])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "inputs[0].shape" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        client.infer("digits", [_input(x[:1])], parameters={"min_accuracy": 0.999})
    assert e.value.status() == "StatusCode.FAILED_PRECONDITION"
    assert client.infer("digits", [_input(x[:1])]).as_numpy("class_ids").shape == (1, 5)  # still serving
