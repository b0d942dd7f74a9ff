"""controller.live.control_loop.ControlLoop driving a real AwsVmProvider against the moto server (no Ray):
the plan's launches become tagged EC2 instances, never past the guard (priced at the provider's
worst case, fallbacks included); instances that never join a Ray cluster block nothing; a
restarted loop adopts them instead of buying again; stop leaves or releases them."""
import boto3
import pytest

from controller.config import load_config
from procurement.providers.aws import TAG_DEPLOYMENT, TAG_REQUEST
from controller.live.control_loop import ControlLoop
from controller.live.live_catalog import build_live_catalog
from serving.router import App
from serving.settings import serving_config

from control_loop_fakes import MODELS, FakeRouter


@pytest.fixture
def parts(tmp_path):
    def make(max_spend_usd_per_h: float = 100.0):
        cfg = load_config("tests/integration/live.yaml")
        cfg = cfg.model_copy(update={"vms": cfg.vms.model_copy(update={"max_spend_usd_per_h": max_spend_usd_per_h})})
        settings = serving_config(cfg, {"control": {"max_vms": 2, "instance_types": ["c5.large"], "vm_boot_s": 1,
                                                    "policy_params": {"predictor": "last-value"}},
                                            "head_instance_type": None})
        acc = {"digits-large": 0.98, "digits-medium": 0.97, "digits-small": 0.9}
        catalog = build_live_catalog(cfg.catalog.dir, str(tmp_path), MODELS, acc, ["c5.large"], 1.0,
                                     measure=lambda v: ({1: 1.0, 2: 1.2, 4: 1.5, 8: 2.0}, 50.0))
        return cfg, settings, [App("digits", 200.0, 0.85, tuple(MODELS))], catalog
    return make


def _instances(moto_server, deployment_id, states=("pending", "running")) -> dict[str, str]:
    """{instance id: request id} of the deployment's instances in `states`, as EC2 shows them."""
    ec2 = boto3.client("ec2", endpoint_url=moto_server.endpoint_url, region_name="us-east-1")
    resp = ec2.describe_instances(Filters=[{"Name": f"tag:{TAG_DEPLOYMENT}", "Values": [deployment_id]},
                                           {"Name": "instance-state-name", "Values": list(states)}])
    return {i["InstanceId"]: {t["Key"]: t["Value"] for t in i["Tags"]}[TAG_REQUEST]
            for r in resp["Reservations"] for i in r["Instances"]}


def _run(loop, clock, ticks: int) -> list:
    launches = []
    for _ in range(ticks):
        loop.tick()
        launches += list(loop.last_plan.launches) if loop.last_plan else []
        clock[0] += 2.0
    return launches


def test_plan_launches_tagged_instances_then_a_restart_adopts_them(parts, make_aws_vm, moto_server, deployment_id):
    cfg, settings, apps, catalog = parts()
    clock = [1000.0]
    router = FakeRouter(rate_per_s=60)
    loop = ControlLoop(cfg, settings, apps, catalog, router, make_aws_vm(), clock=lambda: clock[0],
                       release_on_exit=False)
    assert loop.adopt() == []
    planned = _run(loop, clock, 6)
    running = _instances(moto_server, deployment_id)
    assert planned and 1 <= len(running) <= 2  # bought per plan, never past max_vms
    assert set(running.values()) == {launch.request_id for launch in planned}  # one instance per decision
    assert loop.errors.get("tick", 0) == 0 and loop.ticks == 6
    # EC2 says running, but no Ray node ever joins (moto): shown as such, and serving goes on.
    fleet = router.updates[-1]["status"]["fleet"]
    assert {f["vm_id"] for f in fleet} == set(running)
    assert {f["state"] for f in fleet} == {"ready-but-not-joined"}
    assert set(loop.stop()) == set(running)  # release_on_exit False: left for the next start

    # A restarted controller (new provider, new loop, same deployment) adopts them and buys nothing more.
    clock[0] += 60.0
    loop2 = ControlLoop(cfg, settings, apps, catalog, FakeRouter(rate_per_s=60), make_aws_vm(),
                        clock=lambda: clock[0], release_on_exit=True)
    assert {r.vm_id for r in loop2.adopt()} == set(running)
    assert any(f"adopted {len(running)} VM(s)" in e for e in loop2.events)
    _run(loop2, clock, 4)
    assert _instances(moto_server, deployment_id) == running
    assert loop2.errors.get("tick", 0) == 0
    assert loop2.stop() == []  # release_on_exit: the fleet is terminated
    assert _instances(moto_server, deployment_id) == {}
    assert set(_instances(moto_server, deployment_id, ("shutting-down", "terminated"))) == set(running)


def test_guard_prices_a_launch_at_the_providers_worst_case(parts, make_aws_vm, moto_server, deployment_id):
    # c5.large lists at 0.085 USD/h, under the 0.1 limit; but a capacity error may make the
    # provider fall back to m5.large (0.096) or c5.xlarge (0.17): the guard must assume 0.17.
    cfg, settings, apps, catalog = parts(max_spend_usd_per_h=0.1)
    vms = make_aws_vm()
    assert vms.worst_case_price_usd_per_h("c5.large") == pytest.approx(0.17)
    clock = [1000.0]
    loop = ControlLoop(cfg, settings, apps, catalog, FakeRouter(rate_per_s=60), vms, clock=lambda: clock[0])
    planned = _run(loop, clock, 6)
    assert planned, "the plan wanted a VM"
    assert _instances(moto_server, deployment_id) == {}
    assert loop.errors.get("guard_refused", 0) >= 1
    assert any("would exceed max_spend_usd_per_h 0.1" in e for e in loop.events)
