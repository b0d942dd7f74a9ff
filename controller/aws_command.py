"""`hybridserve aws deploy` and `hybridserve aws destroy`: the CLI glue over
procurement/providers/aws_deploy.py (which holds every AWS call).

deploy, in order:
1. validate the config's aws `provider:` section (a missing region or image URI is one line and
   exit 2) and resolve the served variants exactly as `hybridserve run` does (one function each);
2. build the project's wheel from a clean copy of the project (pyproject.toml, README.md and the
   four packages) with `pip wheel --no-deps`, reproducibly (SOURCE_DATE_EPOCH), or take `--wheel`;
   a wheel that does not build is one line and exit 2;
3. hand the wheel, constraints.txt, the head's Ray version (this interpreter's) and the config to
   `AwsDeployer.deploy`, which prints one line per step (`would ...` with --dry-run).
destroy removes what deploy and the daemon made for the deployment, by tag.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile

# A fixed timestamp for every file of the wheel: the same sources give the same bytes, hence the
# same sha256 and S3 key, and a second deploy uploads nothing.
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest a zip can hold
PROJECT_FILES = ("pyproject.toml", "README.md")
PACKAGES = ("controller", "selector", "procurement", "serving")


def add_parser(sub) -> None:
    a = sub.add_parser("aws", help="deploy (or destroy) what `hybridserve run` needs on AWS")
    asub = a.add_subparsers(dest="aws_command", required=True, parser_class=type(a))
    d = asub.add_parser("deploy", help="wheel and weights to S3, Lambda functions from the image, the "
                        "workers' launch template; idempotent")
    d.add_argument("--config", default="configs/aws.yaml")
    d.add_argument("--endpoint-url", help="AWS API endpoint, e.g. a moto server (default: provider.endpoint_url)")
    d.add_argument("--dry-run", action="store_true", help="only read; print what would be done")
    d.add_argument("--weights", help="folder of <variant>.params files to upload for the workers")
    d.add_argument("--wheel", help="a built hybridserve wheel to deploy instead of building one")
    d.add_argument("--project-dir", help="the project to build the wheel from (default: this checkout)")
    x = asub.add_parser("destroy", help="remove the deployment's functions, launch templates, instances and "
                        "S3 objects (by tag)")
    x.add_argument("--config", default="configs/aws.yaml")
    x.add_argument("--endpoint-url", help="AWS API endpoint, e.g. a moto server (default: provider.endpoint_url)")
    x.add_argument("--dry-run", action="store_true", help="only read; print what would be removed")


def _aws_config(args):
    """(config, its validated AwsProviderConfig); ConfigError for a non-aws or invalid section."""
    from controller.config import ConfigError, load_config
    from procurement.providers.aws_config import AwsProviderConfig
    from serving.function_fleet import AWS, provider_kind_of
    from controller.live.vm_fleet import with_endpoint_url

    cfg = load_config(args.config)
    if provider_kind_of(cfg.provider) != AWS:
        raise ConfigError(f"{args.config}: provider.name must be 'aws' for `hybridserve aws`")
    cfg = with_endpoint_url(cfg, args.endpoint_url)
    section = {**{k: v for k, v in cfg.provider.items() if k != "kind"}, "name": AWS}
    return cfg, AwsProviderConfig.parse(section)


def served_variants(cfg) -> list[str]:
    """The variants `hybridserve run` serves with this config (each gets a function)."""
    from controller.catalog import load_catalog
    from serving.router import served_apps
    from serving.settings import serving_config
    from controller.live.vm_fleet import fleet_settings

    settings = fleet_settings(cfg, serving_config(cfg))
    apps = served_apps(cfg, settings, load_catalog(cfg.catalog.dir))
    variants = sorted({v for a in apps for v in a.variants})
    if not variants:
        raise ValueError("no variant to serve: the config's apps meet no model variant (serving.apps, apps)")
    return variants


def build_wheel(project_dir: str, out_dir: str) -> str:
    """Path of the project's wheel built into `out_dir`; ValueError (one line) if it does not build."""
    missing = [f for f in (*PROJECT_FILES, *PACKAGES) if not os.path.exists(os.path.join(project_dir, f))]
    if missing:
        raise ValueError(f"the wheel does not build from {project_dir}: missing {', '.join(missing)}")
    src = os.path.join(out_dir, "src")
    os.makedirs(src)
    # A clean copy: nothing of this checkout's build/, egg-info or caches gets into the wheel.
    for f in PROJECT_FILES:
        shutil.copy2(os.path.join(project_dir, f), src)
    for p in PACKAGES:
        shutil.copytree(os.path.join(project_dir, p), os.path.join(src, p),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out_dir, src],
                          capture_output=True, text=True, env=env)
    wheels = glob.glob(os.path.join(out_dir, "hybridserve-*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        why = next((ln for ln in reversed(lines) if "error" in ln.lower() and "note:" not in ln.lower()),
                   lines[-1] if lines else f"pip exited {proc.returncode}")
        raise ValueError(f"the wheel does not build from {project_dir}: {why[:300]}")
    return wheels[0]


def _ray_version() -> str:
    from importlib.metadata import version
    return version("ray")


def _say(line: str) -> None:
    print(f"  {line}", flush=True)


def run(args) -> int:
    from controller.config import REPO_ROOT
    from procurement.providers.aws_deploy import AwsDeployer, DeploySpec
    from serving.settings import serving_config

    cfg, aws = _aws_config(args)
    dry = " (dry run: nothing changes)" if args.dry_run else ""
    where = f" at {aws.endpoint_url}" if aws.endpoint_url else ""
    if args.aws_command == "destroy":
        print(f"hybridserve aws destroy: deployment {aws.deployment_id} in {aws.region}{where}{dry}", flush=True)
        AwsDeployer(aws.region, aws.endpoint_url, dry_run=args.dry_run, say=_say).destroy(
            aws.deployment_id, aws.artifacts_bucket, aws.function.image_uri)
        return 0
    variants = served_variants(cfg)
    weights = []
    if args.weights:
        if not os.path.isdir(args.weights):
            raise ValueError(f"--weights {args.weights}: not a folder")
        weights = sorted(glob.glob(os.path.join(args.weights, "*.params")))
        if not weights:
            raise ValueError(f"--weights {args.weights}: no <variant>.params file in it")
    print(f"hybridserve aws deploy: deployment {aws.deployment_id} in {aws.region}{where}{dry}; "
          f"functions for {', '.join(variants)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="hybridserve-wheel-") as tmp:
        if args.wheel:
            if not (os.path.isfile(args.wheel) and args.wheel.endswith(".whl")):
                raise ValueError(f"--wheel {args.wheel}: not a wheel file")
            wheel = args.wheel
        else:
            wheel = build_wheel(os.path.abspath(args.project_dir or REPO_ROOT), tmp)
        project = os.path.abspath(args.project_dir or REPO_ROOT)
        _say(f"built {os.path.basename(wheel)}" if not args.wheel else f"using {wheel}")
        vm, fn = aws.vm, aws.function
        template = (vm.launch_template or {}).get("LaunchTemplateName")
        spec = DeploySpec(
            deployment_id=aws.deployment_id, region=aws.region, image_uri=fn.image_uri, role_arn=fn.role_arn,
            variants=variants, memory_mb=serving_config(cfg).functions.memory_mb,
            wheel_path=wheel, constraints_path=os.path.join(project, "constraints.txt"),
            ray_version=_ray_version(), ray_head_address=vm.ray_head_address, timeout_s=fn.timeout_s,
            ephemeral_storage_mb=fn.ephemeral_storage_mb, environment=dict(fn.environment), tags=dict(aws.tags),
            bucket=aws.artifacts_bucket, weights=weights, launch_template_name=template, ami_id=vm.ami_id,
            security_group_ids=list(vm.security_group_ids), iam_instance_profile=vm.iam_instance_profile,
            key_name=vm.key_name)
        if not os.path.isfile(spec.constraints_path):
            raise ValueError(f"{spec.constraints_path}: missing (the workers install under the head's pins)")
        AwsDeployer(aws.region, aws.endpoint_url, dry_run=args.dry_run, say=_say).deploy(spec)
    if not template:
        print(f"hybridserve aws deploy: note: provider.vm.launch_template is not set, so workers do not boot "
              f"from hybridserve-{aws.deployment_id}; set it to {{LaunchTemplateName: hybridserve-"
              f"{aws.deployment_id}, Version: $Default}}", flush=True)
    return 0
