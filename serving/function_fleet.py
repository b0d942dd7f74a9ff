"""Which function provider the router spills to: local worker processes (default) or AWS Lambda.

The one factory for the router's function backend, beside controller/live/vm_fleet.py (its VM
counterpart), and picked the same way, from the config's `provider:` section: `name: aws` (or
`kind: aws`) builds `procurement.providers.aws_router.AwsRouterFunctions` over the deployment's
Lambda functions (`hs-<deployment>-<variant>`, from `provider.function.image_uri`; memory and
warm pool set by the plan through `deploy`); no section, or `name: local`, builds the
`LocalFunctionProvider` (a worker process per instance on this machine). Both have the same
surface (invoke a float32 batch -> probabilities, deploy, stats, has_idle, cold_start_ms,
reset_peaks, reap, close, set_faults), so the router does not know which it drives.

`serving.functions` applies to both: `keep_alive_s` (the local reaper; on aws the estimate of how
long Lambda keeps an environment warm), `concurrency_limit` (local instances; on aws the calls in
flight from this router). The section's `endpoint_url` (set by `--endpoint-url`) reaches the
Lambda client as it does EC2's.
"""
from __future__ import annotations

from typing import Any

from controller.config import ConfigError

LOCAL, AWS = "local", "aws"


def provider_kind_of(provider: dict | None) -> str:
    """"aws" or "local" from a `provider:` section; ConfigError for anything else."""
    kind = (provider or {}).get("name", (provider or {}).get("kind", LOCAL)) if provider else LOCAL
    if kind not in (LOCAL, AWS):
        raise ConfigError(f"provider.name = {kind!r}: expected 'local' or 'aws'")
    return kind


def build_function_provider(provider: dict | None, options: Any, worker_env: dict[str, str] | None = None,
                            functions_cfg: Any = None) -> Any:
    """The router's function backend for `provider` (the config's `provider:` section) with the
    `serving.functions` options; `worker_env` goes to local workers only; `functions_cfg` (the
    config's `functions:`) bounds Lambda memory and paces warm-up pings."""
    if provider_kind_of(provider) == AWS:
        from procurement.providers.aws_router import AwsRouterFunctions

        section = {**{k: v for k, v in provider.items() if k != "kind"}, "name": AWS}
        return AwsRouterFunctions.from_config(section, keep_alive_s=options.keep_alive_s,
                                              concurrency_limit=options.concurrency_limit,
                                              functions_cfg=functions_cfg)
    from procurement.providers.local import LocalFunctionProvider

    return LocalFunctionProvider(keep_alive_s=options.keep_alive_s, concurrency_limit=options.concurrency_limit,
                                 worker_env=worker_env)
