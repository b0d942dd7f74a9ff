"""Security and guarantees of the live daemon (serving.security, serving.router_app):

- admin endpoints need the bearer token (401 none, 403 wrong), take a validated config patch
  (`hybridserve tune --apply`'s client against the real daemon), and the token, like a fake AWS
  secret key put in the daemon's environment, appears in no log, /status or /metrics;
- request size limits hold for the binary extension (chunked, no Content-Length) and gRPC;
- under injected function faults every request gets exactly one response, a result or an
  explicit JSON error, and a failed function call is retried on a VM while the SLO allows;
- the control loop survives failing steps and counts them in /metrics.

The session fixture (conftest) copies this process's environment when it starts the daemon,
after every test module is imported: the secrets and the fault switch are set here, at import.
"""
import asyncio
import glob
import json
import os
import time

import numpy as np
import pytest

import live_env
from serving import digits, security

pytestmark = pytest.mark.live

# The daemon runs with these (tests/integration/live_env.py); the pytest process does not.
TOKEN, FAKE_AWS_SECRET = live_env.ADMIN_TOKEN, live_env.FAKE_AWS_SECRET
assert live_env.ADMIN_TOKEN_ENV == security.ADMIN_TOKEN_ENV
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def _admin(live, method, path, doc=None, headers=AUTH):
    body = None if doc is None else json.dumps(doc).encode()
    status, _, out = live.request(method, path, body, headers)
    return status, json.loads(out or b"{}")


def test_admin_needs_the_token(live):
    assert _admin(live, "GET", "/admin/fleet", headers={})[0] == 401
    assert _admin(live, "GET", "/admin/fleet", headers={"Authorization": "Bearer wrong"})[0] == 403
    assert _admin(live, "POST", "/admin/config", {}, headers={"Authorization": "Basic " + TOKEN})[0] == 401
    status, fleet = _admin(live, "GET", "/admin/fleet")
    assert status == 200 and "fleet" in fleet and set(fleet["vm_targets"]) >= {"digits-small"}


def test_admin_disabled_without_a_token(tmp_path):
    # The same check the router runs: no token configured -> the admin surface does not exist.
    with pytest.raises(security.Denied) as e:
        security.check_admin(security.load_admin_token(None, environ={}), f"Bearer {TOKEN}")
    assert e.value.status == 404
    f = tmp_path / "token"
    f.write_text("from-file-token\n")
    assert security.load_admin_token(str(f), environ={}) == "from-file-token"


def test_tune_apply_patches_the_running_router(live):
    from controller.tuning.patch import ApplyError, apply_patch

    patch = {"policy": {"function_memory_mb": {"digits-small": 1024, "not-served": 2048},
                        "baseline_function_memory_mb": 1024}}
    answer = apply_patch(live.url, TOKEN, patch)
    assert answer["status"] == "applied" and answer["applied"] == {"policy.function_memory_mb.digits-small": 1024}
    assert "policy.function_memory_mb.not-served" in answer["ignored"]
    status, st = live.get_json("/status")
    assert st["functions"]["digits-small"]["planned_memory_mb"] == 1024
    with pytest.raises(ApplyError, match="refused the token"):
        apply_patch(live.url, "wrong-token", patch)
    status, err = _admin(live, "POST", "/admin/config", {"policy": {"function_memory_mb": {"digits-small": 12}}})
    assert status == 422 and err["error"].startswith("policy.function_memory_mb.digits-small:")
    status, err = _admin(live, "POST", "/admin/config", {"polcy": {}})
    assert status == 422 and err["error"].startswith("polcy:")


def test_api_keys_per_app():
    keys = security.ApiKeys({"digits": ["k-one", "k-two"]}, {"digits": ("digits-small",), "open": ("x",)})
    keys.check("open", None)
    keys.check("digits", "k-two")
    keys.check("digits-small", "k-one")  # a protected app's variant is protected too
    for name, key, status in (("digits", None, 401), ("digits", "k-three", 403), ("digits-small", "", 401)):
        with pytest.raises(security.Denied) as e:
            keys.check(name, key)
        assert e.value.status == status
    assert security.api_key_of({"authorization": "Bearer k-one"}) == "k-one"


