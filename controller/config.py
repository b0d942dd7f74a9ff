"""Configuration schema: one pydantic model per subsystem, validated once when loaded.

A config error names the file, the key path and the offending value, and the CLI turns it into
one line and exit code 2 (`ConfigError`).
"""
from __future__ import annotations

import os
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ConfigError(Exception):
    """A config file that cannot be used; the message is one line for the operator."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AppConfig(_Strict):
    """A query class: an application with its latency SLO and accuracy floor."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    slo_ms: float = Field(gt=0, le=600_000, description="latency objective per request")
    min_accuracy: float = Field(ge=0, le=1, description="top-1 accuracy floor, a fraction")
    share: float = Field(default=1.0, gt=0, description="weight of this app in the simulated request mix")
    model: str | None = Field(default=None, description="fixed model for the baseline policies; "
                              "default: the cheapest catalog model that meets the floor")


class FunctionPlatformConfig(_Strict):
    """Function (Lambda) pricing and limits; us-east-1 x86 defaults."""

    price_usd_per_gb_s: float = Field(default=0.0000166667, ge=0)
    price_usd_per_request: float = Field(default=0.0000002, ge=0)
    billing_granularity_ms: int = Field(default=1, ge=1)
    min_memory_mb: int = Field(default=128, ge=128)
    max_memory_mb: int = Field(default=10240, le=10240)
    mb_per_vcpu: int = Field(default=1769, gt=0, description="CPU grows in proportion to memory")
    concurrency_limit: int = Field(default=1000, ge=1, description="account-wide concurrent executions")
    keep_alive_s: float = Field(default=600, ge=0, description="idle time before an instance is reclaimed")
    invoke_overhead_ms: float = Field(default=15, ge=0, description="invoke API round trip")
    container_init_ms: float = Field(default=800, ge=0, description="platform init of a container image, "
                                     "added to each model's cold start")
    bill_init: bool = Field(default=True, description="bill the INIT phase (AWS does since 2025-08)")
    prewarm_interval_s: float = Field(default=300, gt=0, description="period of warm-up pings")

    @model_validator(mode="after")
    def _memory_range(self):
        if self.min_memory_mb > self.max_memory_mb:
            raise ValueError(f"min_memory_mb {self.min_memory_mb} > max_memory_mb {self.max_memory_mb}")
        return self


class VmPlatformConfig(_Strict):
    """VM (EC2) billing and the instance types a policy may buy."""

    billing_minimum_s: float = Field(default=60, ge=0)
    instance_types: list[str] = Field(default_factory=lambda: [
        "c5.large", "c5.xlarge", "c5.2xlarge", "c5.4xlarge", "m5.large", "m5.xlarge", "m5.2xlarge"])
    allow_spot: bool = False
    max_instances: int = Field(default=200, ge=0, description="guard the shell enforces whatever a policy says")
    max_spend_usd_per_h: float = Field(default=100.0, gt=0, description="guard on VM plus function spend rate")


class FaultConfig(_Strict):
    """Faults the simulator injects (all off by default), drawn from their own seeded stream."""

    vm_boot_failure_prob: float = Field(default=0.0, ge=0, le=1, description="a launched VM never boots")
    vm_death_rate_per_h: float = Field(default=0.0, ge=0, description="hazard of a ready VM dying")
    slow_boot_factor: float = Field(default=1.0, ge=1, description="boot times multiplied by this")
    api_error_prob: float = Field(default=0.0, ge=0, le=1, description="a launch call fails")
    function_error_prob: float = Field(default=0.0, ge=0, le=1, description="an invocation fails")
    policy_error_prob: float = Field(default=0.0, ge=0, le=1,
                                     description="a control tick raises (the loop must survive)")


class StandingVmConfig(_Strict):
    """A VM up for the whole run that the policy sees but never terminates (the live system's Ray
    head, which serves every variant beside the VMs the policy buys). Billed from t = 0."""

    instance_type: str = Field(min_length=1)
    models: list[str] = Field(default_factory=list, description="variants it serves; empty: every catalog model")


class SimulatorConfig(_Strict):
    """How a trace is replayed."""

    seed: int = 0
    arrivals: Literal["poisson", "even"] = "poisson"
    rate_scale: float = Field(default=1.0, gt=0)
    speedup: float = Field(default=1.0, ge=1, description="trace seconds per simulated second")
    start_s: int = Field(default=0, ge=0)
    duration_s: int | None = Field(default=None, gt=0)
    client_timeout_s: float = Field(default=30, gt=0, description="a request queued longer is dropped")
    faults: FaultConfig = FaultConfig()
    standing_vms: list[StandingVmConfig] = Field(default_factory=list, description="VMs up from the start, "
                                                 "never terminated (bench/live_fidelity.py: the live head)")
    prewarm_functions: bool = Field(default=True, description="keep the warm pools the policy plans (false: "
                                    "as the live daemon with serving.control.prewarm_functions false)")
    warm_start: bool = Field(default=True, description="first observation: the first minute's rate, and "
                             "launches at t = 0 ready at once; false: a quiet second, as a live daemon starts")
    vm_latency_jitter_ms: list[float] = Field(default_factory=list, description="added to each VM-served "
                                              "request's latency, drawn from these (a machine's measured spread "
                                              "around its median service time: controller.live.live_catalog); empty: none")


class PolicyParams(_Strict):
    """Knobs of the built-in policies (shared names; each policy reads what it needs)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    control_interval_s: float = Field(default=10, gt=0)
    headroom: float = Field(default=0.2, ge=0, description="spare VM capacity over observed load")
    scale_down_delay_s: float = Field(default=300, ge=0)
    baseline_instance_type: str = "c5.xlarge"
    baseline_function_memory_mb: int = Field(default=3008, ge=128, le=10240)
    target_utilization: float = Field(default=0.8, gt=0, le=1)


class CatalogConfig(_Strict):
    dir: str = Field(default=os.path.join(REPO_ROOT, "configs", "catalog"))


class Config(_Strict):
    """The whole hybridserve configuration."""

    catalog: CatalogConfig = CatalogConfig()
    apps: list[AppConfig] = Field(min_length=1)
    functions: FunctionPlatformConfig = FunctionPlatformConfig()
    vms: VmPlatformConfig = VmPlatformConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    policy: PolicyParams = PolicyParams()
    serving: dict[str, Any] = Field(default_factory=dict, description="live serving (daemon) settings")
    provider: dict[str, Any] = Field(default_factory=dict, description="VM and function provider settings")

    @model_validator(mode="after")
    def _unique_apps(self):
        names = [a.name for a in self.apps]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"app names must be unique, repeated: {dup}")
        return self

    def with_slo_ms(self, slo_ms: float) -> "Config":
        """The same config with every app's SLO set to `slo_ms` (the CLI's --slo-ms)."""
        apps = [a.model_copy(update={"slo_ms": slo_ms}) for a in self.apps]
        return self.model_copy(update={"apps": apps})


def _format_error(path: str, err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
    value = e.get("input")
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{path}: {loc} = {shown}: {e['msg']}{more}"


def load_config(path: str, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a YAML config; raise ConfigError with a one-line message."""
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    raw.update(overrides or {})
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(path, e)) from None
    if not os.path.isabs(cfg.catalog.dir):
        base = os.path.dirname(os.path.abspath(path))
        cand = os.path.join(base, cfg.catalog.dir)
        if not os.path.isdir(cand):
            cand = os.path.join(REPO_ROOT, cfg.catalog.dir)
        cfg = cfg.model_copy(update={"catalog": CatalogConfig(dir=os.path.normpath(cand))})
    return cfg
