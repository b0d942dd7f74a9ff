"""Guards: no plan, however wrong, makes the shell exceed max instances or max spend rate."""
from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.config import VmPlatformConfig
from controller.core import LaunchVm
from procurement.providers.base import VmRecord
from procurement.providers.guards import Guard

PRICES_USD_PER_H = {"small": 0.1, "medium": 0.2, "large": 0.8, "huge": 3.0}
SPOT_FACTOR = 0.4


def price(instance_type: str, spot: bool) -> float:
    return PRICES_USD_PER_H[instance_type] * (SPOT_FACTOR if spot else 1.0)


types = st.sampled_from(sorted(PRICES_USD_PER_H))
states = st.sampled_from(["booting", "ready", "terminating", "terminated"])


@st.composite
def fleets(draw):
    n = draw(st.integers(0, 12))
    return [VmRecord(f"vm-{i}", f"old-{i}", draw(types), "m", draw(states), 0.0, None, draw(st.booleans()))
            for i in range(n)]


@st.composite
def launch_lists(draw):
    n = draw(st.integers(0, 15))
    # Request ids drawn from a small pool so duplicates and re-issues of fleet ids happen.
    return [LaunchVm(draw(st.sampled_from([f"new-{k}" for k in range(8)] + ["old-0", "old-1"])),
                     draw(types), "m", draw(st.booleans())) for _ in range(n)]


def _live(fleet):
    return [vm for vm in fleet if vm.state != "terminated"]


@settings(max_examples=300, deadline=None)
@given(fleet=fleets(), launches=launch_lists(), max_instances=st.integers(0, 15),
       max_spend=st.floats(0.01, 10.0), fn_spend=st.floats(0.0, 5.0))
def test_no_plan_exceeds_either_limit(fleet, launches, max_instances, max_spend, fn_spend):
    guard = Guard(max_instances, max_spend)
    allowed, refused = guard.filter_launches(launches, fleet, price, fn_spend)
    assert len(allowed) + len(refused) == len(launches)
    live = _live(fleet)
    fleet_ids = {vm.request_id for vm in live}
    new = {}  # what would really launch: the first allowed launch per new request id
    for launch in allowed:
        if launch.request_id not in fleet_ids:
            new.setdefault(launch.request_id, launch)
    count_after = len(live) + len(new)
    spend_after = sum(price(vm.instance_type, vm.spot) for vm in live) + fn_spend + \
        sum(price(l.instance_type, l.spot) for l in new.values())
    if new:  # whatever was already running, nothing new may push past a limit
        assert count_after <= max_instances
        assert spend_after <= max_spend + 1e-6
    # Allowed launches are a subsequence of the plan, in plan order.
    rest = iter(launches)
    assert all(any(a is l for l in rest) for a in allowed)


@settings(max_examples=100, deadline=None)
@given(fleet=fleets(), launches=launch_lists())
def test_generous_limits_allow_everything(fleet, launches):
    allowed, refused = Guard(10_000, 1e9).filter_launches(launches, fleet, price, 0.0)
    assert allowed == list(launches) and refused == []


@settings(max_examples=100, deadline=None)
@given(fleet=fleets(), launches=launch_lists())
def test_zero_instances_allows_only_reissues(fleet, launches):
    allowed, _ = Guard(0, 1e9).filter_launches(launches, fleet, price, 0.0)
    fleet_ids = {vm.request_id for vm in _live(fleet)}
    assert all(a.request_id in fleet_ids for a in allowed)


def test_refusal_reasons_name_the_limit_and_later_cheaper_launches_still_fit():
    guard = Guard(max_instances=3, max_spend_usd_per_h=1.0)
    fleet = [VmRecord("vm-1", "old-0", "medium", "m", "ready", 0.0)]  # 0.2 USD/h
    launches = [LaunchVm("a", "huge", "m"), LaunchVm("b", "small", "m"), LaunchVm("c", "small", "m"),
                LaunchVm("d", "small", "m")]
    allowed, refused = guard.filter_launches(launches, fleet, PRICES_USD_PER_H, function_spend_usd_per_h=0.5)
    assert [a.request_id for a in allowed] == ["b", "c"]
    assert refused[0].startswith("refused launch a (huge)") and "max_spend_usd_per_h" in refused[0]
    assert "max_instances 3" in refused[1]


def test_function_spend_alone_over_the_limit_refuses_all_launches():
    allowed, refused = Guard(10, 1.0).filter_launches([LaunchVm("a", "small", "m")], [], price, 1.5)
    assert allowed == [] and "would exceed max_spend_usd_per_h" in refused[0]


def test_unknown_type_is_refused_not_priced_at_zero():
    allowed, refused = Guard(10, 100.0).filter_launches([LaunchVm("a", "x9.mega", "m")], [], price, 0.0)
    assert allowed == [] and "no price known" in refused[0]


def test_terminated_vms_do_not_count_but_terminating_ones_do():
    guard = Guard(max_instances=1, max_spend_usd_per_h=100.0)
    gone = [VmRecord("vm-1", "old-0", "small", "m", "terminated", 0.0)]
    leaving = [VmRecord("vm-1", "old-0", "small", "m", "terminating", 0.0)]
    assert len(guard.filter_launches([LaunchVm("a", "small", "m")], gone, price)[0]) == 1
    assert len(guard.filter_launches([LaunchVm("a", "small", "m")], leaving, price)[0]) == 0
    assert math.isclose(guard.fleet_spend_usd_per_h(leaving + gone, price), 0.1)


def test_from_config_reads_the_vm_platform_limits():
    guard = Guard.from_config(VmPlatformConfig(max_instances=7, max_spend_usd_per_h=2.5))
    assert guard == Guard(7, 2.5)
