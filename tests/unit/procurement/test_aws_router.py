"""The router's Lambda backend (procurement/providers/aws_router.py) over the in-memory function
provider whose handler is the real Lambda handler (serving/lambda_handler.py) with a tiny model:
the batch goes out as the handler's event and comes back as its probabilities; replies without
them, the concurrency cap and the payload limit fail softly; warm environments are estimated as
Lambda keeps them. The factory (serving/function_fleet.py) picks local or aws from the config's
provider. No boto3, no network."""
from __future__ import annotations

import numpy as np
import pytest

from controller.config import ConfigError
from procurement.providers.aws_router import AwsRouterFunctions, decode_probabilities, encode_batch
from procurement.providers.fake import FakeFunctionProvider
from serving import lambda_handler
from serving.runtimes.model import LoadedModel


class Clock:
    def __init__(self):
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _tiny(variant: str) -> LoadedModel:
    """1×2×2 inputs, 3 classes: logits = 10 × the first three pixels."""
    return LoadedModel(variant, "mxnet", (1, 2, 2), ("cat", "dog", "fox"), "init:test", 0.0,
                       _logits_fn=lambda b: b.reshape(b.shape[0], -1)[:, :3] * 10.0)


@pytest.fixture(autouse=True)
def tiny_model():
    lambda_handler.set_loader(_tiny)
    yield
    lambda_handler.set_loader(None)


def _handler(model, event):
    """What Lambda does with the event: run the handler, bill 7 ms."""
    return lambda_handler.handler(event, None), 7.0


def _backend(handler=_handler, **kw):
    clock = Clock()
    lam = FakeFunctionProvider(handler=handler)
    return AwsRouterFunctions(lam, clock=clock, **kw), lam, clock


X = np.array([[[[0.9, 0.1], [0.0, 0.0]]], [[[0.0, 0.2], [0.8, 0.0]]], [[[0.1, 0.7], [0.1, 0.0]]]], np.float32)


