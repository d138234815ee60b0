"""Task towers: the small MLP heads h_k(z_k) on top of an MMoE (GLAN eqs. 13, 24)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def inverse_softplus(y: float) -> float:
    """x with softplus(x) = y (y > 0): the pre-activation bias that makes a tower start at y."""
    if y <= 0:
        raise ValueError(f"inverse_softplus needs y > 0; got {y}")
    return y + math.log(-math.expm1(-y))


def logit(p: float) -> float:
    """x with sigmoid(x) = p (0 < p < 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"logit needs 0 < p < 1; got {p}")
    return math.log(p / (1.0 - p))


class Tower(nn.Module):
    """Linear -> ReLU -> Linear to one scalar per row; the caller applies the output link."""

    def __init__(self, d_in: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, z: Tensor) -> Tensor:
        """z (B, d_in) -> (B,) pre-activation."""
        return self.out(torch.relu(self.fc(z))).squeeze(-1)

    @torch.no_grad()
    def set_output_bias(self, value: float) -> None:
        """Start the tower's pre-activation near ``value``: bias = value, final weights x0.1.

        Used to begin training at the target's mean instead of near softplus(0) ≈ 0.69.
        """
        self.out.weight.mul_(0.1)
        self.out.bias.fill_(value)
