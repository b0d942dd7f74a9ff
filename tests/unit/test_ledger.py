"""Cost arithmetic against hand-computed cases."""
import numpy as np
import pytest

from controller.config import FunctionPlatformConfig
from controller.ledger import function_charge_usd, vm_charge_usd

FP = FunctionPlatformConfig()


def test_vm_billing_minimum_applies_below_60_s():
    # c5.large $0.085/h for 42.3 s is billed as 60 s.
    assert vm_charge_usd(0.085, 42.3) == pytest.approx(0.085 / 3600 * 60)


def test_vm_billing_rounds_seconds_up_above_minimum():
    assert vm_charge_usd(0.34, 61.2) == pytest.approx(0.34 / 3600 * 62)
    assert vm_charge_usd(0.34, 3600) == pytest.approx(0.34)


def test_vm_billing_zero_minimum():
    assert vm_charge_usd(3.6, 0.5, minimum_s=0) == pytest.approx(0.001)


def test_function_gb_seconds_at_1_ms_granularity():
    # 128 MB for 100.2 ms bills 101 ms: 0.125 GB x 0.101 s x $0.0000166667 + $0.0000002.
    expected = 0.125 * 0.101 * 0.0000166667 + 0.0000002
    assert function_charge_usd(100.2, 128, FP) == pytest.approx(expected, rel=1e-12)


def test_function_whole_ms_is_not_rounded_up():
    expected = 3008 / 1024 * 0.144 * 0.0000166667 + 0.0000002
    assert function_charge_usd(144.0, 3008, FP) == pytest.approx(expected, rel=1e-12)


def test_function_charge_vectorised_matches_scalar():
    d = np.array([1.0, 10.5, 999.9])
    v = function_charge_usd(d, 1024, FP)
    assert v == pytest.approx([function_charge_usd(x, 1024, FP) for x in d])


def test_coarser_billing_granularity():
    fp = FunctionPlatformConfig(billing_granularity_ms=100)
    # 101 ms bills 200 ms at 100-ms granularity.
    assert function_charge_usd(101, 1024, fp) == pytest.approx(0.2 * 0.0000166667 + 0.0000002)
