"""procurement.providers.local_vm: injected VM faults, adoption by a provider made again in the
same process, and the lifetime of a VM's process (tied to this process, not to the thread that
launched it; gone when this process is killed). Real child processes, no Ray: every VM here
"never boots" (`VmFaults(never_boot=1)`), so it is a process that waits instead of `ray start`."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from procurement.providers.local_vm import LocalVmProvider, VmFaults

HEAD = "127.0.0.1:1"  # never contacted: no VM here runs `ray start`


def provider(head: str = HEAD, **faults) -> LocalVmProvider:
    return LocalVmProvider(head, boot_s=lambda t: 1.0, vcpu_of=lambda t: 1,
                           faults=VmFaults(**{"never_boot": 1.0, **faults}))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


@pytest.fixture
def providers():
    made = []
    yield lambda *a, **kw: made.append(provider(*a, **kw)) or made[-1]
    for p in made:
        p.close(0.0)


def test_parse_names_every_fault_and_refuses_unknown_or_out_of_range():
    f = VmFaults.parse("never_boot=0.5, die_after_s=20,slow_boot_s=5,api_error=0.2,seed=1")
    assert f == VmFaults(never_boot=0.5, die_after_s=20.0, slow_boot_s=5.0, api_error=0.2, seed=1)
    assert VmFaults.parse("") == VmFaults()
    with pytest.raises(ValueError, match="unknown VM fault 'explode'"):
        VmFaults.parse("explode=1")
    with pytest.raises(ValueError, match="never_boot and api_error must be in"):
        VmFaults.parse("api_error=1.5")
    with pytest.raises(ValueError, match="die_after_s"):
        VmFaults(die_after_s=-1)


def test_a_vm_that_never_boots_is_up_but_runs_no_ray_node(providers):
    p = providers(slow_boot_s=2.0)
    vm = p.launch("req-1", "local.small", "digits-small", now_s=0.0)
    assert [r.state for r in p.list(2.5)] == ["booting"]  # 1 s boot + 2 s slow boot
    [rec] = p.list(3.0)
    assert rec.state == "ready" and rec.ready_s == 3.0
    pid = p.pids()[vm]
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        assert b"ray" not in fh.read()  # its node will never join: the control loop gives up on it
    assert p.injected == {"never_boot": 1, "died": 0, "slow_boot": 1, "api_error": 0}
    p.terminate(vm, 4.0, grace_s=5.0)
    assert wait_gone(pid) and p.list(5.0) == []


def test_a_vm_dies_after_die_after_s_and_says_so(providers):
    p = providers(die_after_s=5.0)
    vm = p.launch("req-1", "local.small", "digits-small", now_s=0.0)
    p.list(1.0)
    pid = p.pids()[vm]
    assert [r.state for r in p.list(5.9)] == ["ready"]
    assert p.list(6.0) == []  # killed (SIGKILL: with a real node, its raylet and replicas go too)
    assert not alive(pid)
    [err] = p.poll_errors()
    assert err.kind == "died" and err.request_id == "req-1" and vm in err.message
    assert p.injected["died"] == 1


def test_api_errors_on_launch_and_terminate_are_reported_and_do_nothing(providers):
    p = providers(api_error=1.0)
    assert p.launch("req-1", "local.small", "digits-small", now_s=0.0) == ""
    [err] = p.poll_errors()
    assert (err.kind, err.request_id, err.transient) == ("api", "req-1", True)
    assert p.list(2.0) == []
    p.set_faults(VmFaults(never_boot=1.0))
    vm = p.launch("req-1", "local.small", "digits-small", now_s=2.0)  # the caller retries: launched
    p.list(3.0)
    pid = p.pids()[vm]
    p.set_faults(VmFaults(never_boot=1.0, api_error=1.0))
    p.terminate(vm, 4.0)
    assert [r.state for r in p.list(4.0)] == ["ready"] and alive(pid)  # the call failed: still up
    assert [e.kind for e in p.poll_errors()] == ["api"]
    p.set_faults(None)
    p.terminate(vm, 5.0, grace_s=5.0)  # the caller terminates again
    assert p.list(5.0) == [] and wait_gone(pid)
    assert p.injected["api_error"] == 2


def test_fault_draws_follow_the_seed():
    def draws(seed):
        p = provider(never_boot=0.5, api_error=0.3, seed=seed)
        out = [p.launch(f"req-{i}", "local.small", "m", now_s=0.0) != "" for i in range(20)]
        never = [vm.never_boots for vm in p._vms.values()]
        p.set_faults(None)
        p.close(0.0)  # still booting: nothing ran, nothing left to adopt
        return out, never
    assert draws(3) == draws(3) and draws(3) != draws(4)


def test_a_provider_made_again_adopts_the_running_vms_and_launches_nothing_twice(providers):
    old = providers()
    a = old.launch("req-a", "local.small", "digits-small", now_s=0.0)
    b = old.launch("req-b", "local.small", "digits-small", now_s=0.0)
    old.list(1.0)
    pids = old.pids()
    new = providers()  # e.g. a restarted control loop in the same daemon
    adopted = new.adopt(2.0)
    assert {(r.vm_id, r.request_id, r.state) for r in adopted} == {(a, "req-a", "ready"), (b, "req-b", "ready")}
    assert new.pids() == pids
    assert new.launch("req-a", "local.small", "digits-small", now_s=3.0) == a  # idempotent across the restart
    c = new.launch("req-c", "local.small", "digits-small", now_s=3.0)
    assert c not in (a, b)  # a fresh id, never one of the adopted VMs'
    assert providers(head="127.0.0.1:2").adopt(3.0) == []  # another head's provider takes nothing
    new.terminate(a, 4.0, grace_s=5.0)
    assert wait_gone(pids[a]) and {r.vm_id for r in new.list(5.0)} == {b, c}
    assert providers().adopt(6.0) and a not in {r.vm_id for r in providers().adopt(6.0)}


def test_a_vm_outlives_the_thread_that_launched_it(providers):
    # PR_SET_PDEATHSIG fires when the forking *thread* exits: a VM started from a control loop's
    # thread would die with that loop. The provider forks from one long-lived thread instead.
    p = providers()
    t = threading.Thread(target=lambda: (p.launch("req-1", "local.small", "m", now_s=0.0), p.list(1.0)))
    t.start()
    t.join()
    [pid] = p.pids().values()
    time.sleep(0.5)
    assert alive(pid) and [r.state for r in p.list(2.0)] == ["ready"]


def test_a_killed_owner_leaves_no_vm_behind(tmp_path):
    # A process with a provider and two VMs is SIGKILLed (no cleanup runs): its VMs go with it.
    script = ("import sys, time\n"
              "from procurement.providers.local_vm import LocalVmProvider, VmFaults\n"
              "p = LocalVmProvider('127.0.0.1:1', lambda t: 0.0, lambda t: 1, faults=VmFaults(never_boot=1.0))\n"
              "p.launch('a', 't', 'm', 0.0); p.launch('b', 't', 'm', 0.0); p.list(1.0)\n"
              "print(*p.pids().values(), flush=True)\n"
              "time.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
                                 os.path.abspath(__file__))))))
    try:
        pids = [int(x) for x in owner.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        assert all(wait_gone(pid) for pid in pids)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
