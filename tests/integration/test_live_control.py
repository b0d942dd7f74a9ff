"""The control loop in the live daemon: it ticks on the wall clock and shows its state (short
form); a burst makes it buy a VM that joins as a Ray node and serves, then drains and releases
it (slow)."""
import asyncio
import time

import pytest

from serving import digits
from serving.oip import encode_infer_request

pytestmark = pytest.mark.live


def _control(live) -> dict:
    status, st = live.get_json("/status")
    assert status == 200
    return st["control"]


def test_loop_ticks_and_exports_its_state(live):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _control(live).get("tick", {}).get("ticks", 0) < 2:
        time.sleep(1)
    c = _control(live)
    assert c["policy"] == "hybrid" and c["tick"]["ticks"] >= 2 and "tick" not in c["tick"]["errors"]
    assert c["tick"]["last_duration_s"] < 5 and set(c["cost_usd"]) == {"vm", "function", "total"}
    assert "digits" in c["forecast"] and isinstance(c["fleet"], list)
    status, _, body = live.request("GET", "/metrics")
    for name in (b"hybridserve_control_ticks", b"hybridserve_control_tick_seconds", b"hybridserve_cost_usd",
                 b"hybridserve_forecast_per_s", b"hybridserve_control_last_good_tick_timestamp_seconds"):
        assert name in body


async def _burst(url: str, rate_per_s: float, duration_s: float, x) -> list[dict]:
    import aiohttp

    out = []
    async with aiohttp.ClientSession() as s:
        async def one(i):
            body, headers = encode_infer_request({"input": x[i % len(x)][None]})
            async with s.post(url + "/v2/models/digits/infer", data=body, headers=headers) as r:
                if r.status == 200:
                    from serving.oip import parse_infer_response
                    resp = parse_infer_response(await r.read(), r.headers.get("Inference-Header-Content-Length"))
                    out.append(resp.parameters)
        t0, tasks = time.perf_counter(), []
        for i in range(int(rate_per_s * duration_s)):
            await asyncio.sleep(max(0.0, t0 + i / rate_per_s - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return out


@pytest.mark.slow
def test_burst_buys_a_vm_that_serves_then_is_released(live):
    x, _ = digits.test_samples()
    loop = asyncio.new_event_loop()
    try:
        served = []
        deadline = time.monotonic() + 150
        vm_seen = None
        while time.monotonic() < deadline:  # bursts of 10 s until a VM target has served some
            served += loop.run_until_complete(_burst(live.url, 25, 10, x))
            fleet = _control(live)["fleet"]
            vm_seen = vm_seen or next((f["vm_id"] for f in fleet), None)
            if any(p.get("target", "").startswith("vm-") for p in served):
                break
        assert vm_seen, "the loop bought no VM under the burst"
        on_vm = [p for p in served if p.get("target", "").startswith("vm-")]
        assert on_vm and all(p["backend"] == "vm" and p["target"] == f"vm-{vm_seen}" for p in on_vm)
    finally:
        loop.close()
    # Idle: past scale_down_delay_s and the billing minimum the VM is drained and released.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and _control(live)["fleet"]:
        time.sleep(2)
    c = _control(live)
    assert c["fleet"] == [] and c["cost_usd"]["vm"] > 0
    status, st = live.get_json("/status")
    assert all(t == {"head": 1} for t in st["vm_targets"].values())
    assert any(e.endswith(f"released {vm_seen}") for e in c["tick"]["events"])
