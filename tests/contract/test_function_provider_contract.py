"""The FunctionProvider contract, run against every implementation (fake, aws on moto; local
later). Both test doubles echo the payload, as moto's Lambda does without docker, except where a
test asks for the handler's real answer (`answer_next`): for aws that is the Lambda image's entry
point under the real runtime client (tests/contract/conftest.py `lambda_runtime`)."""
from __future__ import annotations


def _memory(provider) -> dict[str, int]:
    return {r.model: r.memory_mb for r in provider.describe()}


def test_deploy_then_describe(fn_harness):
    p = fn_harness.provider
    p.deploy("inception", 1024)
    p.deploy("resnet18", 2048, warm_pool=2, batch_size=4)
    records = {r.model: r for r in p.describe()}
    assert set(records) == {"inception", "resnet18"}
    assert (records["inception"].memory_mb, records["inception"].warm_pool) == (1024, 0)
    r = records["resnet18"]
    assert (r.memory_mb, r.warm_pool, r.batch_size) == (2048, 2, 4)
    assert p.poll_errors() == []


def test_deploy_is_idempotent_and_updates_memory(fn_harness):
    p = fn_harness.provider
    p.deploy("inception", 1024)
    p.deploy("inception", 1024)
    assert _memory(p) == {"inception": 1024}
    p.deploy("inception", 3008)
    assert _memory(p) == {"inception": 3008}
    assert p.poll_errors() == []


def test_invoke_round_trip(fn_harness):
    """A real batch in, the handler's answer out: class ids per sample, graded by the labels."""
    import numpy as np

    from procurement.providers.aws_router import decode_probabilities, encode_batch
    from serving import digits

    p = fn_harness.provider
    p.deploy("digits-small", 1024)
    x, y = digits.test_samples()
    event = encode_batch("digits-small", x[:8])
    fn_harness.answer_next("digits-small", event)
    res = p.invoke("digits-small", event, timeout_s=120)
    assert res.ok and res.error is None, res.error
    body = res.payload
    assert body != event and body["model"] == "digits-small"
    ids = np.array([row[0] for row in body["class_ids"]])
    assert len(ids) == 8 and (ids == y[:8]).mean() >= 0.75
    assert decode_probabilities(body, 8).shape == (8, 10)
    assert res.duration_ms >= 0 and res.billed_ms >= res.duration_ms - 1


def test_invoke_of_a_model_without_function_fails_softly(fn_harness):
    res = fn_harness.provider.invoke("no-such-model", {"x": 1}, timeout_s=5)
    assert not res.ok and res.error.startswith("error")


def test_memory_out_of_range_is_reported_not_raised(fn_harness):
    p = fn_harness.provider
    p.deploy("inception", 64)
    errors = p.poll_errors()
    assert [e.kind for e in errors] == ["api"] and not errors[0].transient
    assert "inception" not in _memory(p)


def test_a_restarted_controller_finds_the_same_functions(fn_harness):
    p = fn_harness.provider
    p.deploy("inception", 1536, warm_pool=1)
    restarted = fn_harness.restart()
    found = getattr(restarted, "adopt", restarted.describe)()
    assert [(r.model, r.memory_mb, r.warm_pool) for r in found] == [("inception", 1536, 1)]
    assert restarted.invoke("inception", {"warmup": True}, timeout_s=5).ok
