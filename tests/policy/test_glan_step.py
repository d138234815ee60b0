"""The GLAN step's formulas by hand (GLAN eqs. 28 and 30, R̂₁ = gain × forecast)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glan_ray.models.exports import DTRecord
from glan_ray.policy import glan_step


def test_glan_step_by_hand():
    assert glan_step.target_gain(DTRecord()) == 1.0  # an export without a gain
    assert glan_step.target_gain(DTRecord(target_gain=2.0)) == 2.0
    assert glan_step.target_gain(DTRecord(target_gain=2.0), 1.5) == 1.5  # the arm option wins
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="target_gain must be > 0"):
            glan_step.target_gain(DTRecord(), bad)
    forecast = glan_step.lrtg_forecast_s(torch.tensor([0.5, 1.0]))  # hours
    np.testing.assert_allclose(glan_step.initial_rtg(forecast, 2.0), [3600.0, 7200.0])
    # r̂ = (1 − p_sw)·Σ_j T̂^j minutes -> seconds: (1 − 0.25)·(2 + 1 + 1) min = 180 s
    out = {"dur": torch.tensor([[2.0, 1.0, 1.0]]), "p_sw": torch.tensor([0.25])}
    np.testing.assert_allclose(glan_step.session_reward_s(out), [180.0])
    np.testing.assert_allclose(glan_step.next_rtg([3600.0], [180.0]), [3420.0])
