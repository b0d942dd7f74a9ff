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
- `AwsFunctionProvider`: functions `hs-<deployment>-<model>` from one container image
  (PackageType=Image), memory updates, reserved concurrency, provisioned concurrency or warm-up
  pings (`{"warmup": true}`) for the warm pool, request-response invokes with a timeout and
  retries on throttling.

Readiness: a VM is `ready` here when EC2 says `running`. That is not serving readiness: the
Ray node joins a minute or so later, and the live shell must treat the node's appearance in
the Ray cluster as the real signal (see docs/aws.md).

EC2 and Lambda are eventually consistent: an instance just launched may be missing from
describe-instances for a few seconds, which is why a VM is only reported `died` after it has
been seen once and then vanished without our terminating it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import shlex
import string
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np

from procurement.providers.aws_config import AwsProviderConfig, RetrySettings
from procurement.providers.base import FunctionRecord, InvokeResult, ProviderError, VmRecord

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
                 user_data_template: str = DEFAULT_USER_DATA, subnet_ids: list[str] | tuple = (),
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
        self.user_data_template = string.Template(user_data_template)
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
        template = DEFAULT_USER_DATA
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
                    self._errors.report(e, f"launch {request_id} {it}", request_id)
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
            UserData=self.user_data(request_id, instance_type, model),
            InstanceInitiatedShutdownBehavior="terminate",
            MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags},
                               {"ResourceType": "volume", "Tags": tags}])
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


_BILLED_RE = re.compile(r"Billed Duration: (\d+(?:\.\d+)?) ms")


