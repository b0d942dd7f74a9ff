"""The router's function backend on an aws provider, against moto: the factory builds it from a
`provider:` section, `deploy` creates and resizes the Lambda function (memory from the plan), a
batch invoke answers the real handler's probabilities (its reply from the Lambda image's entry
point under the real runtime client, queued at moto), moto's echo is a failed call (the router
then serves on a VM), and a call Lambda throttles is answered "throttled" at once (no backoff on
the data path: the router queues it at a VM within its SLO)."""
from __future__ import annotations

import time

import numpy as np

from procurement.providers.aws_router import AwsRouterFunctions, encode_batch
from serving import digits
from serving.function_fleet import build_function_provider
from serving.settings import FunctionOptions


def _backend(moto_server, moto_role_arn, deployment_id, **options):
    provider = {"name": "aws", "region": "us-east-1", "deployment_id": deployment_id,
                "endpoint_url": moto_server.endpoint_url,
                "retry": {"max_attempts": 3, "base_delay_s": 0.01, "max_delay_s": 0.02},
                "vm": {"ray_head_address": "127.0.0.1:6379", "ami_id": "ami-0123456789abcdef0"},
                "function": {"image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/hybridserve-lambda:0.1.0",
                             "role_arn": moto_role_arn}}
    return build_function_provider(provider, FunctionOptions(**options))


def _memory_mb(moto_server, name: str) -> int:
    import boto3
    lam = boto3.client("lambda", endpoint_url=moto_server.endpoint_url, region_name="us-east-1")
    return lam.get_function_configuration(FunctionName=name)["MemorySize"]


def test_spills_invoke_the_lambda_function_and_answer_the_handlers_probabilities(
        moto_server, moto_role_arn, deployment_id, lambda_runtime, queue_lambda_result):
    fns = _backend(moto_server, moto_role_arn, deployment_id, concurrency_limit=8, keep_alive_s=60)
    assert isinstance(fns, AwsRouterFunctions)
    fns.deploy("digits-small", 1769)
    name = f"hs-{deployment_id}-digits-small"
    assert _memory_mb(moto_server, name) == 1769
    fns.deploy("digits-small", 2048, warm_pool=1)  # the plan's memory
    assert _memory_mb(moto_server, name) == 2048
    x, y = digits.test_samples()
    batch = x[:6]
    outcome = lambda_runtime.invoke(encode_batch("digits-small", batch))
    assert outcome[0] == "response"
    queue_lambda_result(outcome[1])
    res = fns.invoke("digits-small", batch, timeout_s=30)
    assert res.ok, res.error
    assert res.payload.shape == (6, 10) and (res.payload.argmax(axis=1) == y[:6]).mean() >= 0.6
    assert res.billed_ms >= 1  # what the router bills into the ledger
    st = fns.stats()["digits-small"]
    assert (st["invocations"], st["memory_mb"], st["function"]) == (1, 2048, name)
    assert fns.has_idle("digits-small")


def test_an_echoed_reply_is_a_failed_call(moto_server, moto_role_arn, deployment_id):
    fns = _backend(moto_server, moto_role_arn, deployment_id)
    fns.deploy("digits-small", 1024)
    res = fns.invoke("digits-small", np.zeros((2, 1, 8, 8), np.float32), timeout_s=10)
    assert not res.ok and "no probabilities" in res.error
    assert fns.stats()["digits-small"]["errors"] == 1


def test_lambda_throttling_is_answered_at_once(moto_server, moto_role_arn, deployment_id, aws_fault):
    fns = _backend(moto_server, moto_role_arn, deployment_id)
    fns.deploy("digits-small", 1024)
    client = fns.lam._invoke_client(10)
    fault = aws_fault(client.meta.events, "before-call.lambda.Invoke", "TooManyRequestsException", status=429)
    t0 = time.perf_counter()
    res = fns.invoke("digits-small", np.zeros((1, 1, 8, 8), np.float32), timeout_s=10)
    assert res.error == "throttled" and fault.fired == 1  # one call, no backoff sleeps
    assert time.perf_counter() - t0 < 1.0
    assert fns.stats()["digits-small"]["errors"] == 0
    assert fns.invoke("digits-small", np.zeros((1, 1, 8, 8), np.float32), timeout_s=10).error == "throttled"
    assert fault.fired == 2
