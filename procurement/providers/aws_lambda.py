"""AWS Lambda: one function per model from one container image (see aws.py for the shared
boto3 plumbing; boto3 itself is imported only there).

`AwsFunctionProvider`: functions `hs-<deployment>-<model>` (PackageType=Image), memory updates,
reserved concurrency, provisioned concurrency or warm-up pings (`{"warmup": true}`) for the
warm pool, request-response invokes with a timeout and retries on throttling.
"""
from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from procurement.providers.aws_config import AwsProviderConfig, RetrySettings
from procurement.providers.base import FunctionRecord, InvokeResult, ProviderError
from procurement.providers.aws import _error_code, _boto3, _Backoff, _client, _Reporter, AwsVmProvider, TAG_DEPLOYMENT, TAG_MODEL, TAG_WARM_POOL, TAG_BATCH, THROTTLE_CODES


_BILLED_RE = re.compile(r"Billed Duration: (\d+(?:\.\d+)?) ms")


class AwsFunctionProvider:
    """Lambda functions of one deployment, one per model, all from one container image."""

    def __init__(self, deployment_id: str, region: str, image_uri: str, role_arn: str, *,
                 timeout_s: int = 60, ephemeral_storage_mb: int = 1024, reserved_concurrency: int | None = None,
                 provisioned_concurrency: bool = False, environment: dict[str, str] | None = None,
                 prewarm_interval_s: float = 300.0, min_memory_mb: int = 128, max_memory_mb: int = 10240,
                 endpoint_url: str | None = None, retry: RetrySettings = RetrySettings(), session: Any = None,
                 sleep: Callable[[float], None] = time.sleep, rng: np.random.Generator | None = None,
                 retry_invoke_throttles: bool = True):
        """retry_invoke_throttles: False for a caller with a fallback and a deadline shorter than
        any backoff (the router, which serves a throttled request at a VM at once)."""
        self.deployment_id, self.region = deployment_id, region
        self.retry_invoke_throttles = retry_invoke_throttles
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
        attempts = self._retry.max_attempts if self.retry_invoke_throttles else 1
        for attempt in range(attempts):
            t0 = time.perf_counter()
            try:
                resp = client.invoke(**kwargs)
            except Exception as e:
                code = _error_code(e)
                if code in THROTTLE_CODES:
                    delay_s = self._backoff.delay_s(attempt)
                    if attempt + 1 < attempts and time.perf_counter() + delay_s < deadline:
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
