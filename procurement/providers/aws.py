"""AWS providers: EC2 VMs that join the Ray cluster, and one Lambda function per model.

The only module in hybridserve that imports boto3 (lazily, so importing it costs nothing and
needs no AWS libraries). It implements the protocols of `base.py`:

- `AwsVmProvider`: one EC2 instance per launch request. `ClientToken` is derived from the
  request id, and before launching the provider looks the request id up by tag, so a controller
  restarted mid-decision never launches twice. Every instance is tagged with the deployment
  id, request id and model; `list` and `adopt` find them by tag. User data (a template)
  installs hybridserve and runs `ray start --address=<head> --resources '{"<instance id>": 1}'
  --block`; the Ray Serve placement uses that resource. A capacity error falls back to the next
  cheapest allowed type (per subnet, then per type); throttling backs off with capped
  exponential backoff for a bounded number of attempts. Errors are reported by `poll_errors`.
- `AwsFunctionProvider` (aws_lambda.py) and `S3ObjectStore` (aws_s3.py) use the client helpers
  here, so boto3 is still imported in this module only.

Readiness: a VM is `ready` here when EC2 says `running`. That is not serving readiness: the
Ray node joins a minute or so later, and the live shell must treat the node's appearance in
the Ray cluster as the real signal (see docs/aws.md).

EC2 and Lambda are eventually consistent: an instance just launched may be missing from
describe-instances for a few seconds, which is why a VM is only reported `died` after it has
been seen once and then vanished without our terminating it.
"""
from __future__ import annotations

import hashlib
import shlex
import string
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np

from procurement.providers.aws_config import AwsProviderConfig, RetrySettings
from procurement.providers.base import ProviderError, VmRecord

TAG_DEPLOYMENT = "hybridserve:deployment"
TAG_REQUEST = "hybridserve:request-id"
TAG_MODEL = "hybridserve:model"
TAG_WARM_POOL = "hybridserve:warm-pool"
TAG_BATCH = "hybridserve:batch-size"

THROTTLE_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException",
                            "TooManyRequestsException", "ThrottledException", "SlowDown"})
# Codes after which another type or subnet may still succeed.
CAPACITY_CODES = frozenset({"InsufficientInstanceCapacity", "InsufficientCapacity",
                            "InsufficientHostCapacity", "Unsupported", "SpotMaxPriceTooLow",
                            "MaxSpotInstanceCountExceeded", "InsufficientFreeAddressesInSubnet"})
NOT_FOUND_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})
LIVE_EC2_STATES = ("pending", "running", "shutting-down", "stopping", "stopped")
# EC2 state -> VmRecord state. `running` is only the OS being up; see the module docstring.
EC2_STATE = {"pending": "booting", "running": "ready", "shutting-down": "terminating",
             "stopping": "terminating", "stopped": "terminating", "terminated": "terminated"}

DEFAULT_USER_DATA = """#!/bin/bash
# hybridserve worker ${deployment_id} / ${request_id}: joins the Ray cluster as one node
# carrying a resource named after this instance, so Ray Serve can place replicas on it.
set -euo pipefail
TOKEN=$$(curl -sX PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
VM_ID=$$(curl -s -H "X-aws-ec2-metadata-token: $$TOKEN" http://169.254.169.254/latest/meta-data/instance-id)
python3 -m pip install --quiet ${pip_spec}
export HYBRIDSERVE_DEPLOYMENT=${deployment_id_q} HYBRIDSERVE_MODEL=${model_q}
# When the Ray node exits the instance shuts down, and InstanceInitiatedShutdownBehavior=terminate
# ends its billing: a worker never outlives its node.
nohup bash -c "ray start --address=${ray_head_address} --num-cpus=${vcpu} --resources '{\\"$${VM_ID}\\": 1}' --block; shutdown -h now" \\
  >/var/log/hybridserve-ray.log 2>&1 &
"""


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _boto3():
    import boto3  # lazy: only the aws shell needs it
    return boto3


