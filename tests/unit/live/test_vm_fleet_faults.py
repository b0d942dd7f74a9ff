"""controller.live.vm_fleet: the local VMs' injected faults come from HYBRIDSERVE_VM_FAULTS (unset: none;
a bad spec: a ConfigError naming the variable, so the control loop does not run other faults)."""
import pytest

from controller.config import ConfigError
from procurement.providers.local_vm import VmFaults
from controller.live.vm_fleet import VM_FAULTS_ENV, vm_faults_from_env


def test_faults_from_the_environment():
    assert vm_faults_from_env({}) is None and vm_faults_from_env({VM_FAULTS_ENV: " "}) is None
    assert vm_faults_from_env({VM_FAULTS_ENV: "never_boot=0.5,die_after_s=20,slow_boot_s=5,api_error=0.2,seed=1"}) \
        == VmFaults(never_boot=0.5, die_after_s=20.0, slow_boot_s=5.0, api_error=0.2, seed=1)
    with pytest.raises(ConfigError, match="HYBRIDSERVE_VM_FAULTS='boom=1': unknown VM fault 'boom'"):
        vm_faults_from_env({VM_FAULTS_ENV: "boom=1"})
    with pytest.raises(ConfigError, match="api_error"):
        vm_faults_from_env({VM_FAULTS_ENV: "api_error=2"})