class AwsFunctionProvider:
    """Lambda functions of one deployment, one per model, all from one container image."""

    def __init__(self, deployment_id: str, region: str, image_uri: str, role_arn: str, *,
                 timeout_s: int = 60, ephemeral_storage_mb: int = 1024, reserved_concurrency: int | None = None,
                 provisioned_concurrency: bool = False, environment: dict[str, str] | None = None,
                 prewarm_interval_s: float = 300.0, min_memory_mb: int = 128, max_memory_mb: int = 10240,
                 endpoint_url: str | None = None, retry: RetrySettings = RetrySettings(), session: Any = None,
                 sleep: Callable[[float], None] = time.sleep, rng: np.random.Generator | None = None):
        self.deployment_id, self.region = deployment_id, region
        self.image_uri, self.role_arn, self.timeout_s = image_uri, role_arn, timeout_s
        self.ephemeral_storage_mb = ephemeral_storage_mb
        self.reserved_concurrency, self.provisioned_concurrency = reserved_concurrency, provisioned_concurrency
        self.environment = dict(environment or {})
        self.prewarm_interval_s = prewarm_interval_s
        self.min_memory_mb, self.max_memory_mb = min_memory_mb, max_memory_mb
        self._session = session or _boto3().session.Session()
        self._endpoint_url = endpoint_url
        self.lam = _client(self._session, "lambda", region, endpoint_url)
        self._invoke_clients: dict[int, Any] = {}
        self._clients_lock = threading.Lock()
        self._retry = retry
        self._backoff = _Backoff(retry, sleep, rng or np.random.default_rng())
        self._errors = _Reporter()
        self._records: dict[str, FunctionRecord] = {}
        self._alias_live: set[str] = set()  # models whose provisioned alias is in place
        self._last_ping_s: dict[str, float] = {}

    @classmethod
    def from_config(cls, provider_cfg: dict, catalog: Any = None, endpoint_url: str | None = None,
                    functions_cfg: Any = None, **kwargs) -> "AwsFunctionProvider":
        """From the `provider:` section; `functions_cfg` (config.functions) supplies the memory
        range and the warm-up ping period."""
        cfg = AwsProviderConfig.parse(provider_cfg)
        fn = cfg.function
        extra = {}
        if functions_cfg is not None:
            extra = dict(prewarm_interval_s=functions_cfg.prewarm_interval_s,
                         min_memory_mb=functions_cfg.min_memory_mb, max_memory_mb=functions_cfg.max_memory_mb)
        return cls(cfg.deployment_id, cfg.region, fn.image_uri, fn.role_arn, timeout_s=fn.timeout_s,
                   ephemeral_storage_mb=fn.ephemeral_storage_mb, reserved_concurrency=fn.reserved_concurrency,
                   provisioned_concurrency=fn.provisioned_concurrency, environment=fn.environment,
                   endpoint_url=endpoint_url or cfg.endpoint_url, retry=cfg.retry, **{**extra, **kwargs})

    def function_name(self, model: str) -> str:
        # Lambda names: letters, digits, '-' and '_', at most 64 characters.
        return re.sub(r"[^A-Za-z0-9_-]", "-", f"hs-{self.deployment_id}-{model}")[:64]

    # --- FunctionProvider ---------------------------------------------------------------------
    def deploy(self, model: str, memory_mb: int, warm_pool: int = 0, batch_size: int = 1) -> None:
        if not self.min_memory_mb <= memory_mb <= self.max_memory_mb:
            self._errors.report("api", f"memory {memory_mb} MB out of {self.min_memory_mb}-{self.max_memory_mb}",
                                transient=False)
            return
        name = self.function_name(model)
        tags = {TAG_DEPLOYMENT: self.deployment_id, TAG_MODEL: model,
                TAG_WARM_POOL: str(warm_pool), TAG_BATCH: str(batch_size)}
        try:
            current = self._get_config(name)
            if current is None:
                self._backoff.call(
                    self.lam.create_function, FunctionName=name, PackageType="Image",
                    Code={"ImageUri": self.image_uri}, Role=self.role_arn, MemorySize=memory_mb,
                    Timeout=self.timeout_s, EphemeralStorage={"Size": self.ephemeral_storage_mb},
                    Environment={"Variables": {**self.environment, "HYBRIDSERVE_MODEL": model}},
                    Description=f"hybridserve {self.deployment_id}: {model}", Tags=tags)
                if self.reserved_concurrency is not None:
                    self._backoff.call(self.lam.put_function_concurrency, FunctionName=name,
                                       ReservedConcurrentExecutions=self.reserved_concurrency)
                changed = True
            else:
                changed = current["MemorySize"] != memory_mb
                if changed:  # recycles the function's instances: only when the memory moves
                    self._backoff.call(self.lam.update_function_configuration, FunctionName=name,
                                       MemorySize=memory_mb)
                old = self._records.get(model)
                if old is None or (old.warm_pool, old.batch_size) != (warm_pool, batch_size):
                    # Tags, not environment: changing them does not recycle warm instances.
                    self._backoff.call(self.lam.tag_resource, Resource=current["FunctionArn"], Tags=tags)
            old = self._records.get(model)
            self._records[model] = FunctionRecord(model, memory_mb, warm_pool, batch_size)
            if self.provisioned_concurrency and (changed or old is None or old.warm_pool != warm_pool):
                self._set_provisioned(model, name, warm_pool)
        except Exception as e:
            self._errors.report(e, f"deploy {name}")

    def update_image(self, image_uri: str) -> None:
        """Point every function of this deployment at a new image (a new hybridserve release)."""
        self.image_uri = image_uri
        for rec in self.describe():
            name = self.function_name(rec.model)
            try:
                self._backoff.call(self.lam.update_function_code, FunctionName=name, ImageUri=image_uri)
            except Exception as e:
                self._errors.report(e, f"update code {name}")

    def invoke(self, model: str, payload: Any, timeout_s: float) -> InvokeResult:
        name = self.function_name(model)
        if model not in self._records:  # not deployed or adopted by us: is it there at all?
            try:
                if self._get_config(name) is None:
                    return InvokeResult(False, None, 0.0, 0.0, False, f"error: no function for {model}")
            except Exception as e:
                return InvokeResult(False, None, 0.0, 0.0, False, f"error: {_error_code(e) or e}")
        deadline = time.perf_counter() + timeout_s
        client = self._invoke_client(timeout_s)
        kwargs = dict(FunctionName=name, InvocationType="RequestResponse", LogType="Tail",
                      Payload=json.dumps(payload).encode())
        if model in self._alias_live:
            kwargs["Qualifier"] = "live"  # where the provisioned instances are
        for attempt in range(self._retry.max_attempts):
            t0 = time.perf_counter()
            try:
                resp = client.invoke(**kwargs)
            except Exception as e:
                code = _error_code(e)
                if code in THROTTLE_CODES:
                    delay_s = self._backoff.delay_s(attempt)
                    if attempt + 1 < self._retry.max_attempts and time.perf_counter() + delay_s < deadline:
                        self._backoff.sleep(delay_s)
                        continue
                    return InvokeResult(False, None, 0.0, 0.0, False, "throttled")
                if "Timeout" in type(e).__name__:
                    return InvokeResult(False, None, timeout_s * 1000, timeout_s * 1000, False, "timeout")
                if code == "ResourceNotFoundException":
                    return InvokeResult(False, None, 0.0, 0.0, False, f"error: no function for {model}")
                return InvokeResult(False, None, 0.0, 0.0, False, f"error: {code or type(e).__name__}: {e}")
            return self._result(resp, (time.perf_counter() - t0) * 1000.0, timeout_s)
        return InvokeResult(False, None, 0.0, 0.0, False, "throttled")

    def prewarm(self, now_s: float, force: bool = False) -> int:
        """Warm-up pings for functions with a warm pool and no provisioned concurrency: every
        `prewarm_interval_s`, `warm_pool` concurrent `{"warmup": true}` invokes, so that many
        instances load their model and stay warm. Returns the number of pings sent."""
        due = [r for r in self._records.values()
               if r.warm_pool > 0 and r.model not in self._alias_live
               and (force or now_s - self._last_ping_s.get(r.model, -math.inf) >= self.prewarm_interval_s)]
        jobs = [r.model for r in due for _ in range(r.warm_pool)]
        if not jobs:
            return 0
        # Concurrent on purpose: sequential pings would all land on the same warm instance.
        with ThreadPoolExecutor(max_workers=min(32, len(jobs))) as pool:
            results = list(pool.map(lambda m: self.invoke(m, {"warmup": True}, self.timeout_s), jobs))
        for r in due:
            self._last_ping_s[r.model] = now_s
        for model, res in zip(jobs, results):
            if not res.ok:
                self._errors.report("api", f"warm-up ping {model}: {res.error}")
        return len(jobs)

    def describe(self) -> list[FunctionRecord]:
        try:
            records = {}
            for fn in self._list_functions():
                tags = self._backoff.call(self.lam.list_tags, Resource=fn["FunctionArn"]).get("Tags", {})
                if tags.get(TAG_DEPLOYMENT) != self.deployment_id or TAG_MODEL not in tags:
                    continue
                model = tags[TAG_MODEL]
                records[model] = FunctionRecord(model, int(fn["MemorySize"]), int(tags.get(TAG_WARM_POOL, 0)),
                                                int(tags.get(TAG_BATCH, 1)))
        except Exception as e:
            self._errors.report(e, "list functions")
            return list(self._records.values())
        self._records = records
        return list(records.values())

    def adopt(self) -> list[FunctionRecord]:
        """At start: this deployment's functions (with their warm pools, kept in tags)."""
        records = self.describe()
        if self.provisioned_concurrency:
            for rec in records:
                try:
                    self._backoff.call(self.lam.get_alias, FunctionName=self.function_name(rec.model), Name="live")
                    self._alias_live.add(rec.model)
                except Exception:
                    pass  # no alias yet: invoke the latest version
        return records

    def delete(self, model: str) -> None:
        """Remove one model's function (teardown; the controller never calls this by itself)."""
        try:
            self._backoff.call(self.lam.delete_function, FunctionName=self.function_name(model))
        except Exception as e:
            if _error_code(e) != "ResourceNotFoundException":
                self._errors.report(e, f"delete {model}")
        self._records.pop(model, None)
        self._alias_live.discard(model)

    def poll_errors(self) -> list[ProviderError]:
        return self._errors.poll()

    # --- helpers ------------------------------------------------------------------------------
    def _get_config(self, name: str) -> dict | None:
        try:
            return self._backoff.call(self.lam.get_function_configuration, FunctionName=name)
        except Exception as e:
            if _error_code(e) == "ResourceNotFoundException":
                return None
            raise

    def _list_functions(self) -> list[dict]:
        prefix = self.function_name("")
        out, marker = [], None
        while True:
            resp = self._backoff.call(self.lam.list_functions, **({"Marker": marker} if marker else {}))
            out += [f for f in resp.get("Functions", []) if f["FunctionName"].startswith(prefix)]
            marker = resp.get("NextMarker")
            if not marker:
                return out

    def _set_provisioned(self, model: str, name: str, warm_pool: int) -> None:
        # Provisioned concurrency needs a published version behind an alias; a memory change
        # makes a new version, so the alias moves with it.
        version = self._backoff.call(self.lam.publish_version, FunctionName=name)["Version"]
        try:
            self._backoff.call(self.lam.update_alias, FunctionName=name, Name="live", FunctionVersion=version)
        except Exception as e:
            if _error_code(e) != "ResourceNotFoundException":
                raise
            self._backoff.call(self.lam.create_alias, FunctionName=name, Name="live", FunctionVersion=version)
        if warm_pool > 0:
            self._backoff.call(self.lam.put_provisioned_concurrency_config, FunctionName=name,
                               Qualifier="live", ProvisionedConcurrentExecutions=warm_pool)
        else:
            try:
                self._backoff.call(self.lam.delete_provisioned_concurrency_config, FunctionName=name,
                                   Qualifier="live")
            except Exception as e:
                if _error_code(e) not in ("ResourceNotFoundException", "ProvisionedConcurrencyConfigNotFoundException"):
                    raise
        self._alias_live.add(model)

    def _invoke_client(self, timeout_s: float):
        # One client per whole-second timeout: botocore's read timeout is per client.
        key = max(1, int(math.ceil(timeout_s)))
        with self._clients_lock:  # creating clients from one session is not thread-safe
            if key not in self._invoke_clients:
                self._invoke_clients[key] = _client(self._session, "lambda", self.region, self._endpoint_url,
                                                    read_timeout_s=key)
            return self._invoke_clients[key]

    @staticmethod
    def _result(resp: dict, duration_ms: float, timeout_s: float) -> InvokeResult:
        raw = resp["Payload"].read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        log = base64.b64decode(resp.get("LogResult", "") or "").decode(errors="replace")
        billed = _BILLED_RE.search(log)
        billed_ms = float(billed.group(1)) if billed else float(math.ceil(duration_ms))
        # A cold start shows as "Init Duration" in the log tail; our handler also says so.
        cold = "Init Duration" in log or (isinstance(body, dict) and body.get("cold") is True)
        if resp.get("FunctionError"):
            msg = body.get("errorMessage", body) if isinstance(body, dict) else body
            return InvokeResult(False, body, duration_ms, billed_ms, cold, f"error: {msg}")
        if duration_ms > timeout_s * 1000:
            return InvokeResult(False, None, duration_ms, billed_ms, cold, "timeout")
        return InvokeResult(True, body, duration_ms, billed_ms, cold)


