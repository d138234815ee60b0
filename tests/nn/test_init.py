"""init_weights: Xavier-uniform Linear weights, zero biases, every other layer left alone."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from glan_ray.nn.init import init_weights


def test_linear_weights_are_xavier_uniform_and_biases_zero():
    torch.manual_seed(0)
    layer = nn.Linear(300, 200)
    nn.init.constant_(layer.bias, 3.0)
    init_weights(layer)
    bound = math.sqrt(6 / (300 + 200))  # Glorot & Bengio: U(−b, b)
    w = layer.weight.detach()
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.99 * bound  # the whole interval is used (60,000 draws)
    assert w.var().item() == pytest.approx(2 / 500, rel=0.03)  # b² / 3: variance-preserving
    assert torch.equal(layer.bias, torch.zeros(200))


def test_apply_reaches_nested_linears_and_leaves_other_layers_alone():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Embedding(10, 8),
        nn.LayerNorm(8),
        nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2, bias=False)),
    )
    nn.init.constant_(model[2][0].bias, 1.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.apply(init_weights)
    after = model.state_dict()
    for k in ("0.weight", "1.weight", "1.bias"):  # embedding and norm keep their init
        assert torch.equal(after[k], before[k]), k
    for k in ("2.0.weight", "2.2.weight"):  # every Linear, also nested and bias-free
        assert not torch.equal(after[k], before[k]), k
    assert torch.equal(after["2.0.bias"], torch.zeros(4))
    assert model[2][2].bias is None


def test_init_is_deterministic_under_the_torch_seed():
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    torch.manual_seed(7)
    init_weights(a)
    torch.manual_seed(7)
    init_weights(b)
    assert torch.equal(a.weight, b.weight)
