"""What only the aws providers do, against the moto server: capacity fallback to the next
cheapest type, throttling backoff, user data and tags, spot interruptions reported, Lambda
image functions, throttled invokes, warm-up pings, and building from configs/aws.yaml."""
from __future__ import annotations

import base64
import os

import boto3
import pytest

from controller.config import REPO_ROOT, load_config
from procurement.providers.aws_lambda import AwsFunctionProvider, providers_from_config
from procurement.providers.aws import (EC2_STATE, TAG_DEPLOYMENT, TAG_MODEL, TAG_REQUEST,
                                       AwsVmProvider)
from procurement.providers.aws_config import RetrySettings
from procurement.providers.guards import Guard

T0_S = 500.0


@pytest.fixture
def ec2(moto_server, boto_session):
    return boto_session.client("ec2", endpoint_url=moto_server.endpoint_url, region_name="us-east-1")


ALLOWED_TYPES = ["c5.large", "c5.xlarge", "m5.large", "m5.xlarge"]  # as the harness in conftest.py


@pytest.fixture
def vms(make_aws_vm) -> AwsVmProvider:
    return make_aws_vm()


@pytest.fixture
def block(aws_fault):
    """block(provider, instance_type, subnet=None): that type (in that subnet) has no capacity."""
    return lambda p, instance_type, subnet=None: aws_fault(
        p.ec2.meta.events, "before-call.ec2.RunInstances", "InsufficientInstanceCapacity", 500,
        when=lambda body: body.get("InstanceType") == instance_type and subnet in (None, body.get("SubnetId")))


def test_capacity_error_falls_back_to_the_next_cheapest_allowed_type(vms, block):
    # c5.large 0.085 USD/h; allowed types with >= 2 vCPU and >= that price: m5.large 0.096,
    # c5.xlarge 0.17, m5.xlarge 0.192. The next cheapest is m5.large.
    assert vms.fallback_chain("c5.large") == ["c5.large", "m5.large", "c5.xlarge"]
    block(vms, "c5.large")
    vm_id = vms.launch("req-1", "c5.large", "inception", T0_S)
    [vm] = vms.list(T0_S)
    assert (vm.vm_id, vm.instance_type) == (vm_id, "m5.large")
    [err] = vms.poll_errors()
    assert err.kind == "capacity" and "launched m5.large instead of c5.large" in err.message


def test_capacity_in_one_subnet_tries_the_next_subnet_first(vms, block, moto_network):
    block(vms, "c5.large", subnet=moto_network["subnet_ids"][0])
    vm_id = vms.launch("req-1", "c5.large", "inception", T0_S)
    [vm] = vms.list(T0_S)
    assert (vm.vm_id, vm.instance_type) == (vm_id, "c5.large")


def test_no_capacity_anywhere_launches_nothing_and_says_so(vms, block):
    for t in ALLOWED_TYPES:
        block(vms, t)
    assert vms.launch("req-1", "c5.large", "inception", T0_S) == ""
    assert vms.list(T0_S) == []
    [err] = vms.poll_errors()
    assert err.kind == "capacity" and err.message.startswith("no capacity for req-1")


def test_worst_case_price_bounds_what_the_guard_lets_through(vms):
    price = vms.worst_case_price_usd_per_h
    assert price("c5.large") == pytest.approx(0.17)  # c5.xlarge is in its fallback chain
    allowed, refused = Guard(10, 0.3).filter_launches(
        [type("L", (), dict(request_id=f"r{i}", instance_type="c5.large", spot=False))() for i in range(3)],
        [], price)
    assert len(allowed) == 1 and len(refused) == 2  # 2 x 0.17 > 0.3, though 3 x 0.085 would fit


def test_throttling_backs_off_with_capped_delays_then_succeeds(make_aws_vm, aws_fault):
    sleeps = []
    p = make_aws_vm(sleep=sleeps.append, retry=RetrySettings(max_attempts=4, base_delay_s=0.5, max_delay_s=1.0))
    fault = aws_fault(p.ec2.meta.events, "before-call.ec2.RunInstances", "RequestLimitExceeded", 503, times=3)
    assert p.launch("req-1", "c5.large", "inception", T0_S)
    assert fault.fired == 3 and len(sleeps) == 3
    assert 0.25 <= sleeps[0] <= 0.5 and all(s <= 1.0 for s in sleeps)
    assert p.poll_errors() == []


