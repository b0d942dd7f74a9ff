"""Schema of the `provider:` section for AWS (`name: aws`), validated once when a provider is
built from a config. Kept apart from aws.py so that validating a config needs no boto3.

Example: configs/aws.yaml. A validation error becomes `ConfigError` with the key path, e.g.
`provider.vm.subnet_ids = 'subnet-1': Input should be a valid list`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from controller.config import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySettings(_Strict):
    """Backoff for throttled API calls (RequestLimitExceeded, TooManyRequestsException...)."""

    max_attempts: int = Field(default=5, ge=1, le=20, description="calls in all, the first included")
    base_delay_s: float = Field(default=0.2, gt=0, description="delay after the first throttled call")
    max_delay_s: float = Field(default=5.0, gt=0, description="cap of one delay")


class AwsVmSettings(_Strict):
    """How EC2 workers are launched."""

    ray_head_address: str = Field(min_length=1, description="host:port of the Ray head the workers join")
    ami_id: str | None = Field(default=None, description="AMI with Python 3.11; or use launch_template")
    launch_template: dict[str, str] | None = Field(
        default=None, description="{LaunchTemplateName|LaunchTemplateId: ..., Version: ...}")
    subnet_ids: list[str] = Field(default_factory=list, description="tried in order on capacity errors")
    security_group_ids: list[str] = Field(default_factory=list)
    iam_instance_profile: str | None = Field(default=None, description="instance profile name or ARN")
    key_name: str | None = None
    pip_spec: str = Field(default="hybridserve", description="what the built-in user data pip-installs "
                          "(without a launch_template; with one, the template's user data, written by "
                          "`hybridserve aws deploy`, installs the deployed wheel)")
    user_data_template_path: str | None = Field(default=None, description="string.Template file; "
                                                "default: the launch template's user data when launch_template "
                                                "is set, else the template in aws.py")
    instance_types: list[str] = Field(default_factory=list, description="default: vms.instance_types")
    max_fallbacks: int = Field(default=2, ge=0, description="dearer types tried on capacity errors")

    @model_validator(mode="after")
    def _image(self):
        if not self.ami_id and not self.launch_template:
            raise ValueError("provider.vm needs ami_id or launch_template")
        return self


class AwsFunctionSettings(_Strict):
    """How Lambda functions are created."""

    image_uri: str = Field(min_length=1, description="ECR image built from Dockerfile.lambda")
    role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$", description="execution role")
    timeout_s: int = Field(default=60, ge=1, le=900)
    ephemeral_storage_mb: int = Field(default=1024, ge=512, le=10240, description="/tmp for model weights")
    reserved_concurrency: int | None = Field(default=None, ge=0, description="per function; None: unreserved")
    provisioned_concurrency: bool = Field(default=False, description="keep the warm pool as provisioned "
                                          "concurrency (billed while set) instead of warm-up pings")
    environment: dict[str, str] = Field(default_factory=dict, description="extra variables for the handler")


class AwsProviderConfig(_Strict):
    """The `provider:` section for AWS."""

    name: Literal["aws"] = "aws"
    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    deployment_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,23}$",
                               description="tags every resource; one controller per deployment id")
    endpoint_url: str | None = Field(default=None, description="e.g. a moto server; None: AWS")
    tags: dict[str, str] = Field(default_factory=dict, description="extra tags on every instance")
    artifacts_bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                                         description="S3 bucket `hybridserve aws deploy` puts the wheel and weights in; None: hybridserve-<account id>-<deployment id>")
    vm: AwsVmSettings
    function: AwsFunctionSettings
    retry: RetrySettings = RetrySettings()

    @classmethod
    def parse(cls, provider_cfg: dict) -> "AwsProviderConfig":
        """Validate; raise ConfigError naming the key path (under `provider.`) and the value."""
        try:
            return cls.model_validate(provider_cfg)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in ("provider", *err["loc"]))
            value = err.get("input")
            shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
            raise ConfigError(f"{loc} = {shown}: {err['msg']}") from None
