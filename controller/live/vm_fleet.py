"""Which VM provider `hybridserve run` drives: local Ray worker nodes (default) or EC2 (aws).

The config's `provider:` section names it: `name: aws` (procurement/providers/aws_config.py;
`kind: aws` is accepted as a synonym), anything else absent means local. For aws:
- the live fleet's instance types are `serving.control.instance_types` when set, else
  `provider.vm.instance_types`, else `vms.instance_types`; its cap is `serving.control.max_vms`
  when set, else `vms.max_instances` (the local defaults, two small local types, would make no
  sense on EC2);
- `--endpoint-url` (e.g. a moto server) overrides `provider.endpoint_url`;
- the fleet outlives the daemon unless `serving.control.release_on_exit` is true: EC2 instances
  bill whether or not a controller runs, so stopping the controller (a deploy, a crash) must not
  cost a cold fleet; the next start adopts them by tag. Local VMs are always released (they are
  processes of this machine and die with its Ray head).
Local VMs take injected faults from HYBRIDSERVE_VM_FAULTS (procurement/providers/local_vm.py
`VmFaults`), as the router's function instances take HYBRIDSERVE_FUNCTION_FAULTS.
"""
from __future__ import annotations

import os
from typing import Any

from controller.config import Config, ConfigError

LOCAL, AWS = "local", "aws"
VM_FAULTS_ENV = "HYBRIDSERVE_VM_FAULTS"


def provider_kind(cfg: Config) -> str:
    """"aws" or "local" from `provider.name` (or `provider.kind`); ConfigError otherwise."""
    kind = cfg.provider.get("name", cfg.provider.get("kind", LOCAL)) if cfg.provider else LOCAL
    if kind not in (LOCAL, AWS):
        raise ConfigError(f"provider.name = {kind!r}: expected 'local' or 'aws'")
    return kind


def with_endpoint_url(cfg: Config, endpoint_url: str | None) -> Config:
    """The config with `provider.endpoint_url` set (the `--endpoint-url` flag); aws only."""
    if not endpoint_url:
        return cfg
    if provider_kind(cfg) != AWS:
        raise ConfigError("--endpoint-url needs an aws provider (provider.name: aws in the config)")
    provider = {k: v for k, v in cfg.provider.items() if k != "kind"}
    return cfg.model_copy(update={"provider": {**provider, "name": AWS, "endpoint_url": endpoint_url}})


def _aws_section(cfg: Config) -> dict:
    return {**{k: v for k, v in cfg.provider.items() if k != "kind"}, "name": AWS}


def fleet_settings(cfg: Config, settings):
    """`settings` with the live fleet's instance types and cap filled in for aws (see the module
    docstring); unchanged for local. Validates the `provider:` section (ConfigError)."""
    if provider_kind(cfg) != AWS:
        return settings
    from procurement.providers.aws_config import AwsProviderConfig

    aws = AwsProviderConfig.parse(_aws_section(cfg))
    ctl, update = settings.control, {}
    if "instance_types" not in ctl.model_fields_set:
        update["instance_types"] = list(aws.vm.instance_types or cfg.vms.instance_types)
    if "max_vms" not in ctl.model_fields_set:
        update["max_vms"] = cfg.vms.max_instances
    if not update:
        return settings
    return settings.model_copy(update={"control": ctl.model_copy(update=update)})


def build_vm_provider(cfg: Config, settings, catalog, gcs_address: str) -> tuple[Any, bool]:
    """(the VM provider, whether the loop releases the fleet at exit)."""
    if provider_kind(cfg) == AWS:
        from procurement.providers.aws import AwsVmProvider

        vms = AwsVmProvider.from_config(_aws_section(cfg), catalog,
                                        instance_types=list(settings.control.instance_types))
        return vms, settings.control.release_on_exit
    from procurement.providers.local_vm import LocalVmProvider

    boot = settings.control.vm_boot_s
    vms = LocalVmProvider(gcs_address,
                          boot_s=lambda t: boot if boot is not None else catalog.instance_type(t).boot_s_mean,
                          vcpu_of=lambda t: catalog.instance_type(t).vcpu, faults=vm_faults_from_env())
    return vms, True


def vm_faults_from_env(environ=os.environ):
    """The local VMs' injected faults from HYBRIDSERVE_VM_FAULTS (tests, the reliability report;
    e.g. "never_boot=0.5,die_after_s=20,slow_boot_s=5,api_error=0.2,seed=1"), None when unset.
    A bad spec is a ConfigError: the control loop does not start (the daemon says why) rather
    than run other faults."""
    from procurement.providers.local_vm import VmFaults

    text = environ.get(VM_FAULTS_ENV, "").strip()
    if not text:
        return None
    try:
        return VmFaults.parse(text)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{VM_FAULTS_ENV}={text!r}: {e}") from None