def test_throttling_past_the_bound_is_reported(make_aws_vm, aws_fault):
    sleeps = []
    p = make_aws_vm(sleep=sleeps.append)
    aws_fault(p.ec2.meta.events, "before-call.ec2.RunInstances", "RequestLimitExceeded", 503)
    assert p.launch("req-1", "c5.large", "inception", T0_S) == ""
    [err] = p.poll_errors()
    assert err.kind == "throttled" and err.transient and len(sleeps) == 2  # 3 attempts


def test_instances_carry_tags_user_data_and_launch_options(vms, ec2):
    vm_id = vms.launch("req-7", "c5.xlarge", "resnet18", T0_S, spot=True)
    inst = ec2.describe_instances(InstanceIds=[vm_id])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
    assert tags[TAG_DEPLOYMENT] == vms.deployment_id and tags[TAG_REQUEST] == "req-7"
    assert tags[TAG_MODEL] == "resnet18" and inst["InstanceLifecycle"] == "spot"
    raw = ec2.describe_instance_attribute(InstanceId=vm_id, Attribute="userData")["UserData"]["Value"]
    script = base64.b64decode(raw).decode()
    assert "ray start --address=10.0.0.1:6379 --num-cpus=4" in script
    assert "--resources '{\\\"${VM_ID}\\\": 1}' --block" in script
    assert "pip install --quiet hybridserve" in script and "HYBRIDSERVE_MODEL=resnet18" in script


def test_terminate_refuses_instances_of_other_deployments(vms, ec2, moto_network):
    other = ec2.run_instances(ImageId=moto_network["ami_id"], MinCount=1, MaxCount=1,
                              InstanceType="c5.large")["Instances"][0]["InstanceId"]
    vms.terminate(other, T0_S)
    state = ec2.describe_instances(InstanceIds=[other])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"


def test_a_vm_that_vanishes_is_reported_died(vms, ec2):
    vm_id = vms.launch("req-1", "c5.large", "inception", T0_S)
    assert len(vms.list(T0_S)) == 1
    ec2.terminate_instances(InstanceIds=[vm_id])  # a spot interruption, seen from outside
    assert vms.list(T0_S + 10) == []
    [err] = vms.poll_errors()
    assert err.kind == "died" and vm_id in err.message


def test_ec2_states_map_to_booting_ready_terminating():
    assert (EC2_STATE["pending"], EC2_STATE["running"], EC2_STATE["stopping"]) == \
        ("booting", "ready", "terminating")


# --- Lambda -----------------------------------------------------------------------------------
def test_functions_are_image_functions_with_reserved_concurrency(make_aws_fn):
    p = make_aws_fn(reserved_concurrency=5)
    p.deploy("inception", 2048)
    fn = p.lam.get_function(FunctionName=p.function_name("inception"))
    assert fn["Configuration"]["PackageType"] == "Image" and fn["Code"]["ImageUri"] == p.image_uri
    assert fn["Configuration"]["Environment"]["Variables"]["HYBRIDSERVE_MODEL"] == "inception"
    assert fn["Concurrency"]["ReservedConcurrentExecutions"] == 5
    p.update_image("123456789012.dkr.ecr.us-east-1.amazonaws.com/hybridserve:v2")
    fn = p.lam.get_function(FunctionName=p.function_name("inception"))
    assert fn["Code"]["ImageUri"].endswith("hybridserve:v2")
    assert p.poll_errors() == []


def test_throttled_invokes_are_retried(make_aws_fn, aws_fault):
    # A session of its own: invoke clients are made on first use and copy the session's hooks.
    session, sleeps = boto3.session.Session(), []
    fault = aws_fault(session.events, "before-call.lambda.Invoke", "TooManyRequestsException", 429, times=2)
    p = make_aws_fn(session=session, sleep=sleeps.append)
    p.deploy("inception", 1024)
    res = p.invoke("inception", {"n": 1}, timeout_s=10)
    assert res.ok and res.payload == {"n": 1} and fault.fired == 2 and len(sleeps) == 2
    aws_fault(session.events, "before-call.lambda.Invoke", "TooManyRequestsException", 429)
    p2 = make_aws_fn(session=session, sleep=sleeps.append)
    p2.adopt()
    assert p2.invoke("inception", {"n": 2}, timeout_s=10).error == "throttled"


