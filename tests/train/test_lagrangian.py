"""Primal-dual updates of L-RTG (GLAN eq. 18–20) on hand-computed values."""

from __future__ import annotations

import pytest
import torch

from glan_ray.train.lagrangian import PrimalDual


def test_violated_constraint_raises_lambda_by_eta_times_excess():
    pd = PrimalDual({"se": 1.0}, eta=0.1, lambda_max=10.0, rho=0.5)
    pd.update({"se": 3.0})  # first value initialises the EMA: L̃ = 3
    assert pd.ema["se"] == pytest.approx(3.0)
    assert pd.lambdas["se"] == pytest.approx(0.1 * (3.0 - 1.0))
    pd.update({"se": 1.0})  # L̃ = 0.5·3 + 0.5·1 = 2 → λ = 0.2 + 0.1·(2 − 1)
    assert pd.ema["se"] == pytest.approx(2.0)
    assert pd.lambdas["se"] == pytest.approx(0.3)


def test_satisfied_constraint_lowers_lambda_but_never_below_zero():
    pd = PrimalDual({"rel": 1.0}, eta=0.5, lambda_max=10.0, rho=0.0, lambdas={"rel": 0.4})
    pd.update({"rel": 0.5})  # λ = 0.4 + 0.5·(0.5 − 1) = 0.15
    assert pd.lambdas["rel"] == pytest.approx(0.15)
    pd.update({"rel": 0.0})  # 0.15 − 0.5 < 0 → projected to 0
    assert pd.lambdas["rel"] == 0.0
    assert pd.satisfied() == {"rel": True}


def test_lambda_is_clipped_at_lambda_max():
    pd = PrimalDual({"se": 0.0}, eta=1.0, lambda_max=2.0, rho=0.0)
    for _ in range(5):
        pd.update({"se": 100.0})
        assert 0.0 <= pd.lambdas["se"] <= 2.0
    assert pd.lambdas["se"] == 2.0
    assert pd.satisfied() == {"se": False}


def test_penalty_is_the_lagrangian_constraint_term_with_gradient():
    pd = PrimalDual({"se": 1.0, "rel": 0.5}, lambdas={"se": 2.0, "rel": 3.0})
    l_se = torch.tensor(4.0, requires_grad=True)
    l_rel = torch.tensor(0.25, requires_grad=True)
    pen = pd.penalty({"se": l_se, "rel": l_rel})
    assert pen.item() == pytest.approx(2.0 * (4.0 - 1.0) + 3.0 * (0.25 - 0.5))
    pen.backward()
    assert l_se.grad.item() == pytest.approx(2.0) and l_rel.grad.item() == pytest.approx(3.0)


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError):
        PrimalDual({"se": 1.0}, rho=1.0)
