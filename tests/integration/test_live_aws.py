"""`hybridserve run --config <aws config> --endpoint-url <moto>`: the live daemon drives the AWS VM
provider against a moto server (slow; starts Ray twice).

1. A burst makes the plan want VMs: describe-instances shows this deployment's tagged
   instances, never more than `vms.max_instances`; they never join the Ray cluster (moto), and
   the daemon keeps ticking and serving on the head's replicas.
2. SIGTERM: the daemon exits cleanly and leaves the instances running (release_on_exit false).
3. A second start adopts exactly those instances (no new launch), and, idle, terminates them
   as its plan says once the scale-down delay and billing minimum have passed.
"""
import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest
import yaml

pytestmark = [pytest.mark.live, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_TIMEOUT_S = 240
STOP_TIMEOUT_S = 90
MAX_INSTANCES = 2


def _contract_helpers():
    """tests/contract/conftest.py's moto helpers (start_moto_server, FAKE_ENV), loaded by path:
    conftest modules are not importable by name across test folders."""
    spec = importlib.util.spec_from_file_location("contract_conftest_helpers",
                                                  os.path.join(ROOT, "tests", "contract", "conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto():
    helpers = _contract_helpers()
    server = helpers.start_moto_server()
    try:
        yield server, helpers.FAKE_ENV
    finally:
        server.stop()


def _write_config(path: str, moto_url: str, env: dict, deployment_id: str) -> None:
    """configs/aws.yaml, made small: the digits app, a low VM break-even, max_instances 2,
    moto's own subnets and security group."""
    import boto3
    ec2 = boto3.client("ec2", endpoint_url=moto_url, region_name="us-east-1",
                       aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    subnets = sorted(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"])[:2]
    sg = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    with open(os.path.join(ROOT, "configs", "aws.yaml")) as fh:
        doc = yaml.safe_load(fh)
    with open(os.path.join(ROOT, "tests", "integration", "live.yaml")) as fh:
        live = yaml.safe_load(fh)
    doc["catalog"] = {"dir": os.path.join(ROOT, "configs", "catalog")}
    doc["vms"].update(billing_minimum_s=10, max_instances=MAX_INSTANCES)
    doc["policy"].update(control_interval_s=2, scale_down_delay_s=12)
    # Functions priced 500x AWS's per-request fee: a c5.large (0.085 USD/h) pays for itself from
    # 0.085 / 3600 / 1e-4 = 0.24 req/s per variant. But a c5.large serves ~20k digits req/s, and
    # under max_instances the VM planner prices unmet demand at 1000x the dearest USD per
    # capacity, so it buys only past ~cap / 1000 = 16-26 req/s on one variant: hence 35 req/s.
    doc["functions"]["price_usd_per_request"] = 0.0001
    doc["serving"] = live["serving"]
    doc["serving"]["control"] = {"instance_types": ["c5.large", "m5.large"], "policy": "hybrid",
                                 "policy_params": {"predictor": "moving-max"}, "vm_boot_s": 1, "drain_s": 1,
                                 "prewarm_functions": False}
    prov = doc["provider"]
    prov["deployment_id"] = deployment_id
    prov["vm"].update(subnet_ids=subnets, security_group_ids=[sg], iam_instance_profile=None,
                      ray_head_address="127.0.0.1:6379")
    with open(path, "w") as fh:
        yaml.safe_dump(doc, fh)


def _instances(moto_url: str, env: dict, deployment_id: str, states=("pending", "running")) -> dict:
    """{instance id: request-id tag} of the deployment's instances in `states`."""
    import boto3
    ec2 = boto3.client("ec2", endpoint_url=moto_url, region_name="us-east-1",
                       aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    resp = ec2.describe_instances(Filters=[{"Name": "tag:hybridserve:deployment", "Values": [deployment_id]},
                                           {"Name": "instance-state-name", "Values": list(states)}])
    return {i["InstanceId"]: {t["Key"]: t["Value"] for t in i["Tags"]}["hybridserve:request-id"]
            for r in resp["Reservations"] for i in r["Instances"]}


class Daemon:
    def __init__(self, config: str, moto_url: str, env: dict):
        self.port, grpc = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="hybridserve-aws-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "controller.cli", "run", "--config", config, "--endpoint-url", moto_url,
               "--http-port", str(self.port), "--grpc-port", str(grpc)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def tail(self, n: int = 40) -> str:
        with open(self.log.name, errors="replace") as fh:
            return "".join(fh.readlines()[-n:])

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        pytest.fail(f"hybridserve run did not become ready:\n{self.tail()}")

    def control(self) -> dict:
        with urllib.request.urlopen(self.url + "/status", timeout=30) as r:
            return json.loads(r.read())["control"]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.log.close()
        return self.proc.returncode


async def _burst(url: str, rate_per_s: float, duration_s: float, x) -> int:
    """Send digits requests at `rate_per_s` for `duration_s`; returns how many were served."""
    import aiohttp

    from serving.oip import encode_infer_request

    ok = 0
    async with aiohttp.ClientSession() as s:
        async def one(i):
            nonlocal ok
            body, headers = encode_infer_request({"input": x[i % len(x)][None]})
            async with s.post(url + "/v2/models/digits/infer", data=body, headers=headers) as r:
                await r.read()
                ok += r.status == 200
        t0, tasks = time.perf_counter(), []
        for i in range(int(rate_per_s * duration_s)):
            await asyncio.sleep(max(0.0, t0 + i / rate_per_s - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return ok


def test_run_launches_on_moto_leaves_the_fleet_at_sigterm_and_adopts_it_again(moto, tmp_path):
    from serving import digits

    server, fake_env = moto
    env = {**os.environ, **fake_env}
    env.setdefault("HYBRIDSERVE_CACHE", os.path.join(tempfile.gettempdir(), "hybridserve-test-cache"))
    deployment_id = f"it{os.getpid() % 100000}"
    config = str(tmp_path / "aws.yaml")
    _write_config(config, server.endpoint_url, fake_env, deployment_id)
    x, _ = digits.test_samples()

    # 1. First start: a burst makes the plan want VMs.
    first = Daemon(config, server.endpoint_url, env)
    try:
        first.wait_ready()
        loop = asyncio.new_event_loop()
        launched, served, max_seen = {}, 0, 0
        deadline = time.monotonic() + 90
        try:
            while time.monotonic() < deadline and not launched:
                served += loop.run_until_complete(_burst(first.url, 35, 5, x))
                launched = _instances(server.endpoint_url, fake_env, deployment_id)
                max_seen = max(max_seen, len(launched))
        finally:
            loop.close()
        assert launched, f"the plan bought no VM under the burst:\n{first.tail()}"
        assert served > 0  # served on the head's replicas while the instances never join Ray
        time.sleep(4)  # a couple more ticks: the fleet must not grow past the guard
        launched = _instances(server.endpoint_url, fake_env, deployment_id)
        max_seen = max(max_seen, len(launched))
        assert 1 <= max_seen <= MAX_INSTANCES
        c = first.control()
        assert c["tick"]["ticks"] >= 2 and "tick" not in c["tick"]["errors"], c["tick"]
        assert {f["vm_id"] for f in c["fleet"]} == set(launched)
        assert {f["state"] for f in c["fleet"]} == {"ready-but-not-joined"}
    finally:
        code = first.stop()
    assert code == 0, first.tail()
    # 2. SIGTERM left the fleet running for the next start.
    assert "for the next start to adopt" in first.tail(), first.tail()
    assert _instances(server.endpoint_url, fake_env, deployment_id) == launched

    # 3. Second start: the same instances are adopted, none bought again; idle, the plan
    # terminates them once past scale_down_delay_s and the billing minimum.
    second = Daemon(config, server.endpoint_url, env)
    try:
        second.wait_ready()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not second.control().get("tick", {}).get("adopted"):
            time.sleep(1)
        assert set(second.control()["tick"]["adopted"]) == set(launched), second.tail()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _instances(server.endpoint_url, fake_env, deployment_id):
            time.sleep(2)
        assert _instances(server.endpoint_url, fake_env, deployment_id) == {}, second.control()["tick"]
        every = _instances(server.endpoint_url, fake_env, deployment_id,
                           ("pending", "running", "shutting-down", "terminated", "stopping", "stopped"))
        assert every == launched  # no launch beyond the first start's, one instance per request id
    finally:
        code = second.stop()
    assert code == 0, second.tail()