def test_warm_pools_are_kept_by_concurrent_warmup_pings(make_aws_fn):
    p = make_aws_fn(prewarm_interval_s=300)
    p.deploy("inception", 1024, warm_pool=3)
    p.deploy("resnet18", 1024, warm_pool=0)
    assert p.prewarm(now_s=0.0) == 3
    assert p.prewarm(now_s=100.0) == 0  # not due yet
    assert p.prewarm(now_s=300.0) == 3
    assert p.poll_errors() == []


def test_provisioned_concurrency_unsupported_by_moto_is_reported_not_raised(make_aws_fn):
    p = make_aws_fn(provisioned_concurrency=True)
    p.deploy("inception", 1024, warm_pool=2)  # moto 5 has no PutProvisionedConcurrencyConfig
    errors = p.poll_errors()
    assert [e.kind for e in errors] == ["api"] and "deploy" in errors[0].message
    assert [r.warm_pool for r in p.describe()] == [2]
    assert p.invoke("inception", {"ok": 1}, timeout_s=5).ok  # still served, unaliased


# --- from the config ----------------------------------------------------------------------------
def test_providers_build_from_configs_aws_yaml(moto_server, moto_network, moto_role_arn, catalog):
    cfg = load_config(os.path.join(REPO_ROOT, "configs", "aws.yaml"))
    iam = boto3.client("iam", endpoint_url=moto_server.endpoint_url, region_name="us-east-1")
    try:  # the session's moto server may hold it already (tests/contract/test_aws_deploy.py)
        iam.create_instance_profile(InstanceProfileName=cfg.provider["vm"]["iam_instance_profile"])
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    provider = {**cfg.provider, "deployment_id": "cfgtest",
                "vm": {**cfg.provider["vm"], **moto_network},
                "function": {**cfg.provider["function"], "role_arn": moto_role_arn}}
    vm, fn = providers_from_config(cfg.model_copy(update={"provider": provider}), catalog,
                                   endpoint_url=moto_server.endpoint_url)
    assert vm.instance_types == cfg.vms.instance_types and fn.prewarm_interval_s == cfg.functions.prewarm_interval_s
    # configs/aws.yaml boots workers from the launch template `hybridserve aws deploy` writes
    # (tests/contract/test_aws_deploy.py); before a deploy there is none, and the error says so.
    template = cfg.provider["vm"]["launch_template"]["LaunchTemplateName"]
    assert vm.user_data_template is None
    assert vm.launch("req-cfg-0", "c5.large", "inception", T0_S) == ""
    assert "run `hybridserve aws deploy` first" in vm.poll_errors()[0].message
    ec2 = boto3.client("ec2", endpoint_url=moto_server.endpoint_url, region_name="us-east-1")
    ec2.create_launch_template(LaunchTemplateName=template, LaunchTemplateData={"UserData": "IyEvYmluL2Jhc2g="})
    vm_id = vm.launch("req-cfg", "c5.large", "inception", T0_S)
    assert [v.vm_id for v in vm.list(T0_S)] == [vm_id]
    ec2.delete_launch_template(LaunchTemplateName=template)
    fn.deploy("inception", 1024)
    assert fn.invoke("inception", {"warmup": True}, timeout_s=5).ok
    assert isinstance(fn, AwsFunctionProvider) and vm.poll_errors() == [] and fn.poll_errors() == []


def test_a_bad_provider_section_names_the_key(catalog):
    from controller.config import ConfigError
    with pytest.raises(ConfigError, match=r"provider\.vm\.subnet_ids"):
        AwsVmProvider.from_config({"region": "us-east-1", "deployment_id": "x",
                                   "vm": {"ray_head_address": "h:1", "ami_id": "ami-1", "subnet_ids": "subnet-1"},
                                   "function": {"image_uri": "i", "role_arn": "arn:aws:iam::123456789012:role/r"}},
                                  catalog)