def test_a_batch_goes_out_as_the_handlers_event_and_comes_back_as_its_probabilities():
    fns, _, _ = _backend()
    fns.deploy("tiny", 2048)
    res = fns.invoke("tiny", X, timeout_s=5)
    assert res.ok, res.error
    assert res.payload.shape == (3, 3)
    # softmax(10 x) of each sample's first three pixels, computed here independently
    logits = X.reshape(3, -1)[:, :3] * 10.0
    want = np.exp(logits - logits.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(res.payload, want, rtol=1e-5)
    assert list(res.payload.argmax(axis=1)) == [0, 2, 1]
    st = fns.stats()["tiny"]
    assert (st["invocations"], st["cold_starts"], st["memory_mb"], st["busy"]) == (1, 1, 2048, 0)
    assert res.billed_ms == 7.0


def test_the_event_is_base64_float32_with_its_shape():
    event = encode_batch("tiny", X)
    assert event["model"] == "tiny" and event["batch"] == 3 and event["return_probabilities"] is True
    np.testing.assert_array_equal(lambda_handler.decode_inputs(event), X)


def test_an_echoed_reply_fails_and_what_lambda_billed_for_it_is_counted():
    fns, _, _ = _backend(handler=lambda model, payload: (payload, 3.0))  # moto's Lambda echoes
    fns.deploy("tiny", 1024)
    res = fns.invoke("tiny", X, timeout_s=5)
    assert not res.ok and res.error.startswith("error: the function's reply has no probabilities")
    st = fns.stats()["tiny"]
    assert (st["invocations"], st["errors"], st["unbilled_ms"]) == (0, 1, 3.0)
    assert [e.kind for e in fns.poll_errors()] == ["api"]


def test_a_reply_with_the_wrong_number_of_rows_fails():
    with pytest.raises(ValueError, match=r"\[2, 3\] probabilities for 3 samples"):
        decode_probabilities({"probabilities": [[0.1, 0.2, 0.7]] * 2}, 3)


def test_throttles_and_errors_from_lambda_come_back_as_the_router_reads_them():
    fns, lam, _ = _backend()
    fns.deploy("tiny", 1024)
    lam.throttle_next, lam.fail_next = 1, 1
    assert fns.invoke("tiny", X, 5).error.startswith("throttled")
    assert fns.invoke("tiny", X, 5).error.startswith("error")
    assert fns.invoke("tiny", X, 5).ok
    assert fns.stats()["tiny"]["errors"] == 1  # a throttle is not an error of the function


def test_calls_past_the_concurrency_limit_are_throttled_without_reaching_lambda():
    calls = []

    def slow(model, event):
        calls.append(model)
        # a second call while this one is in flight is over the limit of 1
        inner = fns.invoke("tiny", X, 5)
        assert inner.error == "throttled: concurrency limit 1 reached"
        return lambda_handler.handler(event, None), 5.0
    fns, _, _ = _backend(handler=slow, concurrency_limit=1)
    fns.deploy("tiny", 1024)
    assert fns.invoke("tiny", X, 5).ok
    assert calls == ["tiny"]


def test_a_batch_past_the_payload_limit_fails_at_once():
    fns, lam, _ = _backend(payload_limit_bytes=1000)
    fns.deploy("tiny", 1024)
    big = np.zeros((64, 1, 2, 2), np.float32)
    res = fns.invoke("tiny", big, 5)
    assert not res.ok and "exceeds Lambda's 1000 byte limit" in res.error
    assert fns.stats()["tiny"]["invocations"] == 0


def test_warm_environments_are_estimated_as_lambda_keeps_them():
    fns, _, clock = _backend(keep_alive_s=60)
    fns.deploy("tiny", 1024)
    assert not fns.has_idle("tiny")
    fns.invoke("tiny", X, 5)
    assert fns.has_idle("tiny") and fns.stats()["tiny"]["instances"] == 1
    clock.now_s = 59.0
    assert fns.reap() == 0 and fns.has_idle("tiny")
    clock.now_s = 61.0
    assert fns.reap() == 1 and not fns.has_idle("tiny")
    # a warm pool of 1 keeps one environment past the keep-alive (its pings keep it warm)
    fns.deploy("tiny", 1024, warm_pool=1)
    fns.invoke("tiny", X, 5)
    clock.now_s = 500.0
    assert fns.reap() == 0 and fns.stats()["tiny"]["instances"] == 1


def test_a_throttled_call_leaves_the_warm_environment_idle():
    fns, lam, _ = _backend()
    fns.deploy("tiny", 1024)
    fns.invoke("tiny", X, 5)
    lam.throttle_next = 1
    assert fns.invoke("tiny", X, 5).error == "throttled"
    assert fns.has_idle("tiny") and fns.stats()["tiny"]["instances"] == 1


def test_injected_faults_apply_before_lambda():
    from procurement.providers.local import FunctionFaults
    fns, lam, _ = _backend()
    fns.deploy("tiny", 1024)
    fns.set_faults(FunctionFaults(error_rate=1.0))
    assert fns.invoke("tiny", X, 5).error == "error: injected fault"
    assert fns.injected["error"] == 1
    fns.set_faults(None)
    assert fns.invoke("tiny", X, 5).ok


def test_a_closed_backend_refuses_calls():
    fns, _, _ = _backend()
    fns.deploy("tiny", 1024)
    fns.close()
    assert fns.invoke("tiny", X, 5).error.startswith("throttled")


def test_the_factory_builds_the_local_provider_without_an_aws_section():
    from procurement.providers.local import LocalFunctionProvider
    from serving.function_fleet import build_function_provider, provider_kind_of
    from serving.settings import FunctionOptions
    p = build_function_provider(None, FunctionOptions(keep_alive_s=7, concurrency_limit=3))
    try:
        assert isinstance(p, LocalFunctionProvider) and (p.keep_alive_s, p.concurrency_limit) == (7, 3)
    finally:
        p.close()
    assert provider_kind_of({"name": "local"}) == "local" and provider_kind_of({"kind": "aws"}) == "aws"
    with pytest.raises(ConfigError, match="provider.name = 'gcp'"):
        build_function_provider({"name": "gcp"}, FunctionOptions())