class _Backoff:
    """Capped exponential backoff with jitter for throttled calls, a bounded number of times."""

    def __init__(self, retry: RetrySettings, sleep: Callable[[float], None], rng: np.random.Generator):
        self.retry, self.sleep, self.rng = retry, sleep, rng

    def delay_s(self, attempt: int) -> float:
        # attempt 0 -> base, 1 -> 2*base, ... capped; jitter in [0.5, 1) spreads retries of
        # many callers so they do not hit the API again in lockstep.
        cap = min(self.retry.max_delay_s, self.retry.base_delay_s * 2.0 ** attempt)
        return float(cap * (0.5 + 0.5 * self.rng.random()))

    def call(self, fn: Callable[..., Any], **kwargs) -> Any:
        for attempt in range(self.retry.max_attempts):
            try:
                return fn(**kwargs)
            except Exception as e:  # botocore ClientError carries .response
                if _error_code(e) not in THROTTLE_CODES or attempt + 1 >= self.retry.max_attempts:
                    raise
                self.sleep(self.delay_s(attempt))
        raise AssertionError("unreachable")


def _client(session, service: str, region: str, endpoint_url: str | None, read_timeout_s: float = 60):
    from botocore.config import Config
    # Retries are ours (bounded, reported), not botocore's hidden ones.
    cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5,
                 read_timeout=read_timeout_s)
    return session.client(service, region_name=region, endpoint_url=endpoint_url, config=cfg)


class _Reporter:
    def __init__(self):
        self._errors: list[ProviderError] = []
        self._lock = threading.Lock()

    def report(self, exc_or_kind, message: str = "", request_id: str | None = None,
               transient: bool = True) -> None:
        if isinstance(exc_or_kind, BaseException):
            code = _error_code(exc_or_kind)
            kind = "throttled" if code in THROTTLE_CODES else "capacity" if code in CAPACITY_CODES else "api"
            # Auth and validation errors will not fix themselves; the rest may.
            transient = not (code.startswith(("Unauthorized", "AccessDenied", "InvalidParameter", "Invalid"))
                             or code in ("AuthFailure", "ValidationException", "NoSuchEntity"))
            err = ProviderError(kind, f"{message}: {code or type(exc_or_kind).__name__}: {exc_or_kind}",
                                request_id, transient)
        else:
            err = ProviderError(exc_or_kind, message, request_id, transient)
        with self._lock:
            self._errors.append(err)

    def poll(self) -> list[ProviderError]:
        with self._lock:
            errs, self._errors = self._errors, []
        return errs


def _client_token(deployment_id: str, request_id: str, instance_type: str) -> str:
    """ClientToken for one launch attempt: <= 64 ASCII chars, stable across restarts, scoped to
    the deployment (tokens are account-wide) and to the type (a fallback type is a new request
    to EC2; reusing a token with other parameters fails with IdempotentParameterMismatch)."""
    raw = f"{deployment_id}/{request_id}/{instance_type}"
    return raw if len(raw) <= 64 else hashlib.sha256(raw.encode()).hexdigest()


