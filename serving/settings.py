"""Live serving settings: the config's free-form `serving:` dict, validated once here.

Which apps are served (the config's `apps` plus extra ones such as the digits app), the Ray
Serve options per model variant, the function backend and the router's limits. Errors are
`ConfigError` with the key path and the offending value, like the rest of the config.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.config import Config, ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServedApp(_Strict):
    """An app served beside the config's `apps` (same meaning), with its candidate variants."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    slo_ms: float = Field(gt=0, le=600_000)
    min_accuracy: float = Field(ge=0, le=1)
    variants: list[str] = Field(min_length=1, description="model variants the selector may pick")


class VariantOptions(_Strict):
    """How one model variant runs as a Ray Serve deployment (the "VM" backend)."""

    min_replicas: int = Field(default=0, ge=0, description="0: scaled from zero on first use (lazy load)")
    max_replicas: int = Field(default=1, ge=1)
    max_batch_size: int = Field(default=8, ge=1, description="@serve.batch size (requests per batch)")
    batch_wait_timeout_s: float = Field(default=0.005, ge=0)
    num_cpus: float = Field(default=0.5, ge=0, description="Ray CPUs per replica")
    runtime: str = Field(default="mxnet", pattern=r"^(mxnet|onnxruntime)$")


class FunctionBatching(_Strict):
    """One batch configuration of a model's function (INFless; serving.function_batcher).
    Several for one model each take a band [rate_lo_per_s, rate_hi_per_s) of its spill rate."""

    batch_size: int = Field(default=1, ge=1, le=64)
    wait_ms: float = Field(default=0.0, ge=0, le=10_000)
    rate_lo_per_s: float = Field(default=0.0, ge=0)
    rate_hi_per_s: float = Field(default=float("inf"), gt=0)


class FunctionOptions(_Strict):
    """The local function backend the router spills to."""

    enabled: bool = True
    memory_mb: int = Field(default=1769, ge=128, le=10240, description="CPU follows: 1 vCPU per 1769 MB")
    concurrency_limit: int = Field(default=4, ge=1, description="instances across all functions")
    keep_alive_s: float = Field(default=120, ge=0, description="idle time before an instance is reaped")
    timeout_s: float = Field(default=60, gt=0, description="one invocation, cold start included")
    batching: dict[str, list[FunctionBatching]] = Field(default_factory=dict, description="model -> batch "
                                                        "configurations until the control loop plans its own")
    batch_slack_ms: float = Field(default=50, ge=0, description="part of the SLO a batch queue leaves for the "
                                  "path around the invocation (proxy, router, reply): it holds a request at most "
                                  "until SLO - slack - batch execution - cold start")


class ControlOptions(_Strict):
    """The live control loop: which policy, and the local fleet it may buy (small on 2 cores)."""

    enabled: bool = True
    policy: str = Field(default="hybrid", description="a name from controller.policies.registry")
    policy_params: dict = Field(default_factory=dict, description="keyword arguments of the policy factory")
    control_interval_s: float | None = Field(default=None, gt=0, description="overrides policy.control_interval_s")
    instance_types: list[str] = Field(default_factory=lambda: ["local.small", "local.medium"], min_length=1)
    max_vms: int = Field(default=2, ge=0, description="overrides vms.max_instances for the live fleet")
    vm_boot_s: float | None = Field(default=None, ge=0, description="emulated boot delay; default: the "
                                    "instance type's boot_s_mean from the catalog")
    vm_replicas_per_vcpu: float = Field(default=1.0, gt=0, description="Serve replicas placed on a VM per vCPU")
    drain_s: float = Field(default=2.0, ge=0, description="wait for requests in flight before a VM's replicas stop")
    vm_stop_grace_s: float = Field(default=10.0, gt=0, description="SIGTERM to SIGKILL for a VM's Ray node")
    prewarm_functions: bool = Field(default=True, description="start the planned warm pool of functions")
    release_on_exit: bool = Field(default=False, description="aws: terminate the fleet when the daemon stops "
                                  "(default: leave it running for the next start to adopt); local VMs are "
                                  "always released")
    function_min_memory_mb: int = Field(default=1024, ge=128, le=10240, description="floor of the function "
                                        "tuner's memory: a local cold start imports mxnet under the CPU quota, "
                                        "which takes minutes below about half a vCPU")


class ServingConfig(_Strict):
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    grpc_port: int = Field(default=9000, ge=0, le=65535, description="KServe v2 gRPC; 0 disables it")
    serve_config_apps: bool = Field(default=True, description="also serve the config's `apps` (ImageNet variants)")
    apps: list[ServedApp] = Field(default_factory=list)
    variants: dict[str, VariantOptions] = Field(default_factory=dict, description="per-variant overrides")
    digits_min_replicas: int = Field(default=1, ge=0, description="digits variants are cheap: keep one replica up")
    selector: str = "constrained"
    selector_params: dict = Field(default_factory=dict)
    seed: int = 0
    max_body_mb: float = Field(default=8, gt=0, description="larger request bodies get 413")
    max_samples_per_request: int = Field(default=64, ge=1)
    spill_fraction: float = Field(default=0.8, gt=0, description="spill when the expected VM latency "
                                  "exceeds this fraction of the SLO")
    feedback_window_s: float = Field(default=60, gt=0, description="how long a request waits for its label "
                                     "before the selector learns from it without one")
    router_max_ongoing_requests: int = Field(default=1000, ge=1)
    head_in_process: bool = Field(default=True, description="the router runs the head's replicas of each "
                                  "variant in its own process (serving.local_models: no Ray hop); false: "
                                  "through each variant's ModelServer deployment on the head")
    ray_num_cpus: int | None = Field(default=None, ge=1, description="CPUs the local Ray head declares")
    head_instance_type: str | None = Field(default=None, description="the instance type the Ray head counts "
                                           "as (its standing replicas): billed from start and shown to the policy "
                                           "as a ready VM it never terminates (configs/default.yaml: local.small); "
                                           "null: neither (e.g. on aws, where the head is the controller's host)")
    functions: FunctionOptions = FunctionOptions()
    control: ControlOptions = ControlOptions()
    admin_token_file: str | None = Field(default=None, description="file holding the admin bearer token "
                                         "(HYBRIDSERVE_ADMIN_TOKEN wins); neither: /admin/* is 404")
    api_keys: dict[str, list[str]] = Field(default_factory=dict, description="app -> API keys its requests "
                                           "need (X-API-Key); apps not listed are open")
    api_key_files: dict[str, str] = Field(default_factory=dict, description="app -> file of API keys, one a line")

    def options_for(self, variant: str) -> VariantOptions:
        if variant in self.variants:
            return self.variants[variant]
        if variant.startswith("digits-"):
            return VariantOptions(min_replicas=self.digits_min_replicas)
        return VariantOptions()


def serving_config(cfg: Config, overrides: dict | None = None) -> ServingConfig:
    raw = dict(cfg.serving)
    raw.update(overrides or {})
    try:
        return ServingConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(map(str, err["loc"]))
        raise ConfigError(f"serving.{loc} = {err.get('input')!r}: {err['msg']}") from None