def providers_from_config(config: Any, catalog: Any, endpoint_url: str | None = None,
                          **kwargs) -> tuple[AwsVmProvider, AwsFunctionProvider]:
    """Both providers from a whole controller.config.Config (`provider:` plus `vms`/`functions`)."""
    vm = AwsVmProvider.from_config(config.provider, catalog, endpoint_url,
                                   instance_types=AwsProviderConfig.parse(config.provider).vm.instance_types
                                   or list(config.vms.instance_types), **kwargs)
    fn = AwsFunctionProvider.from_config(config.provider, catalog, endpoint_url,
                                         functions_cfg=config.functions, **kwargs)
    return vm, fn


class S3ObjectStore:
    """The `ObjectStore` of serving/partition/store.py on S3: intermediate tensors of a
    partitioned model that do not fit an invocation payload. Keys live under `key_prefix` in
    one bucket; `delete_prefix` lists and deletes in pages of 1,000 (the S3 batch limit).
    Reads after a write are consistent (S3 is strongly read-after-write consistent)."""

    def __init__(self, bucket: str, region: str = "us-east-1", key_prefix: str = "", session=None,
                 endpoint_url: str | None = None, create_bucket: bool = False):
        self.bucket, self.key_prefix = bucket, key_prefix
        self.s3 = _client(session or _boto3().session.Session(), "s3", region, endpoint_url)
        if create_bucket:
            kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            try:
                self.s3.create_bucket(Bucket=bucket, **kwargs)
            except Exception as e:
                if _error_code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def put(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self.key_prefix + key, Body=data)

    def get(self, key: str) -> bytes:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self.key_prefix + key)["Body"].read()
        except Exception as e:
            if _error_code(e) in ("NoSuchKey", "404"):
                raise KeyError(key) from None
            raise

    def list_keys(self, prefix: str = "") -> list[str]:
        keys = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.key_prefix + prefix)
        for page in pages:
            keys.extend(obj["Key"][len(self.key_prefix):] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self.key_prefix + k} for k in keys[i:i + 1000]]
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)