def test_size_limits_hold_for_binary_chunked_and_grpc(live):
    def chunks():
        for _ in range(40):
            yield b"\0" * 32768  # 1.25 MB in chunks, no Content-Length: limit is 1 MB
    status, _, out = live.request("POST", "/v2/models/digits-small/infer", chunks(),
                                  {"Inference-Header-Content-Length": "2", "Transfer-Encoding": "chunked"})
    assert status == 413 and json.loads(out)["error"].startswith("body:")
    grpcclient = pytest.importorskip("tritonclient.grpc")
    from tritonclient.utils import InferenceServerException
    client = grpcclient.InferenceServerClient(live.grpc_target)
    inp = grpcclient.InferInput("input", [5000, 1, 8, 8], "FP32")  # 1.28 MB of pixels
    inp.set_data_from_numpy(np.zeros((5000, 1, 8, 8), np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("digits-small", [inp])
    assert "RESOURCE_EXHAUSTED" in str(e.value.status())


async def _many(url: str, n: int, x, slo_ms: float) -> list[tuple[str, int, dict]]:
    """n concurrent requests with distinct ids: (id, status, JSON body) for each answer."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        async def one(i):
            rid = f"fault-{slo_ms}-{i}"
            doc = {"id": rid, "parameters": {"slo_ms": slo_ms},
                   "inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                               "data": x[i % len(x)].ravel().tolist()}]}
            async with s.post(url + "/v2/models/digits-small/infer", json=doc) as r:
                return rid, r.status, await r.json(content_type=None)
        return await asyncio.gather(*(one(i) for i in range(n)))


def test_every_request_answered_once_under_function_faults(live):
    x, _ = digits.test_samples()
    try:
        # Spill everything (spill fraction tiny) into functions failing 40% / throttled 20% /
        # timing out 20% of the time.
        assert _admin(live, "POST", "/admin/faults", {"function": {"error_rate": 0.4, "throttle_rate": 0.2,
                                                                   "timeout_rate": 0.2, "hang_s": 0.05}})[0] == 200
        assert _admin(live, "POST", "/admin/config", {"serving": {"spill_fraction": 1e-6}})[0] == 200
        assert live.post_json("/v2/models/digits-small/infer", {"inputs": [
            {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": x[0].ravel().tolist()}]})[0] == 200
        loop = asyncio.new_event_loop()
        try:
            generous = loop.run_until_complete(_many(live.url, 40, x, 60000.0))
            assert _admin(live, "POST", "/admin/faults", {"function": {"error_rate": 1.0}})[0] == 200
            tight = loop.run_until_complete(_many(live.url, 20, x, 0.001))
        finally:
            loop.close()
        for answers in (generous, tight):
            ids = [rid for rid, _, _ in answers]
            assert len(set(ids)) == len(ids)
            for rid, status, doc in answers:  # one answer each: a result with its id, or a JSON error
                assert (status == 200 and doc["id"] == rid) or (status == 503 and doc["error"]), (status, doc)
        # With budget left, a failed function call is retried on a VM: no error reaches the caller.
        assert all(status == 200 for _, status, _ in generous), [d for _, status, d in generous if status != 200]
        retried = [d["parameters"].get("retried_from") for _, _, d in generous]
        assert any(r in ("function:error", "function:timeout") for r in retried)
        # With none left (SLO 1 µs), failed calls end in an explicit 503, never silence.
        assert any(status == 503 and "no SLO budget left" in d["error"] for _, status, d in tight)
        _, _, metrics = live.request("GET", "/metrics")
        assert b"hybridserve_function_retries_total" in metrics
    finally:
        _admin(live, "POST", "/admin/faults", {"function": {}})
        _admin(live, "POST", "/admin/config", {"serving": {"spill_fraction": 0.8}})


def _control_errors(live) -> dict:
    return live.get_json("/status")[1]["control"].get("tick", {}).get("errors", {})


def test_control_loop_survives_failing_collects(live):
    before = _control_errors(live).get("tick", 0)
    ticks0 = live.get_json("/status")[1]["control"].get("tick", {}).get("ticks", 0)
    assert _admin(live, "POST", "/admin/faults", {"control_collect_errors": 2})[0] == 200
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        c = live.get_json("/status")[1]["control"].get("tick", {})
        if c.get("errors", {}).get("tick", 0) >= before + 2 and c.get("ticks", 0) > ticks0:
            break
        time.sleep(1)
    c = live.get_json("/status")[1]["control"]["tick"]
    assert c["errors"].get("tick", 0) >= before + 2 and c["ticks"] > ticks0  # it failed, then ticked on
    _, _, metrics = live.request("GET", "/metrics")
    assert b'hybridserve_control_errors{kind="tick"}' in metrics


def test_vm_faults_through_the_admin_endpoint(live):
    """A bad VM fault spec is refused naming the field; a good one reaches the control loop at
    its next tick (an event says so) and {} clears it."""
    status, doc = _admin(live, "POST", "/admin/faults", {"vm": {"never_boot": 2}})
    assert status == 422 and doc["error"].startswith("vm:")
    assert _admin(live, "POST", "/admin/faults", {"vm": {"slow_boot_s": 1, "seed": 2}})[0] == 200
    deadline = time.monotonic() + 40
    events = []
    while time.monotonic() < deadline:
        events = live.get_json("/status")[1]["control"].get("tick", {}).get("events", [])
        if any("vm faults set: {'slow_boot_s': 1, 'seed': 2}" in e for e in events):
            break
        time.sleep(1)
    assert any("vm faults set: {'slow_boot_s': 1, 'seed': 2}" in e for e in events), events[-5:]
    assert _admin(live, "POST", "/admin/faults", {"vm": {}})[0] == 200


def test_secrets_never_logged_or_exported(live):
    secrets = [TOKEN.encode(), FAKE_AWS_SECRET.encode()]
    # A refused token is not echoed either.
    _admin(live, "GET", "/admin/fleet", headers={"Authorization": "Bearer " + FAKE_AWS_SECRET})
    _, fleet = _admin(live, "GET", "/admin/fleet")
    texts = {"/status": live.request("GET", "/status")[2], "/metrics": live.request("GET", "/metrics")[2],
             "/admin/fleet": json.dumps(fleet).encode()}
    with open(live.log_path, "rb") as fh:
        texts["daemon log"] = fh.read()
    session = fleet.get("ray_session_dir")
    files = glob.glob(os.path.join(session, "logs", "**", "*"), recursive=True) if session else []
    assert files, "the daemon's Ray session logs were not found"
    for path in files:
        if os.path.isfile(path) and os.path.getsize(path) < 50_000_000:
            with open(path, "rb") as fh:
                texts[path] = fh.read()
    leaks = [name for name, text in texts.items() if any(s in text for s in secrets)]
    assert not leaks, f"a secret appears in: {leaks}"  # names only: never print the secret
