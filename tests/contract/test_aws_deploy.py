"""`hybridserve aws deploy` / `destroy` against a moto server on 127.0.0.1 (S3, ECR, IAM, Lambda,
EC2), through the real CLI entry point: a dry run changes nothing, a deploy makes the bucket,
the wheel (a real, reproducible wheel of this checkout) and constraints in S3, the functions from
the image, the ECR pull permission and the launch template whose user data installs exactly that
wheel and the head's Ray; a second deploy changes nothing; a new image updates the functions;
destroy removes it all by tag. Bad input: one line, exit 2."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from importlib.metadata import version

import pytest
import yaml

from controller.cli import main
from controller.config import REPO_ROOT

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def _client(moto_server, service):
    import boto3
    return boto3.client(service, endpoint_url=moto_server.endpoint_url, region_name="us-east-1")


def _push_image(moto_server, repo: str, tag: str) -> str:
    ecr = _client(moto_server, "ecr")
    try:
        ecr.create_repository(repositoryName=repo)
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7,
                           "digest": "sha256:" + hashlib.sha256(tag.encode()).hexdigest()}, "layers": []}
    try:
        ecr.put_image(repositoryName=repo, imageManifest=json.dumps(manifest), imageTag=tag)
    except ecr.exceptions.ImageAlreadyExistsException:
        pass
    return f"{REGISTRY}/{repo}:{tag}"


@pytest.fixture
def setup(moto_server, moto_role_arn, moto_network, deployment_id, tmp_path):
    """configs/aws.yaml with this test's deployment, moto's network, a pushed image and the roles."""
    iam = _client(moto_server, "iam")
    try:
        iam.create_instance_profile(InstanceProfileName="hybridserve-worker")
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    image = _push_image(moto_server, "hybridserve-lambda", "0.1.0")
    with open(os.path.join(REPO_ROOT, "configs", "aws.yaml")) as fh:
        doc = yaml.safe_load(fh)
    doc["catalog"] = {"dir": os.path.join(REPO_ROOT, "configs", "catalog")}
    prov = doc["provider"]
    prov["deployment_id"] = deployment_id
    prov["function"].update(image_uri=image, role_arn=moto_role_arn)
    prov["vm"].update(ami_id=moto_network["ami_id"], subnet_ids=moto_network["subnet_ids"],
                      security_group_ids=moto_network["security_group_ids"],
                      launch_template={"LaunchTemplateName": f"hybridserve-{deployment_id}", "Version": "$Default"})
    path = tmp_path / "aws.yaml"
    path.write_text(yaml.safe_dump(doc))
    return {"config": str(path), "doc": doc, "image": image, "deployment_id": deployment_id,
            "bucket": f"hybridserve-123456789012-{deployment_id}"}


def _cli(capsys, *argv) -> tuple[int, list[str], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, [ln.strip() for ln in out.splitlines()], err


def _functions(moto_server, deployment_id) -> dict[str, dict]:
    lam = _client(moto_server, "lambda")
    return {f["FunctionName"]: lam.get_function(FunctionName=f["FunctionName"])
            for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith(f"hs-{deployment_id}-")}


def _bucket_exists(moto_server, bucket) -> bool:
    s3 = _client(moto_server, "s3")
    return bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_deploy_dry_run_deploy_again_update_and_destroy(moto_server, setup, capsys, tmp_path):
    url, dep, cfg = moto_server.endpoint_url, setup["deployment_id"], setup["config"]
    variants = ["inception", "mobilenet", "resnet18", "resnet50", "vgg16"]  # what `run` serves with aws.yaml

    # 1. Dry run: says what it would do, changes nothing.
    code, lines, err = _cli(capsys, "aws", "deploy", "--config", cfg, "--endpoint-url", url, "--dry-run")
    assert code == 0, err
    assert f"would create bucket s3://{setup['bucket']}" in " ".join(lines)
    assert sum(ln.startswith("would create Lambda function") for ln in lines) == len(variants)
    assert any(ln.startswith(f"would create launch template hybridserve-{dep}") for ln in lines)
    dry_upload = next(ln for ln in lines if ln.startswith("would upload hybridserve-0.1.0-py3-none-any.whl"))
    assert not _bucket_exists(moto_server, setup["bucket"]) and _functions(moto_server, dep) == {}

    # 2. Deploy: everything made, the wheel rebuilt byte for byte (same sha256 as the dry run's);
    # weights given for the workers.
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "resnet18.params").write_bytes(b"\x01" * 64)
    code, lines, err = _cli(capsys, "aws", "deploy", "--config", cfg, "--endpoint-url", url, "--weights", str(weights))
    assert code == 0, err
    upload = next(ln for ln in lines if ln.startswith("upload hybridserve-0.1.0-py3-none-any.whl"))
    assert upload == dry_upload[len("would "):]
    s3 = _client(moto_server, "s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=setup["bucket"])["Contents"]]
    wheel_key = next(k for k in keys if k.endswith(".whl"))
    wheel = s3.get_object(Bucket=setup["bucket"], Key=wheel_key)["Body"].read()
    sha = hashlib.sha256(wheel).hexdigest()
    assert wheel_key == f"{dep}/wheels/{sha[:16]}/hybridserve-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(io.BytesIO(wheel)) as z:  # a real wheel of this checkout
        names = z.namelist()
        assert "serving/lambda_handler.py" in names and "procurement/providers/aws_deploy.py" in names
        meta = z.read("hybridserve-0.1.0.dist-info/METADATA").decode()
        assert "Name: hybridserve" in meta and "Requires-Dist: ray[serve]==2.60.0" in meta
    assert s3.get_object(Bucket=setup["bucket"], Key=f"{dep}/weights/resnet18.params")["Body"].read() == b"\x01" * 64
    constraints = s3.get_object(Bucket=setup["bucket"], Key=f"{dep}/wheels/{sha[:16]}/constraints.txt")["Body"].read()
    assert constraints == open(os.path.join(REPO_ROOT, "constraints.txt"), "rb").read()
    fns = _functions(moto_server, dep)
    assert sorted(fns) == [f"hs-{dep}-{v}" for v in variants]
    for v in variants:
        f = fns[f"hs-{dep}-{v}"]
        assert f["Configuration"]["PackageType"] == "Image" and f["Code"]["ImageUri"] == setup["image"]
        assert f["Configuration"]["MemorySize"] == 1769  # serving.functions.memory_mb; the loop tunes it
        assert f["Configuration"]["Environment"]["Variables"]["HYBRIDSERVE_MODEL"] == v
        assert f["Tags"]["hybridserve:deployment"] == dep
    policy = json.loads(_client(moto_server, "ecr").get_repository_policy(repositoryName="hybridserve-lambda")["policyText"])
    assert [s["Principal"] for s in policy["Statement"] if s["Sid"] == "HybridserveLambdaPull"] == [
        {"Service": "lambda.amazonaws.com"}]
    ec2 = _client(moto_server, "ec2")
    tmpl = ec2.describe_launch_templates(LaunchTemplateNames=[f"hybridserve-{dep}"])["LaunchTemplates"][0]
    assert {t["Key"]: t["Value"] for t in tmpl["Tags"]}["hybridserve:deployment"] == dep
    data = ec2.describe_launch_template_versions(LaunchTemplateName=f"hybridserve-{dep}",
                                                 Versions=["$Default"])["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    user_data = base64.b64decode(data["UserData"]).decode()
    assert f"aws s3 cp s3://{setup['bucket']}/{wheel_key} ./hybridserve-0.1.0-py3-none-any.whl" in user_data
    assert f'echo "{sha}  hybridserve-0.1.0-py3-none-any.whl" | sha256sum -c -' in user_data
    assert f'-c constraints.txt ./hybridserve-0.1.0-py3-none-any.whl "ray[serve]=={version("ray")}"' in user_data
    assert "ray start --address=10.0.1.10:6379" in user_data
    assert f"aws s3 sync s3://{setup['bucket']}/{dep}/weights/ /opt/hybridserve/weights" in user_data
    assert data["ImageId"] == setup["doc"]["provider"]["vm"]["ami_id"]
    assert data["InstanceInitiatedShutdownBehavior"] == "terminate"

    # 3. Again: idempotent, nothing changes (the deployed wheel given back: builds were shown
    # reproducible above, and each build costs seconds of CPU).
    local_wheel = tmp_path / "hybridserve-0.1.0-py3-none-any.whl"
    local_wheel.write_bytes(wheel)
    code, lines, err = _cli(capsys, "aws", "deploy", "--config", cfg, "--endpoint-url", url, "--wheel", str(local_wheel),
                            "--weights", str(weights))
    assert code == 0, err
    steps = [ln for ln in lines[2:] if not ln.startswith("hybridserve aws deploy")]
    assert steps and all(ln.startswith("keep ") for ln in steps), steps

    # 4. A new image: every function moves to it, nothing else changes.
    new_image = _push_image(moto_server, "hybridserve-lambda", "0.1.1")
    doc = setup["doc"]
    doc["provider"]["function"]["image_uri"] = new_image
    with open(cfg, "w") as fh:
        yaml.safe_dump(doc, fh)
    code, lines, err = _cli(capsys, "aws", "deploy", "--config", cfg, "--endpoint-url", url, "--wheel", str(local_wheel),
                            "--weights", str(weights))
    assert code == 0, err
    assert sum(ln.startswith("update Lambda function") and ln.endswith(new_image) for ln in lines) == len(variants)
    assert not any(ln.startswith(("upload", "create", "update launch template")) for ln in lines)
    assert {f["Code"]["ImageUri"] for f in _functions(moto_server, dep).values()} == {new_image}

    # 5. Destroy: a dry run first, then everything it (and the daemon) made, by tag.
    instance = ec2.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "hybridserve:deployment", "Value": dep}]}])["Instances"][0]
    code, lines, err = _cli(capsys, "aws", "destroy", "--config", cfg, "--endpoint-url", url, "--dry-run")
    assert code == 0 and all(ln.startswith("would ") for ln in lines[1:]), lines
    assert len(_functions(moto_server, dep)) == len(variants)
    code, lines, err = _cli(capsys, "aws", "destroy", "--config", cfg, "--endpoint-url", url)
    assert code == 0, err
    assert _functions(moto_server, dep) == {} and not _bucket_exists(moto_server, setup["bucket"])
    assert ec2.describe_launch_templates(Filters=[{"Name": "tag:hybridserve:deployment", "Values": [dep]}])[
        "LaunchTemplates"] == []
    state = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"][0]["Instances"][0]["State"]
    assert state["Name"] in ("shutting-down", "terminated")
    policy = _client(moto_server, "ecr").get_repository_policy  # our statement is gone with the policy
    with pytest.raises(Exception, match="RepositoryPolicyNotFound"):
        policy(repositoryName="hybridserve-lambda")
    code, lines, err = _cli(capsys, "aws", "destroy", "--config", cfg, "--endpoint-url", url)
    assert code == 0 and lines[-1].startswith("nothing tagged"), lines


def _bad(setup, tmp_path, edit) -> str:
    doc = json.loads(json.dumps(setup["doc"]))
    edit(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["provider"].pop("region"), "provider.region"),
    (lambda d: d["provider"]["function"].pop("image_uri"), "provider.function.image_uri"),
    (lambda d: d["provider"].update(name="local"), "provider.name must be 'aws'"),
    (lambda d: d["provider"]["function"].update(image_uri=f"{REGISTRY}/hybridserve-lambda:no-such-tag"),
     "not in ECR (ImageNotFoundException"),
    (lambda d: d["provider"]["function"].update(image_uri="docker.io/library/python:3.11"), "not an ECR image URI"),
    (lambda d: d["provider"]["function"].update(role_arn="arn:aws:iam::123456789012:role/nope"), "no such IAM role"),
])
def test_bad_input_is_one_line_and_exit_2(moto_server, setup, tmp_path, capsys, edit, message):
    cfg = _bad(setup, tmp_path, edit)
    built = tmp_path / "hybridserve-0.1.0-py3-none-any.whl"  # not built: these fail before or after
    built.write_bytes(b"PK")
    code, _, err = _cli(capsys, "aws", "deploy", "--config", cfg, "--endpoint-url", moto_server.endpoint_url,
                        "--wheel", str(built))
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _functions(moto_server, setup["deployment_id"]) == {}


def test_a_weights_folder_without_params_is_one_line_and_exit_2(moto_server, setup, tmp_path, capsys):
    code, _, err = _cli(capsys, "aws", "deploy", "--config", setup["config"], "--endpoint-url",
                        moto_server.endpoint_url, "--weights", str(tmp_path))
    assert code == 2 and "no <variant>.params file in it" in err and len(err.strip().splitlines()) == 1


def test_a_wheel_that_does_not_build_is_one_line_and_exit_2(moto_server, setup, tmp_path, capsys):
    project = tmp_path / "project"
    project.mkdir()
    for d in ("controller", "selector", "procurement", "serving"):
        (project / d).mkdir()
    (project / "README.md").write_text("x")
    # A broken pyproject.toml: pip refuses it before building anything (a second or so; a
    # project that fails later costs a build environment, seconds of CPU, to show the same path).
    (project / "pyproject.toml").write_text('[project\nname = "hybridserve"\n')
    code, _, err = _cli(capsys, "aws", "deploy", "--config", setup["config"], "--endpoint-url",
                        moto_server.endpoint_url, "--project-dir", str(project))
    assert code == 2 and "the wheel does not build from" in err and "TOMLDecodeError" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not _bucket_exists(moto_server, setup["bucket"])
