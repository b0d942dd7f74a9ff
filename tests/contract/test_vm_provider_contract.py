"""The VmProvider contract, run against every implementation (fake, aws on moto; local later).

Time: every case passes `now_s` explicitly; a booting VM must be ready once
`harness.ready_after_s` has passed (the fake's boot delay; 0 for aws, where EC2 `running`
means ready here)."""
from __future__ import annotations

import pytest

T0_S = 1000.0


def _by_id(provider, now_s):
    return {vm.vm_id: vm for vm in provider.list(now_s)}


def test_launch_returns_an_id_and_the_vm_boots_then_is_ready(vm_harness):
    p = vm_harness.provider
    vm_id = p.launch("req-1", "c5.large", "inception", T0_S)
    assert vm_id
    vm = _by_id(p, T0_S)[vm_id]
    assert (vm.request_id, vm.instance_type, vm.model) == ("req-1", "c5.large", "inception")
    assert vm.state in ("booting", "ready") and vm.spot is False
    later = T0_S + vm_harness.ready_after_s
    vm = _by_id(p, later)[vm_id]
    assert vm.state == "ready" and vm.ready_s is not None and vm.ready_s <= later
    assert p.poll_errors() == []


def test_spot_launch_is_recorded_as_spot(vm_harness):
    p = vm_harness.provider
    vm_id = p.launch("req-spot", "c5.large", "inception", T0_S, spot=True)
    assert _by_id(p, T0_S)[vm_id].spot is True


def test_same_request_id_twice_launches_once(vm_harness):
    p = vm_harness.provider
    first = p.launch("req-1", "c5.large", "inception", T0_S)
    second = p.launch("req-1", "c5.large", "inception", T0_S + 1)
    assert first == second
    assert [vm.vm_id for vm in p.list(T0_S + 1)] == [first]


def test_terminate_removes_the_vm_and_unknown_is_a_noop(vm_harness):
    p = vm_harness.provider
    keep = p.launch("req-keep", "c5.large", "inception", T0_S)
    gone = p.launch("req-gone", "c5.large", "inception", T0_S)
    p.terminate(gone, T0_S + 1)
    assert set(_by_id(p, T0_S + 2)) == {keep}
    p.terminate(gone, T0_S + 3)  # again
    p.terminate("i-0123456789abcdef0", T0_S + 3)  # never existed
    assert set(_by_id(p, T0_S + 4)) == {keep}
    assert p.poll_errors() == []


def test_a_terminated_request_is_not_launched_again(vm_harness):
    p = vm_harness.provider
    vm_id = p.launch("req-1", "c5.large", "inception", T0_S)
    p.terminate(vm_id, T0_S + 1)
    assert p.launch("req-1", "c5.large", "inception", T0_S + 2) == vm_id
    assert p.list(T0_S + 3) == []


def test_capacity_error_is_reported_not_raised(vm_harness):
    p = vm_harness.provider
    vm_harness.block_capacity("c5.large")
    vm_id = p.launch("req-cap", "c5.large", "inception", T0_S)  # must not raise
    errors = p.poll_errors()
    assert [(e.kind, e.request_id) for e in errors] == [("capacity", "req-cap")]
    assert "InsufficientInstanceCapacity" in errors[0].message and errors[0].transient
    # Either nothing was launched (fake) or a fallback type was (aws): never the blocked type.
    assert [vm.instance_type for vm in p.list(T0_S) if vm.vm_id == vm_id and vm_id] != ["c5.large"]
    assert p.poll_errors() == []  # polling clears


def test_a_restarted_controller_finds_the_same_vms_and_launches_nothing_twice(vm_harness):
    p = vm_harness.provider
    a = p.launch("req-a", "c5.large", "inception", T0_S)
    b = p.launch("req-b", "m5.large", "resnet18", T0_S)
    restarted = vm_harness.restart()
    adopted = getattr(restarted, "adopt", restarted.list)(T0_S + 5)
    assert {(vm.vm_id, vm.request_id, vm.model) for vm in adopted} == \
        {(a, "req-a", "inception"), (b, "req-b", "resnet18")}
    assert restarted.launch("req-a", "c5.large", "inception", T0_S + 6) == a
    assert len(restarted.list(T0_S + 6)) == 2
    restarted.terminate(b, T0_S + 7)
    assert [vm.vm_id for vm in restarted.list(T0_S + 8)] == [a]


@pytest.mark.parametrize("n", [3])
def test_list_holds_every_live_vm_of_the_deployment(vm_harness, n):
    p = vm_harness.provider
    ids = {p.launch(f"req-{i}", "c5.xlarge", "inception", T0_S) for i in range(n)}
    assert len(ids) == n and set(_by_id(p, T0_S + vm_harness.ready_after_s)) == ids