class AwsVmProvider:
    """EC2 instances of one deployment (see the module docstring)."""

    def __init__(self, deployment_id: str, region: str, catalog: Any, instance_types: list[str], *,
                 ray_head_address: str, ami_id: str | None = None, launch_template: dict | None = None,
                 user_data_template: str | None = DEFAULT_USER_DATA, subnet_ids: list[str] | tuple = (),
                 security_group_ids: list[str] | tuple = (), iam_instance_profile: str | None = None,
                 key_name: str | None = None, pip_spec: str = "hybridserve", max_fallbacks: int = 2,
                 extra_tags: dict[str, str] | None = None, endpoint_url: str | None = None,
                 retry: RetrySettings = RetrySettings(), session: Any = None,
                 sleep: Callable[[float], None] = time.sleep, rng: np.random.Generator | None = None,
                 wall_clock_s: Callable[[], float] = time.time):
        if not ami_id and not launch_template:
            raise ValueError("AwsVmProvider needs ami_id or launch_template")
        self.deployment_id, self.region = deployment_id, region
        self.catalog, self.instance_types = catalog, list(instance_types)
        self.ray_head_address, self.ami_id, self.launch_template = ray_head_address, ami_id, launch_template
        # None: send no user data, so the launch template's (written by `hybridserve aws deploy`:
        # it installs the deployed wheel and the head's Ray) is what the instance runs.
        self.user_data_template = string.Template(user_data_template) if user_data_template is not None else None
        if self.user_data_template is None and not launch_template:
            raise ValueError("AwsVmProvider without user data needs a launch_template that carries it")
        self.subnet_ids, self.security_group_ids = list(subnet_ids), list(security_group_ids)
        self.iam_instance_profile, self.key_name, self.pip_spec = iam_instance_profile, key_name, pip_spec
        self.max_fallbacks, self.extra_tags = max_fallbacks, dict(extra_tags or {})
        self._wall_clock_s = wall_clock_s
        session = session or _boto3().session.Session()
        self.ec2 = _client(session, "ec2", region, endpoint_url)
        self._backoff = _Backoff(retry, sleep, rng or np.random.default_rng())
        self._errors = _Reporter()
        self._by_request: dict[str, str] = {}
        self._launched_s: dict[str, float] = {}
        self._ready_s: dict[str, float] = {}
        self._seen: set[str] = set()  # listed at least once: only these can be reported `died`
        self._terminated_by_us: set[str] = set()
        self._last_list: list[VmRecord] = []

    @classmethod
    def from_config(cls, provider_cfg: dict, catalog: Any, endpoint_url: str | None = None,
                    instance_types: list[str] | None = None, **kwargs) -> "AwsVmProvider":
        """From the `provider:` section of a config (validated here) and the catalog;
        `instance_types` defaults to `provider.vm.instance_types`, else the whole catalog."""
        cfg = AwsProviderConfig.parse(provider_cfg)
        vm = cfg.vm
        # A launch template carries its own user data (`hybridserve aws deploy` writes it).
        template = None if vm.launch_template else DEFAULT_USER_DATA
        if vm.user_data_template_path:
            with open(vm.user_data_template_path) as fh:
                template = fh.read()
        types = instance_types or vm.instance_types or list(catalog.instance_types)
        return cls(cfg.deployment_id, cfg.region, catalog, types, ray_head_address=vm.ray_head_address,
                   ami_id=vm.ami_id, launch_template=vm.launch_template, user_data_template=template,
                   subnet_ids=vm.subnet_ids, security_group_ids=vm.security_group_ids,
                   iam_instance_profile=vm.iam_instance_profile, key_name=vm.key_name, pip_spec=vm.pip_spec,
                   max_fallbacks=vm.max_fallbacks, extra_tags=cfg.tags,
                   endpoint_url=endpoint_url or cfg.endpoint_url, retry=cfg.retry, **kwargs)

    # --- pricing, for the guard ---------------------------------------------------------------
    def fallback_chain(self, instance_type: str, spot: bool = False) -> list[str]:
        """The requested type, then up to `max_fallbacks` allowed types at least as large (vCPUs)
        and at least as dear, cheapest first: what a capacity error may make us launch."""
        want = self.catalog.instance_type(instance_type)
        price = want.price_usd_per_h(spot)
        others = []
        for name in self.instance_types:
            if name == instance_type or name not in self.catalog.instance_types:
                continue
            it = self.catalog.instance_type(name)
            if it.vcpu >= want.vcpu and it.price_usd_per_h(spot) >= price:
                others.append((it.price_usd_per_h(spot), name))
        return [instance_type] + [name for _, name in sorted(others)[:self.max_fallbacks]]

    def worst_case_price_usd_per_h(self, instance_type: str, spot: bool = False) -> float:
        """Price the guard must assume for one launch, fallbacks included."""
        return max(self.catalog.instance_type(t).price_usd_per_h(spot)
                   for t in self.fallback_chain(instance_type, spot))

    # --- VmProvider ---------------------------------------------------------------------------
    def launch(self, request_id: str, instance_type: str, model: str, now_s: float,
               spot: bool = False) -> str:
        if request_id in self._by_request:
            return self._by_request[request_id]
        if instance_type not in self.instance_types or instance_type not in self.catalog.instance_types:
            self._errors.report("api", f"launch {request_id}: instance type {instance_type} is not "
                                f"allowed (allowed: {', '.join(self.instance_types)})", request_id, transient=False)
            return ""
        try:
            existing = self._find_by_request(request_id)
        except Exception as e:
            self._errors.report(e, f"launch {request_id}: looking up earlier launches", request_id)
            return ""
        if existing:  # a previous controller already carried this decision out
            self._by_request[request_id] = existing
            return existing
        refused: list[str] = []
        for it in self.fallback_chain(instance_type, spot):
            for subnet in self.subnet_ids or [None]:
                try:
                    vm_id = self._run_instance(request_id, it, model, spot, subnet)
                except Exception as e:
                    if _error_code(e) in CAPACITY_CODES:
                        refused.append(f"{it}{' in ' + subnet if subnet else ''} ({_error_code(e)})")
                        continue
                    hint = (" (no such launch template: run `hybridserve aws deploy` first)"
                            if _error_code(e).startswith("InvalidLaunchTemplate") else "")
                    self._errors.report(e, f"launch {request_id} {it}{hint}", request_id)
                    return ""
                self._by_request[request_id] = vm_id
                self._launched_s[vm_id] = now_s
                if refused:
                    self._errors.report("capacity", f"InsufficientInstanceCapacity for {', '.join(refused)}; "
                                        f"launched {it} instead of {instance_type}", request_id)
                return vm_id
        self._errors.report("capacity", f"no capacity for {request_id}: {', '.join(refused)}", request_id)
        return ""

    def terminate(self, vm_id: str, now_s: float) -> None:
        try:
            # Only ever terminate instances tagged as ours: a wrong plan must not touch others.
            if vm_id not in self._seen and vm_id not in self._launched_s and not self._describe(
                    [{"Name": "instance-id", "Values": [vm_id]}]):
                return
            self._backoff.call(self.ec2.terminate_instances, InstanceIds=[vm_id])
            self._terminated_by_us.add(vm_id)
        except Exception as e:
            if _error_code(e) not in NOT_FOUND_CODES:
                self._errors.report(e, f"terminate {vm_id}")

    def list(self, now_s: float) -> list[VmRecord]:
        try:
            instances = self._describe([{"Name": "instance-state-name", "Values": list(LIVE_EC2_STATES)}])
        except Exception as e:
            self._errors.report(e, "describe-instances")
            return list(self._last_list)
        records = [self._record(inst, now_s) for inst in instances]
        listed = {r.vm_id for r in records}
        for vm_id in sorted(self._seen - listed):
            if vm_id not in self._terminated_by_us:
                self._errors.report("died", f"{vm_id} is gone (spot interruption, failed boot or "
                                    f"terminated outside hybridserve)")
        self._seen = listed
        for r in records:
            self._by_request.setdefault(r.request_id, r.vm_id)
        self._last_list = records
        return records

    def adopt(self, now_s: float) -> list[VmRecord]:
        """At start: this deployment's instances, remembered so that their request ids are never
        launched again and their VMs are managed (and terminated) like our own."""
        return self.list(now_s)

    def poll_errors(self) -> list[ProviderError]:
        return self._errors.poll()

    # --- helpers ------------------------------------------------------------------------------
    def user_data(self, request_id: str, instance_type: str, model: str) -> str:
        it = self.catalog.instance_type(instance_type)
        return self.user_data_template.substitute(
            deployment_id=self.deployment_id, request_id=request_id, model=model,
            deployment_id_q=shlex.quote(self.deployment_id), model_q=shlex.quote(model),
            pip_spec=shlex.quote(self.pip_spec), ray_head_address=shlex.quote(self.ray_head_address),
            vcpu=int(it.vcpu))

    def _tags(self, request_id: str, model: str) -> list[dict]:
        tags = {**self.extra_tags, "Name": f"hybridserve-{self.deployment_id}-{model}",
                TAG_DEPLOYMENT: self.deployment_id, TAG_REQUEST: request_id, TAG_MODEL: model}
        return [{"Key": k, "Value": v} for k, v in tags.items()]

    def _run_instance(self, request_id: str, instance_type: str, model: str, spot: bool,
                      subnet: str | None) -> str:
        tags = self._tags(request_id, model)
        params: dict[str, Any] = dict(
            MinCount=1, MaxCount=1, InstanceType=instance_type,
            ClientToken=_client_token(self.deployment_id, request_id, instance_type),
            InstanceInitiatedShutdownBehavior="terminate",
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags},
                               {"ResourceType": "volume", "Tags": tags}])
        if self.user_data_template is not None:
            params["UserData"] = self.user_data(request_id, instance_type, model)
        if self.launch_template:
            params["LaunchTemplate"] = dict(self.launch_template)
        if self.ami_id:
            params["ImageId"] = self.ami_id
        if subnet:
            params["SubnetId"] = subnet
        if self.security_group_ids:
            params["SecurityGroupIds"] = self.security_group_ids
        if self.iam_instance_profile:
            key = "Arn" if self.iam_instance_profile.startswith("arn:") else "Name"
            params["IamInstanceProfile"] = {key: self.iam_instance_profile}
        if self.key_name:
            params["KeyName"] = self.key_name
        if spot:
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
                "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
        resp = self._backoff.call(self.ec2.run_instances, **params)
        return resp["Instances"][0]["InstanceId"]

    def _describe(self, filters: list[dict]) -> list[dict]:
        filters = [{"Name": f"tag:{TAG_DEPLOYMENT}", "Values": [self.deployment_id]}] + filters
        out, token = [], None
        while True:
            kwargs = {"Filters": filters, **({"NextToken": token} if token else {})}
            resp = self._backoff.call(self.ec2.describe_instances, **kwargs)
            out += [i for r in resp.get("Reservations", []) for i in r.get("Instances", [])]
            token = resp.get("NextToken")
            if not token:
                return out

    def _find_by_request(self, request_id: str) -> str | None:
        # Terminated instances count too: that decision was carried out, and launching it again
        # would buy twice for one decision.
        found = self._describe([{"Name": f"tag:{TAG_REQUEST}", "Values": [request_id]}])
        return found[0]["InstanceId"] if found else None

    def _record(self, inst: dict, now_s: float) -> VmRecord:
        vm_id = inst["InstanceId"]
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        state = EC2_STATE.get(inst["State"]["Name"], "booting")
        if vm_id not in self._launched_s:  # adopted: place its launch time on the caller's clock
            launched = inst.get("LaunchTime")
            age_s = 0.0
            if isinstance(launched, datetime):
                age_s = max(0.0, self._wall_clock_s() - launched.replace(tzinfo=launched.tzinfo or timezone.utc)
                            .timestamp())
            self._launched_s[vm_id] = now_s - age_s
        if state == "ready":
            self._ready_s.setdefault(vm_id, now_s)
        return VmRecord(vm_id, tags.get(TAG_REQUEST, ""), inst["InstanceType"], tags.get(TAG_MODEL, ""),
                        state, self._launched_s[vm_id], self._ready_s.get(vm_id),
                        inst.get("InstanceLifecycle") == "spot")


