"""Fixtures of the provider contract suite: one harness per provider implementation (fake,
aws; add local to VM_HARNESSES / FUNCTION_HARNESSES), and for aws a moto server on loopback.

The moto server is started once per test session as a subprocess on a free port, configured so
Lambda invokes echo their payload without docker, and stopped by its handle at the end. Fake
credentials only; nothing ever reaches AWS. Faults moto cannot produce (capacity, throttling)
are injected by `AwsFault` at the botocore wire.

Moto cannot run an image function, so where a test needs the handler's real answer
(`FunctionHarness.answer_next`), the aws harness runs the event through the Lambda image's entry
point under the real runtime client (`lambda_runtime`: awslambdaric and Dockerfile.lambda's CMD
handler against a Runtime API server, tests/lambda_runtime_api.py) and queues that answer at
moto (/moto-api/static/lambda-simple/response) for the next invoke; the fake harness runs the
same handler in process."""
from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

FAKE_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SECURITY_TOKEN": "testing", "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "NO_PROXY": "127.0.0.1,localhost"}
START_TIMEOUT_S = 30.0


@dataclass
class MotoServer:
    endpoint_url: str
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto_server(recording_path: str | None = None) -> MotoServer:
    """A moto server on a free loopback port; with `recording_path`, its request recorder writes
    there once started (`moto_invocations`; off until /moto-api/recorder/start-recording)."""
    port = _free_port()
    env = {**os.environ, **FAKE_ENV}
    if recording_path:
        env["MOTO_RECORDER_FILEPATH"] = recording_path
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto server did not start on {url}")
            time.sleep(0.1)
    req = urllib.request.Request(url + "/moto-api/config", method="POST",
                                 data=json.dumps({"lambda": {"use_docker": False}}).encode(),
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()
    return MotoServer(url, proc)


def moto_api(endpoint_url: str, path: str, method: str = "POST") -> bytes:
    req = urllib.request.Request(endpoint_url + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def moto_invocations(endpoint_url: str, function_name: str) -> list[dict]:
    """The Lambda invokes of `function_name` moto recorded since recording started, oldest first,
    each as its JSON payload (the recorder logs every request the server received)."""
    import base64
    out = []
    for line in moto_api(endpoint_url, "/moto-api/recorder/download-recording", "GET").decode().splitlines():
        entry = json.loads(line)
        if entry["method"] == "POST" and f"/functions/{function_name}/invocations" in entry["url"]:
            body = base64.b64decode(entry["body"]) if entry.get("body_encoded") else entry["body"].encode()
            out.append(json.loads(body or b"{}"))
    return out


# --- fixtures ----------------------------------------------------------------------------------
_DEPLOYMENT_SEQ = itertools.count(1)


@pytest.fixture(scope="session")
def moto_server():
    """The session's moto server, with fake credentials in the environment while it runs."""
    import tempfile
    saved = {k: os.environ.get(k) for k in FAKE_ENV}
    os.environ.update(FAKE_ENV)
    recording = os.path.join(tempfile.mkdtemp(prefix="moto-recording-"), "requests.jsonl")
    server = start_moto_server(recording_path=recording)
    try:
        yield server
    finally:
        server.stop()
        import shutil
        shutil.rmtree(os.path.dirname(recording), ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def moto_role_arn(moto_server) -> str:
    import boto3
    iam = boto3.client("iam", endpoint_url=moto_server.endpoint_url, region_name="us-east-1")
    return iam.create_role(RoleName="hybridserve-lambda", AssumeRolePolicyDocument="{}")["Role"]["Arn"]


@pytest.fixture(scope="session")
def moto_network(moto_server) -> dict:
    """Two subnets and a security group of moto's default VPC, and an AMI id (moto does not
    check it; listing moto's real AMIs would cost seconds)."""
    import boto3
    ec2 = boto3.client("ec2", endpoint_url=moto_server.endpoint_url, region_name="us-east-1")
    ami = "ami-0123456789abcdef0"
    subnets = sorted(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"])[:2]
    sg = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    return {"ami_id": ami, "subnet_ids": subnets, "security_group_ids": [sg]}


@pytest.fixture(scope="session")
def boto_session(moto_server):
    """One boto3 session for the suite: clients copy its event hooks when created, so faults
    registered on one client's events stay with that client."""
    import boto3
    return boto3.session.Session()


@pytest.fixture
def deployment_id() -> str:
    """A fresh deployment per test: tag-filtered lists never see another test's resources."""
    return f"t{os.getpid() % 10000}-{next(_DEPLOYMENT_SEQ)}"


# --- faults at the wire: a botocore before-call hook answers in AWS's place --------------------
class AwsFault:
    """Answer `event` (e.g. "before-call.ec2.RunInstances") with an AWS error `code` while
    `when(params)` holds, at most `times` times (None: always). This fakes AWS's reply, not our
    code: the provider sees exactly the ClientError real AWS would raise."""

    def __init__(self, events, event: str, code: str, status: int = 400, when=lambda body: True,
                 times: int | None = None):
        self.code, self.status, self.when, self.left, self.fired = code, status, when, times, 0
        events.register(event, self)

    def __call__(self, params, **kwargs):
        body = params.get("body")
        if (self.left is not None and self.left <= 0) or not self.when(body):
            return None  # pass through to the moto server
        if self.left is not None:
            self.left -= 1
        self.fired += 1
        from types import SimpleNamespace
        http = SimpleNamespace(status_code=self.status, headers={}, content=b"", raw=None)
        return http, {"Error": {"Code": self.code, "Message": f"injected {self.code}"},
                      "ResponseMetadata": {"HTTPStatusCode": self.status}}


# --- provider harnesses: one entry per implementation (add "local" here) -----------------------
ALLOWED_TYPES = ["c5.large", "c5.xlarge", "m5.large", "m5.xlarge"]


@dataclass
class VmHarness:
    name: str
    provider: Any
    restart: Callable[[], Any]  # the same deployment as a restarted controller sees it
    block_capacity: Callable[[str], None]  # launches of this type fail for lack of capacity
    ready_after_s: float  # by then every launched VM is ready
    extra: dict = field(default_factory=dict)


@dataclass
class FunctionHarness:
    name: str
    provider: Any
    restart: Callable[[], Any]
    # answer_next(model, event): the next invoke of `model` answers what the real handler
    # (serving/lambda_handler.py) answers to `event`
    answer_next: Callable[[str, dict], None] | None = None
    extra: dict = field(default_factory=dict)


def _catalog():
    from controller.catalog import load_catalog
    from controller.config import REPO_ROOT
    return load_catalog(os.path.join(REPO_ROOT, "configs", "catalog"))


def _fake_vm(request) -> VmHarness:
    from procurement.providers.fake import FakeVmProvider
    p = FakeVmProvider(boot_s=lambda instance_type: 30.0)
    # The fake's cloud is the object itself: a restarted controller sees the same object.
    return VmHarness("fake", p, lambda: p, p.faults.no_capacity_types.add, ready_after_s=31.0)


def aws_vm_provider(moto_server, network: dict, deployment_id: str, session, **kwargs):
    from procurement.providers.aws import AwsVmProvider
    from procurement.providers.aws_config import RetrySettings
    kwargs.setdefault("retry", RetrySettings(max_attempts=3, base_delay_s=0.01, max_delay_s=0.02))
    return AwsVmProvider(deployment_id, "us-east-1", _catalog(), ALLOWED_TYPES,
                         ray_head_address="10.0.0.1:6379", session=session,
                         endpoint_url=moto_server.endpoint_url, **{**network, **kwargs})


def _aws_vm(request) -> VmHarness:
    server, network = request.getfixturevalue("moto_server"), request.getfixturevalue("moto_network")
    dep, session = request.getfixturevalue("deployment_id"), request.getfixturevalue("boto_session")
    p = aws_vm_provider(server, network, dep, session)

    def block(instance_type: str) -> None:
        AwsFault(p.ec2.meta.events, "before-call.ec2.RunInstances", "InsufficientInstanceCapacity",
                 status=500, when=lambda body: body.get("InstanceType") == instance_type)
    return VmHarness("aws", p, lambda: aws_vm_provider(server, network, dep, session), block, ready_after_s=0.0)


def _fake_fn(request) -> FunctionHarness:
    from procurement.providers.fake import FakeFunctionProvider
    real: set[str] = set()  # models whose next invoke runs the real handler

    def handler(model, payload):
        if model in real:
            from serving import lambda_handler
            real.discard(model)
            return lambda_handler.handler({**payload, "model": model}, None), 1.0
        return payload, 1.0  # echo, as moto's Lambda does
    p = FakeFunctionProvider(handler=handler)
    return FunctionHarness("fake", p, lambda: p, answer_next=lambda model, event: real.add(model))


def aws_function_provider(moto_server, role_arn: str, deployment_id: str, **kwargs):
    from procurement.providers.aws_lambda import AwsFunctionProvider
    from procurement.providers.aws_config import RetrySettings
    kwargs.setdefault("retry", RetrySettings(max_attempts=3, base_delay_s=0.01, max_delay_s=0.02))
    return AwsFunctionProvider(deployment_id, "us-east-1",
                               "123456789012.dkr.ecr.us-east-1.amazonaws.com/hybridserve:test", role_arn,
                               endpoint_url=moto_server.endpoint_url, **kwargs)


def queue_moto_lambda_result(moto_server, body) -> None:
    """Make moto's next Lambda invoke (any function) answer `body` instead of the echo."""
    req = urllib.request.Request(moto_server.endpoint_url + "/moto-api/static/lambda-simple/response",
                                 method="POST", headers={"Content-Type": "application/json"},
                                 data=json.dumps({"results": [json.dumps(body)], "region": "us-east-1"}).encode())
    urllib.request.urlopen(req, timeout=5).read()


def _aws_fn(request) -> FunctionHarness:
    server, role = request.getfixturevalue("moto_server"), request.getfixturevalue("moto_role_arn")
    dep, session = request.getfixturevalue("deployment_id"), request.getfixturevalue("boto_session")
    p = aws_function_provider(server, role, dep, session=session)

    def answer_next(model: str, event: dict) -> None:
        runtime = request.getfixturevalue("lambda_runtime")
        assert model == runtime.model, f"the runtime serves {runtime.model}, not {model}"
        outcome = runtime.invoke(event)
        assert outcome[0] == "response", outcome
        queue_moto_lambda_result(server, outcome[1])
    return FunctionHarness("aws", p, lambda: aws_function_provider(server, role, dep, session=session),
                           answer_next=answer_next)


VM_HARNESSES = {"fake": _fake_vm, "aws": _aws_vm}
FUNCTION_HARNESSES = {"fake": _fake_fn, "aws": _aws_fn}


@pytest.fixture(params=sorted(VM_HARNESSES))
def vm_harness(request) -> VmHarness:
    return VM_HARNESSES[request.param](request)


@pytest.fixture(params=sorted(FUNCTION_HARNESSES))
def fn_harness(request) -> FunctionHarness:
    return FUNCTION_HARNESSES[request.param](request)


# --- factories for the aws-only cases (fixtures, so test modules import nothing from here) -----
@pytest.fixture
def make_aws_vm(moto_server, moto_network, deployment_id, boto_session):
    """`make_aws_vm(**overrides)`: an AwsVmProvider on this test's deployment."""
    return lambda **kw: aws_vm_provider(moto_server, moto_network, deployment_id,
                                        kw.pop("session", boto_session), **kw)


@pytest.fixture
def make_aws_fn(moto_server, moto_role_arn, deployment_id, boto_session):
    """`make_aws_fn(**overrides)`: an AwsFunctionProvider on this test's deployment."""
    return lambda **kw: aws_function_provider(moto_server, moto_role_arn, deployment_id,
                                              **{"session": boto_session, **kw})


@pytest.fixture
def aws_fault():
    return AwsFault


@pytest.fixture
def lambda_invocations(moto_server):
    """`lambda_invocations(function_name)`: the invokes moto recorded during this test."""
    moto_api(moto_server.endpoint_url, "/moto-api/recorder/reset-recording")
    moto_api(moto_server.endpoint_url, "/moto-api/recorder/start-recording")
    try:
        yield lambda name: moto_invocations(moto_server.endpoint_url, name)
    finally:
        moto_api(moto_server.endpoint_url, "/moto-api/recorder/stop-recording")


@pytest.fixture
def queue_lambda_result(moto_server):
    """`queue_lambda_result(body)`: moto's next Lambda invoke answers `body` instead of the echo."""
    return lambda body: queue_moto_lambda_result(moto_server, body)


@pytest.fixture
def catalog():
    return _catalog()


# --- the Lambda image's entry point under the real runtime client -------------------------------
RUNTIME_MODEL = "digits-small"


def dockerfile_handler() -> str:
    """The handler Dockerfile.lambda's CMD names (what Lambda's bootstrap hands awslambdaric)."""
    import re
    from controller.config import REPO_ROOT
    text = open(os.path.join(REPO_ROOT, "Dockerfile.lambda")).read()
    return re.search(r'^CMD \["([\w.]+)"\]', text, re.M).group(1)


@pytest.fixture(scope="session")
def make_lambda_runtime(tmp_path_factory):
    """`make_lambda_runtime()`: a new execution environment of the Lambda image serving
    RUNTIME_MODEL: `python -m awslambdaric <CMD handler>` polling a Runtime API server on
    127.0.0.1 (tests/lambda_runtime_api.py), with the image's environment (HYBRIDSERVE_MODEL per
    function, the weights folder, the mxnet runtime) and one cache for the session (digits are
    trained at the first load ever; every environment's first load is its cold start). Each is
    closed at the end of the session."""
    from lambda_runtime_api import LambdaRuntime
    tmp = tmp_path_factory.mktemp("lambda-runtime")
    (tmp / "weights").mkdir()
    made = []

    def make():
        runtime = LambdaRuntime(dockerfile_handler(), env={
            "HYBRIDSERVE_MODEL": RUNTIME_MODEL, "HYBRIDSERVE_RUNTIME": "mxnet",
            "HYBRIDSERVE_WEIGHTS_DIR": str(tmp / "weights"), "HYBRIDSERVE_CACHE": str(tmp / "cache"),
            "OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1"},
            log_path=str(tmp / f"runtime-{len(made)}.log"))
        runtime.model = RUNTIME_MODEL
        made.append(runtime)
        return runtime
    try:
        yield make
    finally:
        for runtime in made:
            runtime.close()


@pytest.fixture(scope="session")
def lambda_runtime(make_lambda_runtime):
    """The session's shared execution environment (the aws harness's `answer_next`)."""
    return make_lambda_runtime()
