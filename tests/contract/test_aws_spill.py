"""The short form of tests/integration/test_live_aws.py (no Ray, seconds): the real Router class
with an aws provider spills to Lambda on a moto server, driven by the real control loop.

- the factory gives the router the Lambda backend; the plan's function memory, applied by the
  loop, becomes the Lambda function's MemorySize;
- spill decisions become Lambda invokes, each recorded by moto with the request's sample as the
  handler's event;
- an invoke answered with the real handler's reply (from the Lambda image's entry point under the
  real runtime client, queued at moto) is served by the function and billed; moto's echo is a
  failed call, retried on a VM target within the SLO;
- the loop bills the answered calls into its one ledger (each the request fee plus the GB-seconds
  at the planned memory);
- a planned warm pool is started with that many concurrent Lambda invokes.
"""
from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import pytest

from controller.config import load_config
from procurement.providers.aws_router import AwsRouterFunctions, encode_batch
from serving import digits
from controller.live.control_loop import ControlLoop
from controller.live.live_catalog import build_live_catalog
from serving.router import App
from serving.router_app import Router
from serving.settings import serving_config

from control_loop_fakes import _Call

VARIANT = "digits-small"
SLO_MS = 2_000.0


class VmHandle:
    """A VM target's DeploymentHandle (in memory): uniform probabilities after 1 ms."""

    def __init__(self):
        self.calls = 0
        self.infer = self

    def remote(self, batch, *args, **kwargs):
        self.calls += 1

        async def run():
            return np.full((len(batch), 10), 0.1, np.float32), 1.0, False
        return run()


def _router(provider: dict, vm: VmHandle, prewarm: bool = False) -> Router:
    """The real Router class as a Serve replica builds it (without Ray), on the aws provider."""
    settings = {"head_in_process": False, "spill_fraction": 0.0001, "serve_config_apps": False,
                "functions": {"enabled": True, "memory_mb": 1769, "concurrency_limit": 4},
                "control": {"prewarm_functions": prewarm}}
    cls = Router.func_or_class
    router = cls.__new__(cls)
    init = cls.__init__(router, [{"name": "digits", "slo_ms": SLO_MS, "min_accuracy": 0.5, "variants": [VARIANT]}],
                        {VARIANT: 0.9}, settings, {VARIANT: vm}, provider)
    if asyncio.iscoroutine(init):
        asyncio.run(init)
    router._stop.set()  # no reaper thread
    return router


@pytest.fixture
def provider(moto_server, moto_role_arn, deployment_id):
    return {"name": "aws", "region": "us-east-1", "deployment_id": deployment_id,
            "endpoint_url": moto_server.endpoint_url,
            "retry": {"max_attempts": 2, "base_delay_s": 0.01, "max_delay_s": 0.02},
            "vm": {"ray_head_address": "127.0.0.1:6379", "ami_id": "ami-0123456789abcdef0"},
            "function": {"image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/hybridserve-lambda:0.1.0",
                         "role_arn": moto_role_arn}}


