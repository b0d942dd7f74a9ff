"""The Lambda handler in-process: a Lambda-shaped event and context, a tiny injected model."""
from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np
import pytest

from serving import lambda_handler
from serving.runtimes.model import LoadedModel


@dataclass
class Context:
    """The attributes of AWS's LambdaContext the handler reads."""

    aws_request_id: str = "req-0001"
    deadline_ms: float = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return int(self.deadline_ms)


LOADS: list[str] = []


def tiny_loader(variant: str) -> LoadedModel:
    """A 1×2×2-input, 3-class linear model: logits = flattened input[:3]."""
    LOADS.append(variant)
    return LoadedModel(variant, "mxnet", (1, 2, 2), ("cat", "dog", "fox"), "init:test", 0.0,
                       _logits_fn=lambda b: b.reshape(b.shape[0], -1)[:, :3] * 10.0)


@pytest.fixture(autouse=True)
def loader():
    LOADS.clear()
    lambda_handler.set_loader(tiny_loader)
    yield
    lambda_handler.set_loader(None)


BATCH = [[[[0.0, 1.0], [0.0, 0.0]]], [[[0.0, 0.0], [1.0, 0.0]]]]  # best: class 1 (dog), class 2 (fox)


def test_first_request_is_cold_and_loads_once():
    first = lambda_handler.handler({"model": "tiny", "inputs": BATCH, "batch": 2}, Context())
    second = lambda_handler.handler({"model": "tiny", "inputs": BATCH}, Context("req-0002"))
    assert first["cold"] is True and second["cold"] is False and LOADS == ["tiny"]
    assert first["class_ids"] == [[1], [2]] and first["labels"] == [["dog"], ["fox"]]
    assert first["scores"][0][0] > 0.99 and first["request_id"] == "req-0001"
    assert second["request_id"] == "req-0002" and second["remaining_ms"] == 30_000
    assert first["duration_ms"] >= first["load_ms"] >= 0


def test_base64_inputs_match_nested_lists():
    arr = np.asarray(BATCH, dtype="<f4")
    event = {"model": "tiny", "inputs": {"b64": base64.b64encode(arr.tobytes()).decode(), "shape": list(arr.shape)},
             "top_k": 2, "return_probabilities": True}
    out = lambda_handler.handler(event, Context())
    ref = lambda_handler.handler({"model": "tiny", "inputs": BATCH, "top_k": 2, "return_probabilities": True},
                                 Context())
    assert out["class_ids"] == ref["class_ids"] == [[1, 0], [2, 0]]
    assert np.allclose(np.sum(out["probabilities"], axis=1), 1.0)


def test_warmup_ping_loads_the_model_so_the_next_request_is_warm(monkeypatch):
    monkeypatch.setenv("HYBRIDSERVE_MODEL", "tiny")
    ping = lambda_handler.handler({"warmup": True}, Context())
    assert ping["warmup"] is True and ping["cold"] is True
    assert lambda_handler.handler({"warmup": True}, Context())["cold"] is False
    assert lambda_handler.handler({"inputs": BATCH}, Context())["cold"] is False
    assert LOADS == ["tiny"]


@pytest.mark.parametrize("event, message", [
    ({"model": "tiny"}, "no 'inputs'"),
    ({"model": "tiny", "inputs": BATCH, "batch": 3}, "'batch' is 3"),
    ({"model": "tiny", "inputs": {"b64": "AAAAAA==", "shape": [2, 1, 2, 2]}}, "do not fill shape"),
    ({"model": "tiny", "inputs": [[1.0], [2.0, 3.0]]}, "not a rectangular"),
    ({"inputs": BATCH}, "no model"),
])
def test_bad_requests_raise_value_error(event, message, monkeypatch):
    monkeypatch.delenv("HYBRIDSERVE_MODEL", raising=False)
    with pytest.raises(ValueError, match=message):
        lambda_handler.handler(event, Context())


def test_wrong_tensor_shape_is_refused_by_the_model():
    with pytest.raises(ValueError, match="expected a batch of shape"):
        lambda_handler.handler({"model": "tiny", "inputs": [[[[1.0, 2.0, 3.0]]]]}, Context())


def test_a_batch_of_requests_runs_as_one_forward_pass_and_splits_back():
    """What the function batcher sends: several requests' samples in one event. One predict over
    all of them; sample i's outputs are exactly what it gets alone."""
    calls: list[int] = []

    def counting_loader(variant: str) -> LoadedModel:
        def logits(b):
            calls.append(b.shape[0])
            return b.reshape(b.shape[0], -1)[:, :3] * 10.0
        return LoadedModel(variant, "mxnet", (1, 2, 2), ("cat", "dog", "fox"), "init:test", 0.0, _logits_fn=logits)

    lambda_handler.set_loader(counting_loader)
    rng = np.random.default_rng(3)
    samples = rng.random((5, 1, 2, 2)).astype(np.float32)
    together = lambda_handler.handler({"model": "tiny", "inputs": samples.tolist(), "batch": 5, "top_k": 2,
                                       "return_probabilities": True}, Context())
    assert calls == [5]
    for i in range(5):
        alone = lambda_handler.handler({"model": "tiny", "inputs": samples[i:i + 1].tolist(), "top_k": 2,
                                        "return_probabilities": True}, Context())
        assert together["class_ids"][i] == alone["class_ids"][0] and together["labels"][i] == alone["labels"][0]
        np.testing.assert_allclose(together["probabilities"][i], alone["probabilities"][0], rtol=1e-6)
    assert calls == [5, 1, 1, 1, 1, 1]
