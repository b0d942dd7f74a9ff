"""On AWS, end to end against a moto server (slow; starts Ray twice; the short form without Ray
is tests/contract/test_aws_spill.py):

0. `hybridserve aws deploy`: the wheel, the functions from the image, the launch template.
1. `hybridserve run --config <aws config> --endpoint-url <moto>`; a burst makes the plan want
   VMs: describe-instances shows this deployment's tagged instances, launched from the deploy's
   launch template (moto's request recorder shows RunInstances naming it and sending no user
   data), never more than `vms.max_instances`; they never join the Ray cluster (moto), and the
   daemon keeps ticking and serving on the head's replicas. Spill decisions become Lambda
   invokes of the deployed functions (recorded by moto, each the request's sample); moto echoes
   them, so each is a failed call, served on a VM within the SLO (`retried_from`).
2. SIGTERM: the daemon exits cleanly, releasing its hold on the fleet: the instances are left
   running for the next start (release_on_exit false).
3. A second start adopts exactly those instances (no new launch), and, idle, terminates them
   as its plan says once the scale-down delay and billing minimum have passed.
4. `hybridserve aws destroy` removes the functions and the launch template.
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
def moto(tmp_path_factory):
    helpers = _contract_helpers()
    server = helpers.start_moto_server(recording_path=str(tmp_path_factory.mktemp("moto") / "requests.jsonl"))
    try:
        yield server, helpers.FAKE_ENV
    finally:
        server.stop()


def _recorded(moto_url: str, match) -> list[dict]:
    """The requests moto's recorder logged that `match(entry)` selects, bodies decoded."""
    import base64
    helpers = _contract_helpers()
    out = []
    for line in helpers.moto_api(moto_url, "/moto-api/recorder/download-recording", "GET").decode().splitlines():
        entry = json.loads(line)
        if entry.get("body_encoded"):
            entry["body"] = base64.b64decode(entry["body"]).decode(errors="replace")
        if match(entry):
            out.append(entry)
    return out


