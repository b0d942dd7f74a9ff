"""The Lambda handler under the real Lambda runtime: the image's entry point (`python -m
awslambdaric` with Dockerfile.lambda's CMD handler) as a subprocess polling a Runtime API server
on 127.0.0.1 (tests/lambda_runtime_api.py): real inference on a real batch (the digits model,
trained at the first load: a cold start), errors through the Runtime API's error path, and the
environment living on after an error."""
from __future__ import annotations

import json

import numpy as np
import pytest

from procurement.providers.aws_router import decode_probabilities, encode_batch
from serving import digits

N = 24


@pytest.fixture(scope="module")
def lambda_runtime(make_lambda_runtime):
    """An execution environment of this module's own, so its first call is its cold start."""
    return make_lambda_runtime()


def _samples():
    x, y = digits.test_samples()
    return x[:N], y[:N]


def test_a_real_batch_is_classified_under_the_runtime_client(lambda_runtime):
    x, y = _samples()
    # The event exactly as the router's Lambda backend sends it (base64 float32 and its shape).
    outcome = lambda_runtime.invoke(encode_batch(lambda_runtime.model, x))
    assert outcome[0] == "response", outcome
    body = outcome[1]
    assert body["model"] == "digits-small" and body["cold"] is True and body["load_ms"] > 0
    assert body["request_id"].startswith("req-")  # the context awslambdaric built from the headers
    assert 0 < body["remaining_ms"] <= 60_000  # from Lambda-Runtime-Deadline-Ms
    probs = decode_probabilities(body, N)  # what the router reads back
    assert probs.shape == (N, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    # Graded by the held-out labels, not by the model: digits-small is right on most of them.
    ids = np.array([row[0] for row in body["class_ids"]])
    assert (ids == probs.argmax(axis=1)).all()
    assert (ids == y).mean() >= 0.75, (ids, y)
    # The same environment again: warm, no load.
    again = lambda_runtime.invoke(encode_batch(lambda_runtime.model, x[:2]))
    assert again[0] == "response" and again[1]["cold"] is False and again[1]["load_ms"] == 0.0


def test_a_nested_list_batch_and_a_warmup_ping(lambda_runtime):
    x, y = _samples()
    outcome = lambda_runtime.invoke({"inputs": x[:3].tolist(), "batch": 3, "top_k": 2})
    assert outcome[0] == "response", outcome
    assert [len(row) for row in outcome[1]["class_ids"]] == [2, 2, 2]
    ping = lambda_runtime.invoke({"warmup": True})
    assert ping[0] == "response" and ping[1]["warmup"] is True and ping[1]["cold"] is False


def test_bad_events_go_through_the_error_path_and_the_environment_lives_on(lambda_runtime):
    missing = lambda_runtime.invoke({"model": "digits-small"})
    assert missing[0] == "error", missing
    _, body, headers = missing
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "event has no 'inputs'"
    assert any("lambda_handler.py" in frame for frame in body["stackTrace"])
    cause = json.loads(headers["lambda-runtime-function-xray-error-cause"])
    assert cause["exceptions"][0]["type"] == "ValueError"
    mismatch = lambda_runtime.invoke({**encode_batch("digits-small", _samples()[0][:2]), "batch": 5})
    assert mismatch[0] == "error" and "'batch' is 5 but inputs hold 2 samples" in mismatch[1]["errorMessage"]
    wrong_shape = lambda_runtime.invoke(encode_batch("digits-small", np.zeros((1, 3, 8, 8), np.float32)))
    assert wrong_shape[0] == "error", wrong_shape
    # The same process still serves (a bad request does not kill a warm environment).
    ok = lambda_runtime.invoke(encode_batch("digits-small", _samples()[0][:1]))
    assert ok[0] == "response" and ok[1]["cold"] is False
    assert lambda_runtime.process.poll() is None
