"""controller.live.control_loop.ControlLoop driving a real LocalVmProvider with injected VM faults (no
Ray: every VM "never boots", so it is a real child process whose node never joins): the loop
gives up on a VM that never finishes booting (terminates it, counts it, buys a replacement),
counts a VM that died and replaces it, survives API errors on launch and terminate (a failed
terminate is retried; nothing leaks), and a restarted loop adopts the running VMs without
buying any twice. Never past the guard's max_vms."""
import threading
import time

import pytest
from test_aws_control_loop import FakeRouter, parts  # noqa: F401  (parts is a fixture)

from procurement.providers.local_vm import LocalVmProvider, VmFaults
from controller.live.control_loop import ControlLoop


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def settle(loop) -> None:
    """Wait for the loop's fleet worker pool (releases) to finish what it was given: a task per
    worker that waits for the others, so each worker has finished its queued work first."""
    workers = loop._pool._max_workers
    barrier = threading.Barrier(workers)
    for fut in [loop._pool.submit(barrier.wait, 30) for _ in range(workers)]:
        fut.result(timeout=60)


@pytest.fixture
def local_loop(parts):  # noqa: F811
    made = []

    def make(faults: VmFaults, join_timeout_s: float = 5.0, vms=None):
        cfg, settings, apps, catalog = parts()
        settings = settings.model_copy(update={"head_instance_type": None})  # no standing head VM here
        vms = vms or LocalVmProvider("127.0.0.1:1", boot_s=lambda t: 1.0, vcpu_of=lambda t: 1, faults=faults,
                                     join_timeout_s=join_timeout_s)
        clock = [1000.0]
        loop = ControlLoop(cfg, settings, apps, catalog, FakeRouter(rate_per_s=60), vms, clock=lambda: clock[0],
                           joined_vm_ids=lambda: set())
        made.append(loop)
        return loop, vms, clock
    yield make
    for loop in made:
        loop.vms.set_faults(None)
        loop.stop(release=True)


def run(loop, clock, ticks: int, step_s: float = 2.0) -> set[str]:
    """Tick `ticks` times; the ids of every VM seen meanwhile (never more than max_vms at once)."""
    seen = set()
    for _ in range(ticks):
        loop.tick()
        settle(loop)
        live = loop.vms.list(clock[0])
        assert len(live) <= loop.cfg.vms.max_instances  # guard breaches: 0
        seen |= {r.vm_id for r in live}
        clock[0] += step_s
    return seen


def test_a_vm_that_never_boots_is_given_up_terminated_and_replaced(local_loop):
    loop, vms, clock = local_loop(VmFaults(never_boot=1.0), join_timeout_s=5.0)
    first = run(loop, clock, 3)
    assert first and loop.errors.get("vm_boot_timeout", 0) == 0
    pids = vms.pids()
    seen = run(loop, clock, 6)
    assert loop.errors.get("vm_boot_timeout", 0) >= 1
    assert any("has not joined in 5 s; giving up" in e for e in loop.events)
    gone = [vm_id for vm_id in first if vm_id not in {r.vm_id for r in vms.list(clock[0])}]
    assert gone and all(not alive(pids[v]) for v in gone if v in pids)  # terminated: no process left
    assert seen - first, "a replacement was bought while the load still wants a VM"
    assert loop.errors.get("tick", 0) == 0


def test_a_vm_that_dies_is_counted_and_replaced(local_loop):
    loop, vms, clock = local_loop(VmFaults(never_boot=1.0, die_after_s=4.0), join_timeout_s=600.0)
    seen = run(loop, clock, 8)
    assert loop.errors.get("provider_died", 0) >= 1 and vms.injected["died"] >= 1
    assert len(seen) >= 2  # the dead one and its replacement
    assert loop.errors.get("tick", 0) == 0


def test_api_errors_on_launch_and_terminate_are_survived_and_nothing_leaks(local_loop):
    loop, vms, clock = local_loop(VmFaults(never_boot=1.0, api_error=1.0), join_timeout_s=5.0)
    run(loop, clock, 2)
    assert vms.list(clock[0]) == [] and vms.injected["api_error"] == 2  # the launch and its retry failed
    assert loop.errors.get("provider_api", 0) >= 1  # reported and counted
    assert len(loop._failed_launches) == 1  # the plan's launch, tried again on the next ticks
    vms.set_faults(VmFaults(never_boot=1.0))
    run(loop, clock, 1)
    [vm] = vms.list(clock[0])  # the API recovered: the same launch (request id) went through
    pid = vms.pids()[vm.vm_id]
    vms.set_faults(VmFaults(never_boot=1.0, api_error=1.0))  # from now on every terminate fails too
    run(loop, clock, 5)  # past the join timeout: the loop gives up on it, its terminate fails
    assert loop.errors.get("vm_boot_timeout", 0) >= 1 and alive(pid)
    assert loop.errors.get("vm_release_retry", 0) >= 1  # still up after its release: released again
    vms.set_faults(VmFaults(never_boot=1.0))  # the API recovers
    run(loop, clock, 2)
    assert not alive(pid) and vm.vm_id not in {r.vm_id for r in vms.list(clock[0])}
    assert loop.errors.get("tick", 0) == 0


def test_a_restarted_loop_adopts_the_running_vms_and_buys_none_twice(local_loop):
    loop, vms, clock = local_loop(VmFaults(never_boot=1.0), join_timeout_s=600.0)
    run(loop, clock, 4)
    running = {r.vm_id: r.request_id for r in vms.list(clock[0])}
    pids = vms.pids()
    assert running and set(loop.stop(release=False)) == set(running)  # left running for the next loop
    # The control loop (and its provider object) made again inside the same daemon process.
    loop2, vms2, clock2 = local_loop(None, join_timeout_s=600.0,
                                     vms=LocalVmProvider("127.0.0.1:1", boot_s=lambda t: 1.0, vcpu_of=lambda t: 1,
                                                         join_timeout_s=600.0))
    clock2[0] = clock[0]
    assert {r.vm_id: r.request_id for r in loop2.adopt()} == running
    assert any(f"adopted {len(running)} VM(s)" in e for e in loop2.events)
    run(loop2, clock2, 4)
    assert {r.vm_id for r in vms2.list(clock2[0])} == set(running)  # the same load: nothing bought again
    assert vms2.pids() == pids and all(alive(p) for p in pids.values())
    assert loop2.stop() == []  # released at exit: no process left
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids.values())