def test_spills_become_lambda_invokes_billed_in_the_loops_ledger(
        provider, make_aws_vm, tmp_path, lambda_runtime, queue_lambda_result, lambda_invocations):
    import boto3
    vm = VmHandle()
    router = _router(provider, vm)
    assert isinstance(router.functions, AwsRouterFunctions)
    name = f"hs-{provider['deployment_id']}-{VARIANT}"
    lam = boto3.client("lambda", endpoint_url=provider["endpoint_url"], region_name="us-east-1")
    assert lam.get_function_configuration(FunctionName=name)["MemorySize"] == 1769  # created at start

    # The control loop over the real router (its two side-door methods, called as a handle would).
    cfg = load_config("tests/integration/live.yaml")
    settings = serving_config(cfg, {"control": {"max_vms": 1, "instance_types": ["c5.large"], "vm_boot_s": 1,
                                                "policy_params": {"predictor": "last-value"},
                                                "prewarm_functions": False},
                                    "head_instance_type": None})
    catalog = build_live_catalog(cfg.catalog.dir, str(tmp_path), [VARIANT], {VARIANT: 0.9}, ["c5.large"], 1.0,
                                 measure=lambda v: ({1: 1.0, 2: 1.2, 4: 1.5, 8: 2.0}, 50.0))
    handle = type("Handle", (), {"collect": _Call(router.collect), "apply_control": _Call(router.apply_control)})()
    clock = [time.time()]
    loop = ControlLoop(cfg, settings, [App("digits", SLO_MS, 0.5, (VARIANT,))], catalog, handle, make_aws_vm(),
                       clock=lambda: clock[0], release_on_exit=True)
    # What `start()` does, without its thread: the pricing to the router, adoption, then ticks.
    router.apply_control({"function_pricing": loop.cfg.functions.model_dump()})
    loop.adopt()
    loop.tick()
    planned = router.fn_memory[VARIANT]
    assert [f.memory_mb for f in loop.last_plan.functions if f.model == VARIANT][:1] == [planned]
    assert lam.get_function_configuration(FunctionName=name)["MemorySize"] == planned  # memory from the plan

    sample = digits.test_samples()[0][:1]
    reply = lambda_runtime.invoke(encode_batch(VARIANT, sample))  # the real handler's answer to it
    assert reply[0] == "response"
    for _ in range(3):
        queue_lambda_result(reply[1])

    from serving import oip

    async def send(n):
        """n infer requests for the app through the router's own request path, one after another
        (each decision sees the last one's measurements); the responses' parameters."""
        body, headers = oip.encode_infer_request({"input": sample})
        out = []
        for _ in range(n):
            resp = await router._infer("digits", time.perf_counter(), lambda: oip.parse_infer_request(
                body, headers.get(oip.HEADER_LENGTH), output_names=oip.CLASSIFICATION_OUTPUTS))
            out.append(resp.parameters)
        return out
    results = asyncio.run(send(8))
    backends = [r["backend"] for r in results]
    # Every request spills (the plan's route, or the VM's measured time over the tiny spill
    # fraction; at most the very first goes to the VM before anything is measured): the first 3
    # calls are answered with the handler's reply, the rest are moto's echo, a failed call,
    # served on the VM within the SLO.
    spilled = [r for r in results if r["backend"] == "function" or r.get("retried_from") == "function:error"]
    assert len(spilled) >= 7 and backends.count("function") == 3, results
    assert [r["backend"] for r in spilled] == ["function"] * 3 + ["vm"] * (len(spilled) - 3)
    assert all(r["slo_met"] for r in results)
    invokes = lambda_invocations(name)
    assert len(invokes) == len(spilled)
    for event in invokes:  # the request's own sample, as the handler reads it
        raw = np.frombuffer(base64.b64decode(event["inputs"]["b64"]), "<f4").reshape(event["inputs"]["shape"])
        np.testing.assert_array_equal(raw, sample)
        assert event["model"] == VARIANT and event["return_probabilities"] is True

    # Billing: each answered call at the function's memory, in the router's telemetry, then in
    # the loop's ledger at its next tick.
    fp = loop.cfg.functions  # the pricing the loop handed the router
    gb_s_usd = planned / 1024.0 * fp.price_usd_per_gb_s  # one second at the planned memory
    clock[0] += 3.0
    loop.tick()
    billed = loop.cost_usd(clock[0])["function"]
    # 3 answered calls: each the request fee plus at least 1 ms and at most the SLO of GB-seconds.
    assert 3 * (fp.price_usd_per_request + 0.001 * gb_s_usd) <= billed <= 3 * (
        fp.price_usd_per_request + SLO_MS / 1000 * gb_s_usd), billed
    assert router.functions.stats()[VARIANT]["invocations"] == 3
    assert router.functions.stats()[VARIANT]["errors"] == len(spilled) - 3
    loop.stop()



def test_a_planned_warm_pool_is_started_with_lambda_invokes(provider, lambda_invocations):
    """The plan's warm pool of 2: the router's prewarm sends 2 concurrent invokes to the Lambda
    function (Lambda starts one environment per concurrent call), at the plan's memory."""
    import boto3
    router = _router(provider, VmHandle(), prewarm=True)
    name = f"hs-{provider['deployment_id']}-{VARIANT}"
    router.apply_control({"functions": [{"model": VARIANT, "memory_mb": 2048, "warm_pool": 2}]})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (router._prewarming or len(lambda_invocations(name)) < 2):
        time.sleep(0.1)
    invokes = lambda_invocations(name)
    assert len(invokes) == 2 and all(e["inputs"]["shape"] == [1, 1, 8, 8] for e in invokes)
    lam = boto3.client("lambda", endpoint_url=provider["endpoint_url"], region_name="us-east-1")
    assert lam.get_function_configuration(FunctionName=name)["MemorySize"] == 2048
    tags = lam.list_tags(Resource=lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"])["Tags"]
    assert tags["hybridserve:warm-pool"] == "2"
