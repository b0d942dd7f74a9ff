"""Spill budget: the VM wait a request may take is its SLO less service time and overheads."""
from __future__ import annotations

import numpy as np
import pytest

from procurement.spill import vm_wait_budget_ms


def test_budget_is_slo_minus_service_and_overheads():
    # resnet50, c5.xlarge, batch 256: 95.2 ms of service; 300 - 95.2 - 10 = 194.8 ms
    assert vm_wait_budget_ms(300.0, 95.2, network_ms=10.0) == pytest.approx(194.8)
    # 10% of the SLO in reserve: 300 x 0.9 - 95.2 = 174.8 ms
    assert vm_wait_budget_ms(300.0, 95.2, safety_frac=0.1) == pytest.approx(174.8)


def test_per_request_slos_give_per_request_budgets():
    # 100 - 95.2 - 5 = -0.2 and 300 - 95.2 - 5 = 199.8
    b = vm_wait_budget_ms(np.array([100.0, 300.0]), 95.2, safety_ms=5.0)
    assert isinstance(b, np.ndarray) and b == pytest.approx([-0.2, 199.8])


def test_an_slo_shorter_than_the_service_leaves_a_negative_budget():
    # 50 - 95.2 = -45.2 ms: no wait, not even zero, fits (the policy then routes with 0).
    budget = vm_wait_budget_ms(50.0, 95.2)
    assert isinstance(budget, float) and budget == pytest.approx(-45.2)
