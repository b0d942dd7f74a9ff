"""The control loop in the live daemon: it ticks on the wall clock and shows its state, the head
as a standing VM it bills; `hybridserve loadgen` replays a slice over REST and over gRPC (short
form); a burst makes it buy a VM that joins as a Ray node and serves, then drains and releases
it (slow)."""
import asyncio
import csv
import os
import re
import subprocess
import sys
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
    # The loop starts once the catalog has its start-up measurements (up to ~1 min on a loaded machine).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _control(live).get("tick", {}).get("ticks", 0) < 2:
        time.sleep(1)
    c = _control(live)
    assert c["policy"] == "hybrid" and c["tick"]["ticks"] >= 2 and "tick" not in c["tick"]["errors"]
    assert c["tick"]["last_duration_s"] < 5 and set(c["cost_usd"]) == {"vm", "function", "total", "startup_function"}
    assert "digits" in c["forecast"] and isinstance(c["fleet"], list)
    # The head (serving.head_instance_type, default local.small) is a standing VM, billed from start.
    # Its rows are the head's own (local.small@head): procured local.small VMs take a longer path,
    # measured at start through a probe replica and added to their rows only.
    (head,) = c["standing"]
    assert head["instance_type"] == "local.small@head" and set(head["models"]) == {"digits-small", "digits-medium",
                                                                                      "digits-large"}
    assert c["cost_usd"]["vm"] > 0 and os.path.isdir(c["catalog_dir"])
    with open(os.path.join(c["catalog_dir"], "vm_latency.csv")) as fh:
        rows = [r for r in csv.DictReader(fh) if r["model"] == "digits-small" and r["batch_size"] == "1"]
    by_type = {r["instance_type"]: r for r in rows}
    assert "a procured VM's path" in by_type["local.small"]["source"]
    assert "a procured VM's path" not in by_type["local.small@head"]["source"]
    assert float(by_type["local.small"]["latency_ms"]) > float(by_type["local.small@head"]["latency_ms"])
    status, _, body = live.request("GET", "/metrics")
    for name in (b"hybridserve_control_ticks", b"hybridserve_control_tick_seconds", b"hybridserve_cost_usd",
                 b"hybridserve_forecast_requests_per_second", b"hybridserve_control_last_good_tick_timestamp_seconds"):
        assert name in body


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_loadgen_replays_a_slice(live, transport):
    """A short WITS slice through `hybridserve loadgen`; over gRPC the same figures come back
    (backends, variants from the response parameters) and the labels still reach /feedback."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    extra = ["--grpc", "--grpc-target", live.grpc_target] if transport == "grpc" else []
    out = subprocess.run([sys.executable, "-m", "controller.cli", "loadgen", "--url", live.url, "--app", "digits",
                          "--duration-s", "30", "--speedup", "10", "--rate-scale", "0.02", "--no-progress", *extra],
                         cwd=root, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    sent, ok, errors = map(int, re.search(r"requests ([\d,]+) in .*; ok ([\d,]+); errors ([\d,]+)",
                                           out.stdout.replace(",", "")).groups())
    assert sent > 50 and errors == 0 and ok == sent, out.stdout
    assert ("gRPC " + live.grpc_target in out.stdout) == (transport == "grpc")
    assert re.search(r"backends: \{'(vm|function)'", out.stdout) and "digits-" in out.stdout
    labelled = int(re.search(r"accuracy \(feedback\): [\d.]+ over (\d+) labels", out.stdout).group(1))
    assert labelled == ok


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
def test_burst_buys_a_vm_that_serves_then_is_released(live_without_head):
    x, _ = digits.test_samples()
    loop = asyncio.new_event_loop()
    try:
        served = []
        deadline = time.monotonic() + 150
        vm_seen = None
        while time.monotonic() < deadline:  # bursts of 10 s until a VM target has served some
            served += loop.run_until_complete(_burst(live_without_head.url, 25, 10, x))
            fleet = _control(live_without_head).get("fleet", [])  # empty until the first tick
            vm_seen = vm_seen or next((f["vm_id"] for f in fleet), None)
            if any(p.get("target", "").startswith("vm-") for p in served):
                break
        assert vm_seen, "the loop bought no VM under the burst"
        on_vm = [p for p in served if p.get("target", "").startswith("vm-")]
        assert on_vm and all(p["backend"] == "vm" and p["target"] == f"vm-{vm_seen}" for p in on_vm)
    finally:
        loop.close()
    # Idle: past scale_down_delay_s and the billing minimum the VM is drained and released.
    deadline = time.monotonic() + 240  # the policy keeps a VM while its forecast still wants it
    while time.monotonic() < deadline and _control(live_without_head)["fleet"]:
        time.sleep(2)
    c = _control(live_without_head)
    assert c["fleet"] == [] and c["cost_usd"]["vm"] > 0
    status, st = live_without_head.get_json("/status")
    assert all(t == {"head": 1} for t in st["vm_targets"].values())
    assert any(e.endswith(f"released {vm_seen}") for e in c["tick"]["events"])
