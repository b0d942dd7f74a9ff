"""Hybrid's spill route: the VM wait budget a Plan carries to the router is the SLO less the
slowest VM service time among the types that serve the model (a shared head's included), never
negative, at the smallest batch among them. Expected figures come from vm_latency.csv's rows,
read here as plain CSV."""
import csv
import os

import pytest

from controller.core import PolicyContext
from controller.policies.registry import make_policy
from controller.sim.engine import query_classes
from procurement.planner_types import MixEntry, VmMix, VmOption

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _row_ms(model: str, instance_type: str, batch: int) -> float:
    with open(os.path.join(ROOT, "configs", "catalog", "vm_latency.csv")) as fh:
        for r in csv.DictReader(fh):
            if (r["model"], r["instance_type"], int(r["batch_size"])) == (model, instance_type, batch):
                return float(r["latency_ms"])
    raise KeyError((model, instance_type, batch))


def _option(instance_type: str, batch: int) -> VmOption:
    return VmOption("mobilenet", instance_type, False, batch, _row_ms("mobilenet", instance_type, batch), 100.0, 0.1)


def _mix(*entries) -> VmMix:
    return VmMix(tuple(MixEntry(o, n) for o, n in entries), 0.0, {}, {})


@pytest.fixture(scope="module")
def hybrid(config, catalog):
    return make_policy("hybrid", PolicyContext(config, catalog, query_classes(config)))


def test_budget_is_the_slo_less_the_slowest_serving_type_at_the_smallest_batch(hybrid):
    c5_8, m5_4, c5_16 = _option("c5.large", 8), _option("m5.large", 4), _option("c5.large", 16)
    route = hybrid._spill_route(_mix((c5_8, 2), (m5_4, 1), (c5_16, 0)), "mobilenet", 300.0)
    # c5.large batch 8 is 165.53 ms, m5.large batch 4 under it; batch 16 has no VM, so no say.
    slowest_ms = max(_row_ms("mobilenet", "c5.large", 8), _row_ms("mobilenet", "m5.large", 4))
    assert slowest_ms == 165.53
    assert route.spill and route.model == "mobilenet"
    assert route.max_vm_wait_ms == pytest.approx(300.0 - 165.53)
    assert route.vm_batch_size == 4


def test_a_shared_head_slower_than_the_mix_sets_the_budget(hybrid):
    route = hybrid._spill_route(_mix((_option("c5.large", 4), 1)), "mobilenet", 300.0, head=(200.0, 2))
    assert route.max_vm_wait_ms == pytest.approx(100.0)
    assert route.vm_batch_size == 4  # the mix serves the model: its batch, not the head's


def test_the_head_alone_gives_its_batch_and_a_budget_never_below_zero(hybrid):
    route = hybrid._spill_route(_mix(), "mobilenet", 100.0, head=(150.0, 2))
    assert route.max_vm_wait_ms == 0.0 and route.vm_batch_size == 2


def test_no_vm_serving_the_model_spills_everything(hybrid):
    route = hybrid._spill_route(_mix((_option("c5.large", 8), 0)), "mobilenet", 300.0)
    assert route.max_vm_wait_ms == 0.0 and route.spill