def _prepare_account(moto_url: str, env: dict) -> tuple[str, str]:
    """What a user makes before `aws deploy` (docs/aws.md steps 1-2): the image in ECR, the
    Lambda role, the workers' instance profile. Returns (image URI, role ARN)."""
    import boto3
    kw = dict(endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    ecr, iam = boto3.client("ecr", **kw), boto3.client("iam", **kw)
    ecr.create_repository(repositoryName="hybridserve-lambda")
    ecr.put_image(repositoryName="hybridserve-lambda", imageTag="0.1.0", imageManifest=json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "layers": [],
         "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                    "digest": "sha256:" + "0" * 64}}))
    role = iam.create_role(RoleName="hybridserve-lambda", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    iam.create_instance_profile(InstanceProfileName="hybridserve-worker")
    return "123456789012.dkr.ecr.us-east-1.amazonaws.com/hybridserve-lambda:0.1.0", role


def _write_config(path: str, moto_url: str, env: dict, deployment_id: str, image_uri: str, role_arn: str) -> None:
    """configs/aws.yaml, made small: the digits app, a low VM break-even, max_instances 2,
    moto's own subnets and security group, the deployed image and role, every request spilled
    (a tiny spill fraction: the VMs' measured time is always over it)."""
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
    # That price makes the burst's spill 35 x 3600 x 1e-4 = 12.6 USD/h, which the spend guard
    # counts with the VMs' (configs/aws.yaml caps both at 10 USD/h): lift the cap past it, so
    # the guard that binds here is max_instances.
    doc["vms"]["max_spend_usd_per_h"] = 50.0
    doc["serving"] = live["serving"]
    doc["serving"]["spill_fraction"] = 0.0001
    # As on AWS (configs/aws.yaml): the head is the controller's host, not a VM the plan counts,
    # so the burst is the procured fleet's to serve.
    doc["serving"]["head_instance_type"] = None
    doc["serving"]["control"] = {"instance_types": ["c5.large", "m5.large"], "policy": "hybrid",
                                 "policy_params": {"predictor": "moving-max"}, "vm_boot_s": 1, "drain_s": 1,
                                 "prewarm_functions": False}
    prov = doc["provider"]
    prov["deployment_id"] = deployment_id
    prov["vm"].update(subnet_ids=subnets, security_group_ids=[sg], ray_head_address="127.0.0.1:6379",
                      launch_template={"LaunchTemplateName": f"hybridserve-{deployment_id}", "Version": "$Default"})
    prov["function"].update(image_uri=image_uri, role_arn=role_arn)
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


async def _burst(url: str, rate_per_s: float, duration_s: float, x, served: list | None = None) -> int:
    """Send digits requests at `rate_per_s` for `duration_s`; returns how many were served (their
    response parameters appended to `served`)."""
    import aiohttp

    from serving.oip import HEADER_LENGTH, encode_infer_request, parse_infer_response

    ok = 0
    async with aiohttp.ClientSession() as s:
        async def one(i):
            nonlocal ok
            body, headers = encode_infer_request({"input": x[i % len(x)][None]})
            async with s.post(url + "/v2/models/digits/infer", data=body, headers=headers) as r:
                data = await r.read()
                ok += r.status == 200
                if r.status == 200 and served is not None:
                    served.append(parse_infer_response(data, r.headers.get(HEADER_LENGTH)).parameters)
        t0, tasks = time.perf_counter(), []
        for i in range(int(rate_per_s * duration_s)):
            await asyncio.sleep(max(0.0, t0 + i / rate_per_s - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return ok


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_deploy_run_spill_to_lambda_leave_the_fleet_at_sigterm_adopt_it_again_destroy(moto, tmp_path):
    from serving import digits

    server, fake_env = moto
    url = server.endpoint_url
    env = {**os.environ, **fake_env}
    env.setdefault("HYBRIDSERVE_CACHE", os.path.join(tempfile.gettempdir(), "hybridserve-test-cache"))
    deployment_id = f"it{os.getpid() % 100000}"
    config = str(tmp_path / "aws.yaml")
    image_uri, role_arn = _prepare_account(url, fake_env)
    _write_config(config, url, fake_env, deployment_id, image_uri, role_arn)
    x, _ = digits.test_samples()
    fn_names = {f"hs-{deployment_id}-{v}" for v in ("digits-small", "digits-medium", "digits-large")}
    helpers = _contract_helpers()

    # 0. Deploy: the wheel, the functions, the workers' launch template.
    done = _cli(["aws", "deploy", "--config", config, "--endpoint-url", url], env)
    assert done.returncode == 0, done.stderr
    assert f"create launch template hybridserve-{deployment_id}" in done.stdout
    assert sum(f"create Lambda function {n}" in done.stdout for n in fn_names) == 3
    helpers.moto_api(url, "/moto-api/recorder/reset-recording")
    helpers.moto_api(url, "/moto-api/recorder/start-recording")

    # 1. First start: a burst makes the plan want VMs, and every request spills first.
    first = Daemon(config, url, env)
    responses: list[dict] = []
    try:
        first.wait_ready()
        loop = asyncio.new_event_loop()
        launched, served, max_seen = {}, 0, 0
        deadline = time.monotonic() + 90
        try:
            while time.monotonic() < deadline and not launched:
                served += loop.run_until_complete(_burst(first.url, 35, 5, x, responses))
                launched = _instances(url, fake_env, deployment_id)
                max_seen = max(max_seen, len(launched))
        finally:
            loop.close()
        assert launched, f"the plan bought no VM under the burst:\n{first.tail()}\n{json.dumps(first.control())[:4000]}"
        assert served > 0  # served on the head's replicas while the instances never join Ray
        time.sleep(4)  # a couple more ticks: the fleet must not grow past the guard
        launched = _instances(url, fake_env, deployment_id)
        max_seen = max(max_seen, len(launched))
        assert 1 <= max_seen <= MAX_INSTANCES
        c = first.control()
        assert c["tick"]["ticks"] >= 2 and "tick" not in c["tick"]["errors"], c["tick"]
        assert {f["vm_id"] for f in c["fleet"]} == set(launched)
        assert {f["state"] for f in c["fleet"]} == {"ready-but-not-joined"}
        # The launches named the deploy's launch template and sent no user data of their own.
        runs = _recorded(url, lambda e: e["method"] == "POST" and "Action=RunInstances" in e["body"])
        assert runs and all(f"LaunchTemplate.LaunchTemplateName=hybridserve-{deployment_id}" in e["body"]
                            and "UserData=" not in e["body"] for e in runs), runs[:1]
        # Spill decisions became invokes of the deployed functions, each the request's sample.
        invokes = _recorded(url, lambda e: e["method"] == "POST" and "/invocations" in e["url"])
        assert invokes and {e["url"].split("/functions/")[1].split("/")[0] for e in invokes} <= fn_names
        assert all(json.loads(e["body"])["inputs"]["shape"] == [1, 1, 8, 8] for e in invokes)
        retried = [r for r in responses if r.get("retried_from", "").startswith("function:")]
        assert retried and all(r["backend"] == "vm" for r in retried)  # moto's echo, served on a VM
        assert len(invokes) >= sum(r.get("retried_from") == "function:error" for r in responses)
    finally:
        code = first.stop()
    assert code == 0, first.tail()
    # 2. SIGTERM left the fleet running for the next start.
    assert "for the next start to adopt" in first.tail(), first.tail()
    assert _instances(url, fake_env, deployment_id) == launched

    # 3. Second start: the same instances are adopted, none bought again; idle, the plan
    # terminates them once past scale_down_delay_s and the billing minimum.
    second = Daemon(config, url, env)
    try:
        second.wait_ready()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not second.control().get("tick", {}).get("adopted"):
            time.sleep(1)
        assert set(second.control()["tick"]["adopted"]) == set(launched), second.tail()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _instances(url, fake_env, deployment_id):
            time.sleep(2)
        assert _instances(url, fake_env, deployment_id) == {}, second.control()["tick"]
        every = _instances(url, fake_env, deployment_id,
                           ("pending", "running", "shutting-down", "terminated", "stopping", "stopped"))
        assert every == launched  # no launch beyond the first start's, one instance per request id
    finally:
        code = second.stop()
    assert code == 0, second.tail()

    # 4. Destroy: the functions and the launch template go.
    done = _cli(["aws", "destroy", "--config", config, "--endpoint-url", url], env)
    assert done.returncode == 0, done.stderr
    assert sum(f"delete Lambda function {n}" in done.stdout for n in fn_names) == 3
    assert f"delete launch template hybridserve-{deployment_id}" in done.stdout
