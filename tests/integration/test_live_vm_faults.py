"""Local VM faults in the live daemon (slow; one daemon of its own, started with
HYBRIDSERVE_VM_FAULTS="die_after_s=60"): under a burst the loop buys a VM whose Ray node is
killed 60 s after it started (time for it to join and serve on a loaded 2-core machine), with requests in flight on its replicas; every request still gets
exactly one answer (a result, retried on another target if need be, or an explicit 503 JSON
error: zero silent drops) and the loop counts the death. Then the daemon is SIGKILLed with a
local VM up: no process of it (Ray head, the VM's `ray start` and raylet, replicas, function
workers) is left."""
import asyncio
import json
import signal
import time

import pytest
from conftest import _alive, _descendants, serve_without_head

from serving import digits
from serving.oip import encode_infer_request, parse_infer_response

pytestmark = [pytest.mark.live, pytest.mark.slow]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    yield from serve_without_head(tmp_path_factory.mktemp("vm-faults"), HYBRIDSERVE_VM_FAULTS="die_after_s=60")


def _control(live) -> dict:
    return live.get_json("/status")[1]["control"]


async def _burst(url: str, rate_per_s: float, duration_s: float, x, out: list) -> None:
    """Send at `rate_per_s`; append (status, parameters or error) per request, or
    ("no answer", repr) when the connection gave none (a silent drop)."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        async def one(i):
            # 32 samples a request: longer in flight, so some are on the VM when its node dies
            body, headers = encode_infer_request({"input": x[(i * 32) % (len(x) - 32):][:32]})
            try:
                async with s.post(url + "/v2/models/digits/infer", data=body, headers=headers) as r:
                    raw = await r.read()
                    if r.status == 200:
                        resp = parse_infer_response(raw, r.headers.get("Inference-Header-Content-Length"))
                        out.append((200, resp.parameters))
                    else:
                        out.append((r.status, json.loads(raw)))
            except Exception as e:  # noqa: BLE001 - any failure to get an answer counts as lost
                out.append(("no answer", repr(e)))
        t0, tasks = time.perf_counter(), []
        for i in range(int(rate_per_s * duration_s)):
            await asyncio.sleep(max(0.0, t0 + i / rate_per_s - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)


def test_a_vm_killed_mid_request_loses_no_request(faulty):
    x, _ = digits.test_samples()
    answers: list = []
    loop = asyncio.new_event_loop()
    try:
        # 1. bursts until a VM target has served (earlier VMs may die before they join: fine)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(
                a[0] == 200 and a[1].get("target", "").startswith("vm-") for a in answers):
            loop.run_until_complete(_burst(faulty.url, 25, 10, x, answers))
        assert any(a[0] == 200 and a[1].get("target", "").startswith("vm-") for a in answers), \
            f"no VM served under the burst: {_control(faulty)['tick']}"
        # 2. the load goes on until that VM (max_vms 1: the only one) is killed under it, and after
        died_before = _control(faulty)["tick"]["errors"].get("provider_died", 0)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _control(faulty)["tick"]["errors"].get("provider_died", 0) <= died_before:
            loop.run_until_complete(_burst(faulty.url, 25, 5, x, answers))
        loop.run_until_complete(_burst(faulty.url, 25, 5, x, answers))
    finally:
        loop.close()
    c = _control(faulty)
    assert c["tick"]["errors"].get("provider_died", 0) >= 1, c["tick"]
    # The dead VM's Serve app is deleted and the router stops sending to it.
    served_from = {a[1]["target"] for a in answers if a[0] == 200 and a[1].get("target", "").startswith("vm-")}

    def stale() -> set[str]:  # targets of VMs that served and are no longer serving (a replacement may be)
        return served_from & (_targets(faulty) - _serving(faulty))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and stale():
        time.sleep(2)
    assert not stale(), _targets(faulty)
    lost = [a for a in answers if a[0] not in (200, 503)]
    assert not lost, lost[:5]  # every request answered: a result or an explicit error
    errors = [a[1] for a in answers if a[0] == 503]
    assert all(isinstance(e, dict) and e.get("error") for e in errors), errors[:3]
    retried = [a[1]["retried_from"] for a in answers if a[0] == 200 and "retried_from" in a[1]]
    status, _, metrics = faulty.request("GET", "/metrics")
    on_vm = sum(1 for a in answers if a[0] == 200 and a[1].get("target", "").startswith("vm-"))
    print(f"\nanswers {len(answers)}: 200 {sum(a[0] == 200 for a in answers)} ({on_vm} on a VM), "
          f"503 {len(errors)}, lost 0; retried {len(retried)} {sorted(set(retried))[:3]}; "
          f"events {[e for e in _control(faulty)['tick']['events'] if 'vm' in e][-6:]}")
    assert b"hybridserve_vm_retries" in metrics


def test_sigkilled_daemon_leaves_no_process_behind(faulty):
    # A VM up: a local VM's `ray start` child of the daemon (the burst buys one; it may be a
    # replacement of the one that died).
    x, _ = digits.test_samples()
    loop = asyncio.new_event_loop()
    vm_pids: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not vm_pids:
            loop.run_until_complete(_burst(faulty.url, 25, 5, x, []))
            vm_pids = {p for p in _descendants(faulty.proc.pid) if _is_vm_node(p)}
    finally:
        loop.close()
    assert vm_pids, "no local VM came up under the burst"
    tree = _descendants(faulty.proc.pid)
    faulty.proc.send_signal(signal.SIGKILL)
    faulty.proc.wait(timeout=30)
    deadline = time.monotonic() + 150  # Ray's agents notice their raylet is gone within ~60-90 s here
    while time.monotonic() < deadline and any(_alive(p) for p in tree):
        time.sleep(0.5)
    left = sorted(p for p in tree if _alive(p))
    assert not left, f"left behind by a SIGKILLed daemon: {[(p, _cmdline(p)) for p in left]}"


def _targets(live) -> set[str]:
    return {k for t in live.get_json("/status")[1]["vm_targets"].values() for k in t}


def _serving(live) -> set[str]:
    """Serve apps of the VMs the loop shows serving now (a replacement may have joined)."""
    return {f"vm-{f['vm_id']}" for f in _control(live)["fleet"] if f["state"] == "serving"}


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")[:160]
    except OSError:
        return "?"


def _is_vm_node(pid: int) -> bool:
    cmd = _cmdline(pid)
    return " start " in cmd and "localvm-" in cmd
