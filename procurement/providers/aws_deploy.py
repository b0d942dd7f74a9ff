"""`hybridserve aws deploy` / `destroy`: the AWS resources a deployment needs before
`hybridserve run` (boto3 plumbing from aws.py, the only module that imports boto3).

`AwsDeployer.deploy(spec)` makes, in order, each step idempotent (it reads first and changes only
what differs, so a second run with the same inputs changes nothing):

1. the artifacts bucket (`provider.artifacts_bucket`, default `hybridserve-<account>-<deployment>`),
   tagged, with public access blocked;
2. the project's wheel under `<deployment>/wheels/<sha256[:16]>/` with the head's constraints.txt
   beside it (a rebuilt identical wheel has the same key: builds are reproducible,
   SOURCE_DATE_EPOCH), and model weights (`<variant>.params`) under `<deployment>/weights/`
   when given (the workers sync them; the functions have theirs in the image); an object whose
   sha256 (kept in its metadata) matches is not uploaded again;
3. checks that the roles the config names exist (the Lambda execution role; the workers'
   instance profile) and that the function image is in ECR; lets Lambda pull from the
   repository (one repository-policy statement, `HybridserveLambdaPull`);
4. one Lambda function per served variant, `hs-<deployment>-<variant>` from the image
   (created with the serving memory, or its code / environment updated when they differ;
   memory is the control loop's to tune, so an existing function keeps it);
5. the EC2 launch template the workers boot from (`provider.vm.launch_template`'s name, default
   `hybridserve-<deployment>`): its user data downloads exactly that wheel, checks its sha256,
   pip-installs it under the constraints and the head's Ray version, then joins the Ray head;
   a new template version (made the default) only when that data changed (a hash in a tag).

Everything made is tagged `hybridserve:deployment=<id>`; `destroy` removes by that tag: the
deployment's functions, launch templates and running instances, the objects under
`<deployment>/` and the bucket if deploy made it, and the repository-policy statement. It
leaves what the user made (the roles, the ECR image).

With `dry_run`, only reads are made and each line says what would be done.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import string
from dataclasses import dataclass, field
from typing import Any, Callable

from procurement.providers.aws import TAG_DEPLOYMENT, TAG_MODEL, _boto3, _client, _error_code

TAG_MADE_BY = "hybridserve:made-by"
TAG_DATA_SHA = "hybridserve:data-sha256"
MADE_BY = "hybridserve aws deploy"
ECR_SID = "HybridserveLambdaPull"
NOT_FOUND = frozenset({"404", "NoSuchBucket", "NoSuchKey", "NotFound", "ResourceNotFoundException",
                       "NoSuchEntity", "InvalidLaunchTemplateName.NotFoundException",
                       "InvalidLaunchTemplateId.NotFound", "RepositoryPolicyNotFoundException"})

WORKER_USER_DATA = """#!/bin/bash
# hybridserve worker of deployment ${deployment_id}, written by `hybridserve aws deploy`: installs
# exactly the deployed wheel (${wheel_name}, sha256 ${wheel_sha256}) under the head's constraints
# and Ray ${ray_version}, then joins the Ray head as one node carrying a resource named after this
# instance (Ray Serve places replicas through it). Needs the AWS CLI and ${python} on the AMI, and
# s3:GetObject on s3://${bucket}/${prefix}* for the instance profile.
set -euo pipefail
TOKEN=$$(curl -sX PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 300')
VM_ID=$$(curl -s -H "X-aws-ec2-metadata-token: $$TOKEN" http://169.254.169.254/latest/meta-data/instance-id)
mkdir -p /opt/hybridserve/weights && cd /opt/hybridserve
aws s3 cp ${wheel_s3} ./${wheel_name}
aws s3 cp ${constraints_s3} ./constraints.txt
echo "${wheel_sha256}  ${wheel_name}" | sha256sum -c -
${python} -m pip install --quiet -c constraints.txt ./${wheel_name} "ray[serve]==${ray_version}"
${weights_sync}
export HYBRIDSERVE_DEPLOYMENT=${deployment_id_q} HYBRIDSERVE_WEIGHTS_DIR=/opt/hybridserve/weights
# When the Ray node exits the instance shuts down, and InstanceInitiatedShutdownBehavior=terminate
# ends its billing: a worker never outlives its node.
nohup bash -c "ray start --address=${ray_head_address} --resources '{\\"$${VM_ID}\\": 1}' --block; shutdown -h now" \\
  >/var/log/hybridserve-ray.log 2>&1 &
"""


class DeployError(ValueError):
    """A deploy cannot go on (a missing role or image, an AWS error): one line for the CLI."""


@dataclass(frozen=True)
class DeploySpec:
    """What to deploy, from the config and the build (controller/aws_command.py)."""

    deployment_id: str
    region: str
    image_uri: str
    role_arn: str
    variants: list[str]
    memory_mb: int
    wheel_path: str
    constraints_path: str
    ray_version: str
    ray_head_address: str
    timeout_s: int = 60
    ephemeral_storage_mb: int = 1024
    environment: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    bucket: str | None = None
    weights: list[str] = field(default_factory=list)  # paths of <variant>.params files
    launch_template_name: str | None = None
    ami_id: str | None = None
    security_group_ids: list[str] = field(default_factory=list)
    iam_instance_profile: str | None = None
    key_name: str | None = None
    python: str = "python3.11"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_image_uri(uri: str) -> tuple[str, str, dict]:
    """(registry id, repository, image id) of `<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>`
    (or `@sha256:...`); DeployError when it is not an ECR image URI."""
    host, _, rest = uri.partition("/")
    registry = host.split(".")[0]
    if ".dkr.ecr." not in host or not registry.isdigit() or not rest:
        raise DeployError(f"provider.function.image_uri = {uri!r}: not an ECR image URI "
                          f"(<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>)")
    if "@" in rest:
        repo, digest = rest.split("@", 1)
        return registry, repo, {"imageDigest": digest}
    repo, _, tag = rest.partition(":")
    return registry, repo, {"imageTag": tag or "latest"}


class AwsDeployer:
    """Deploy or destroy one deployment's AWS resources (see the module docstring)."""

    def __init__(self, region: str, endpoint_url: str | None = None, session: Any = None, dry_run: bool = False,
                 say: Callable[[str], None] = print):
        session = session or _boto3().session.Session()
        self.region, self.dry_run, self._say = region, dry_run, say
        self.s3, self.sts = _client(session, "s3", region, endpoint_url), _client(session, "sts", region, endpoint_url)
        self.iam, self.ecr = _client(session, "iam", region, endpoint_url), _client(session, "ecr", region, endpoint_url)
        self.lam, self.ec2 = _client(session, "lambda", region, endpoint_url), _client(session, "ec2", region, endpoint_url)
        self._session, self._endpoint_url = session, endpoint_url
        self.lines: list[str] = []

    def _do(self, line: str, action: Callable[[], Any] | None = None) -> None:
        """Say what is (or, in a dry run, would be) done, and do it unless dry."""
        text = f"would {line}" if self.dry_run and action is not None else line
        self.lines.append(text)
        self._say(text)
        if action is not None and not self.dry_run:
            action()

    def bucket_name(self, deployment_id: str, bucket: str | None) -> str:
        if bucket:
            return bucket
        return f"hybridserve-{self.sts.get_caller_identity()['Account']}-{deployment_id}"

    # --- deploy --------------------------------------------------------------------------------
    def deploy(self, spec: DeploySpec) -> list[str]:
        tags = {**spec.tags, TAG_DEPLOYMENT: spec.deployment_id, TAG_MADE_BY: MADE_BY}
        try:
            bucket = self.bucket_name(spec.deployment_id, spec.bucket)
            self._bucket(bucket, tags)
            wheel_sha = _sha256(spec.wheel_path)
            prefix = f"{spec.deployment_id}/"
            wheel_key = f"{prefix}wheels/{wheel_sha[:16]}/{os.path.basename(spec.wheel_path)}"
            constraints_key = f"{prefix}wheels/{wheel_sha[:16]}/constraints.txt"
            self._upload(bucket, wheel_key, spec.wheel_path, spec.deployment_id, wheel_sha)
            self._upload(bucket, constraints_key, spec.constraints_path, spec.deployment_id)
            weights_prefix = f"{prefix}weights/"
            for path in spec.weights:
                self._upload(bucket, weights_prefix + os.path.basename(path), path, spec.deployment_id)
            self._check_roles(spec)
            self._ecr(spec.image_uri)
            # The functions' weights are in the image (Dockerfile.lambda); S3's are the workers'.
            for variant in spec.variants:
                self._function(spec, variant, dict(spec.environment))
            user_data = self.worker_user_data(spec, bucket, prefix, wheel_key, wheel_sha, constraints_key,
                                              weights_prefix if spec.weights else None)
            self._launch_template(spec, user_data, tags)
        except DeployError:
            raise
        except Exception as e:  # an AWS error: one line naming the call and the code
            raise DeployError(f"aws deploy: {_error_code(e) or type(e).__name__}: {e}") from None
        return self.lines

    def worker_user_data(self, spec: DeploySpec, bucket: str, prefix: str, wheel_key: str, wheel_sha: str,
                         constraints_key: str, weights_prefix: str | None) -> str:
        sync = (f"aws s3 sync {shlex.quote(f's3://{bucket}/{weights_prefix}')} /opt/hybridserve/weights"
                if weights_prefix else "# no model weights deployed: variants start from deterministic init")
        return string.Template(WORKER_USER_DATA).substitute(
            deployment_id=spec.deployment_id, deployment_id_q=shlex.quote(spec.deployment_id),
            wheel_name=os.path.basename(wheel_key), wheel_sha256=wheel_sha, ray_version=spec.ray_version,
            python=spec.python, bucket=bucket, prefix=prefix, weights_sync=sync,
            wheel_s3=shlex.quote(f"s3://{bucket}/{wheel_key}"),
            constraints_s3=shlex.quote(f"s3://{bucket}/{constraints_key}"),
            ray_head_address=shlex.quote(spec.ray_head_address))

    def _bucket(self, bucket: str, tags: dict) -> None:
        try:
            self.s3.head_bucket(Bucket=bucket)
            self._do(f"keep bucket s3://{bucket} (exists)")
            return
        except Exception as e:
            if _error_code(e) not in NOT_FOUND:
                raise

        def create():
            kwargs = {} if self.region == "us-east-1" else {
                "CreateBucketConfiguration": {"LocationConstraint": self.region}}
            self.s3.create_bucket(Bucket=bucket, **kwargs)
            self.s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True})
            self.s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v}
                                                                          for k, v in tags.items()]})
        self._do(f"create bucket s3://{bucket} (private, tagged {TAG_DEPLOYMENT}={tags[TAG_DEPLOYMENT]})", create)

    def _upload(self, bucket: str, key: str, path: str, deployment_id: str, sha: str | None = None) -> None:
        sha = sha or _sha256(path)
        try:
            head = self.s3.head_object(Bucket=bucket, Key=key)
            if head.get("Metadata", {}).get("sha256") == sha:
                self._do(f"keep s3://{bucket}/{key} (same sha256)")
                return
        except Exception as e:
            if _error_code(e) not in NOT_FOUND:
                raise

        def put():
            with open(path, "rb") as fh:
                self.s3.put_object(Bucket=bucket, Key=key, Body=fh, Metadata={"sha256": sha},
                                   Tagging=f"{TAG_DEPLOYMENT}={deployment_id}")
        self._do(f"upload {os.path.basename(path)} ({os.path.getsize(path):,} bytes, sha256 {sha[:12]}) "
                 f"to s3://{bucket}/{key}", put)

    def _check_roles(self, spec: DeploySpec) -> None:
        role = spec.role_arn.rsplit("/", 1)[-1]
        try:
            self.iam.get_role(RoleName=role)
        except Exception as e:
            if _error_code(e) in NOT_FOUND:
                raise DeployError(f"provider.function.role_arn = {spec.role_arn!r}: no such IAM role "
                                  f"(create it first: docs/aws.md, step 2)") from None
            raise
        self._do(f"keep IAM role {role} (exists)")
        if spec.iam_instance_profile and not spec.iam_instance_profile.startswith("arn:"):
            try:
                self.iam.get_instance_profile(InstanceProfileName=spec.iam_instance_profile)
            except Exception as e:
                if _error_code(e) in NOT_FOUND:
                    raise DeployError(f"provider.vm.iam_instance_profile = {spec.iam_instance_profile!r}: no such "
                                      f"instance profile (create it first: docs/aws.md, step 2)") from None
                raise
            self._do(f"keep instance profile {spec.iam_instance_profile} (exists)")

    def _ecr(self, image_uri: str) -> None:
        registry, repo, image_id = parse_image_uri(image_uri)
        try:
            self.ecr.describe_images(registryId=registry, repositoryName=repo, imageIds=[image_id])
        except Exception as e:
            if _error_code(e) in ("ImageNotFoundException", "RepositoryNotFoundException"):
                raise DeployError(f"provider.function.image_uri = {image_uri!r}: not in ECR "
                                  f"({_error_code(e)}; build and push Dockerfile.lambda first: docs/aws.md, "
                                  f"step 1)") from None
            raise
        self._do(f"keep image {image_uri} (in ECR)")
        try:
            policy = json.loads(self.ecr.get_repository_policy(registryId=registry, repositoryName=repo)["policyText"])
        except Exception as e:
            if _error_code(e) not in NOT_FOUND:
                raise
            policy = {"Version": "2012-10-17", "Statement": []}
        if any(s.get("Sid") == ECR_SID for s in policy.get("Statement", [])):
            self._do(f"keep repository policy of {repo} (Lambda may pull)")
            return
        policy.setdefault("Statement", []).append({
            "Sid": ECR_SID, "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]})
        self._do(f"let Lambda pull from ECR repository {repo} (repository policy statement {ECR_SID})",
                 lambda: self.ecr.set_repository_policy(registryId=registry, repositoryName=repo,
                                                        policyText=json.dumps(policy)))

    def _function(self, spec: DeploySpec, variant: str, env: dict) -> None:
        from procurement.providers.aws_lambda import AwsFunctionProvider
        fns = AwsFunctionProvider(spec.deployment_id, self.region, spec.image_uri, spec.role_arn,
                                  timeout_s=spec.timeout_s, ephemeral_storage_mb=spec.ephemeral_storage_mb,
                                  environment=env, session=self._session, endpoint_url=self._endpoint_url)
        name = fns.function_name(variant)
        want_env = {**env, "HYBRIDSERVE_MODEL": variant}
        try:
            current = self.lam.get_function(FunctionName=name)
        except Exception as e:
            if _error_code(e) not in NOT_FOUND:
                raise
            current = None
        if current is None:
            def create():
                fns.deploy(variant, spec.memory_mb)
                errors = fns.poll_errors()
                if errors:
                    raise DeployError(f"aws deploy: creating {name}: {errors[0].message}")
                self._wait(name, "function_active_v2")
                self.lam.tag_resource(Resource=self.lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"],
                                      Tags={**spec.tags, TAG_MADE_BY: MADE_BY})
            self._do(f"create Lambda function {name} ({spec.memory_mb} MB, image {spec.image_uri})", create)
            return
        cfg, arn = current["Configuration"], current["Configuration"]["FunctionArn"]
        same_image = current.get("Code", {}).get("ImageUri") == spec.image_uri
        same_env = cfg.get("Environment", {}).get("Variables", {}) == want_env
        if same_image and same_env:
            self._do(f"keep Lambda function {name} (same image and environment; {cfg['MemorySize']} MB)")
            return
        if not same_env:
            self._do(f"update the environment of Lambda function {name}", lambda: (
                self.lam.update_function_configuration(FunctionName=name, Environment={"Variables": want_env}),
                self._wait(name, "function_updated_v2")))
        if not same_image:
            self._do(f"update Lambda function {name} to image {spec.image_uri}", lambda: (
                self.lam.update_function_code(FunctionName=name, ImageUri=spec.image_uri),
                self._wait(name, "function_updated_v2")))
        self._do(f"tag Lambda function {name}", lambda: self.lam.tag_resource(
            Resource=arn, Tags={**spec.tags, TAG_DEPLOYMENT: spec.deployment_id, TAG_MODEL: variant}))

    def _wait(self, name: str, waiter: str) -> None:
        # A function being created or updated refuses the next update (ResourceConflictException).
        self.lam.get_waiter(waiter).wait(FunctionName=name, WaiterConfig={"Delay": 2, "MaxAttempts": 150})

    def launch_template_data(self, spec: DeploySpec, user_data: str) -> dict:
        data: dict[str, Any] = {
            "UserData": base64.b64encode(user_data.encode()).decode(),
            "InstanceInitiatedShutdownBehavior": "terminate",
            "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"}}
        if spec.ami_id:
            data["ImageId"] = spec.ami_id
        if spec.security_group_ids:
            data["SecurityGroupIds"] = list(spec.security_group_ids)
        if spec.iam_instance_profile:
            key = "Arn" if spec.iam_instance_profile.startswith("arn:") else "Name"
            data["IamInstanceProfile"] = {key: spec.iam_instance_profile}
        if spec.key_name:
            data["KeyName"] = spec.key_name
        return data

    def _launch_template(self, spec: DeploySpec, user_data: str, tags: dict) -> None:
        name = spec.launch_template_name or f"hybridserve-{spec.deployment_id}"
        data = self.launch_template_data(spec, user_data)
        sha = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        try:
            found = self.ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
        except Exception as e:
            if _error_code(e) not in NOT_FOUND:
                raise
            found = []
        all_tags = {**tags, TAG_DATA_SHA: sha}
        if not found:
            self._do(f"create launch template {name} (user data installs {os.path.basename(spec.wheel_path)} "
                     f"and ray[serve]=={spec.ray_version})", lambda: self.ec2.create_launch_template(
                         LaunchTemplateName=name, LaunchTemplateData=data, VersionDescription=sha[:16],
                         TagSpecifications=[{"ResourceType": "launch-template",
                                             "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}]))
            return
        tmpl = found[0]
        have = {t["Key"]: t["Value"] for t in tmpl.get("Tags", [])}
        if have.get(TAG_DEPLOYMENT) not in (None, spec.deployment_id):
            raise DeployError(f"launch template {name} belongs to deployment {have[TAG_DEPLOYMENT]!r}, "
                              f"not {spec.deployment_id!r}")
        if have.get(TAG_DATA_SHA) == sha:
            self._do(f"keep launch template {name} (version {tmpl['DefaultVersionNumber']}, same data)")
            return

        def new_version():
            v = self.ec2.create_launch_template_version(LaunchTemplateName=name, LaunchTemplateData=data,
                                                        VersionDescription=sha[:16])
            number = v["LaunchTemplateVersion"]["VersionNumber"]
            self.ec2.modify_launch_template(LaunchTemplateName=name, DefaultVersion=str(number))
            self.ec2.create_tags(Resources=[tmpl["LaunchTemplateId"]],
                                 Tags=[{"Key": k, "Value": v} for k, v in all_tags.items()])
        self._do(f"update launch template {name}: a new default version (user data installs "
                 f"{os.path.basename(spec.wheel_path)} and ray[serve]=={spec.ray_version})", new_version)

    # --- destroy -------------------------------------------------------------------------------
    def destroy(self, deployment_id: str, bucket: str | None = None, image_uri: str | None = None) -> list[str]:
        try:
            self._destroy_functions(deployment_id)
            self._destroy_instances(deployment_id)
            for tmpl in self.ec2.describe_launch_templates(
                    Filters=[{"Name": f"tag:{TAG_DEPLOYMENT}", "Values": [deployment_id]}])["LaunchTemplates"]:
                self._do(f"delete launch template {tmpl['LaunchTemplateName']}", lambda t=tmpl:
                         self.ec2.delete_launch_template(LaunchTemplateId=t["LaunchTemplateId"]))
            self._destroy_objects(deployment_id, self.bucket_name(deployment_id, bucket))
            if image_uri:
                self._destroy_ecr_statement(image_uri)
        except DeployError:
            raise
        except Exception as e:
            raise DeployError(f"aws destroy: {_error_code(e) or type(e).__name__}: {e}") from None
        if not self.lines:
            self._do(f"nothing tagged {TAG_DEPLOYMENT}={deployment_id} to remove")
        return self.lines

    def _destroy_functions(self, deployment_id: str) -> None:
        marker = None
        while True:
            resp = self.lam.list_functions(**({"Marker": marker} if marker else {}))
            for fn in resp.get("Functions", []):
                tags = self.lam.list_tags(Resource=fn["FunctionArn"]).get("Tags", {})
                if tags.get(TAG_DEPLOYMENT) == deployment_id:
                    self._do(f"delete Lambda function {fn['FunctionName']}",
                             lambda n=fn["FunctionName"]: self.lam.delete_function(FunctionName=n))
            marker = resp.get("NextMarker")
            if not marker:
                return

    def _destroy_instances(self, deployment_id: str) -> None:
        resp = self.ec2.describe_instances(Filters=[
            {"Name": f"tag:{TAG_DEPLOYMENT}", "Values": [deployment_id]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
        ids = sorted(i["InstanceId"] for r in resp.get("Reservations", []) for i in r.get("Instances", []))
        if ids:  # billed while they run, and nothing to serve once the functions are gone
            self._do(f"terminate {len(ids)} instance(s) of the deployment: {', '.join(ids)}",
                     lambda: self.ec2.terminate_instances(InstanceIds=ids))

    def _destroy_objects(self, deployment_id: str, bucket: str) -> None:
        try:
            tags = {t["Key"]: t["Value"] for t in self.s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])}
        except Exception as e:
            if _error_code(e) in NOT_FOUND:
                return
            if _error_code(e) != "NoSuchTagSet":
                raise
            tags = {}
        keys = [o["Key"] for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{deployment_id}/") for o in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            batch = keys[i:i + 1000]
            self._do(f"delete {len(batch)} object(s) under s3://{bucket}/{deployment_id}/", lambda b=batch:
                     self.s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in b], "Quiet": True}))
        if tags.get(TAG_DEPLOYMENT) == deployment_id and tags.get(TAG_MADE_BY) == MADE_BY:
            # In a dry run nothing was deleted: the bucket would be empty if it held only ours.
            left = 0 if self.dry_run else self.s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount", 0)
            if left <= 0:
                self._do(f"delete bucket s3://{bucket}", lambda: self.s3.delete_bucket(Bucket=bucket))
            else:
                self._do(f"keep bucket s3://{bucket} (holds objects of other deployments)")

    def _destroy_ecr_statement(self, image_uri: str) -> None:
        registry, repo, _ = parse_image_uri(image_uri)
        try:
            policy = json.loads(self.ecr.get_repository_policy(registryId=registry, repositoryName=repo)["policyText"])
        except Exception as e:
            if _error_code(e) in NOT_FOUND or _error_code(e) == "RepositoryNotFoundException":
                return
            raise
        rest = [s for s in policy.get("Statement", []) if s.get("Sid") != ECR_SID]
        if len(rest) == len(policy.get("Statement", [])):
            return
        if rest:
            self._do(f"remove statement {ECR_SID} from the repository policy of {repo}", lambda: self.ecr.set_repository_policy(
                registryId=registry, repositoryName=repo, policyText=json.dumps({**policy, "Statement": rest})))
        else:
            self._do(f"delete the repository policy of {repo} (only {ECR_SID} was in it)",
                     lambda: self.ecr.delete_repository_policy(registryId=registry, repositoryName=repo))
