"""Primal-dual updates of L-RTG's constrained objective (GLAN eq. 18–20, SPEC §3.1).

min_θ L_wt  s.t.  L_se ≤ ε_se,  L_rel ≤ ε_rel

The Lagrangian L_wt + Σ_k λ_k (L̃_k − ε_k) is minimised over θ by gradient descent, while each
dual variable follows projected gradient ascent on an exponential moving average of its
constraint loss, L̃_k ← ρ L̃_k + (1 − ρ) L̄_k and λ_k ← clip(λ_k + η_λ (L̃_k − ε_k), 0, λ_max).
Smoothing the constraint losses keeps λ from chasing mini-batch noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class PrimalDual:
    """Dual variables and EMA-smoothed constraint losses for named constraints."""

    eps: dict[str, float]
    """Constraint bound ε_k of each constraint."""
    eta: float = 0.05
    """Dual step size η_λ."""
    lambda_max: float = 10.0
    """Upper bound of every λ_k (projection onto [0, λ_max])."""
    rho: float = 0.9
    """EMA factor ρ of the constraint losses."""
    lambdas: dict[str, float] = field(default_factory=dict)
    """Current λ_k (start at 0)."""
    ema: dict[str, float] = field(default_factory=dict)
    """Current L̃_k; initialised with the first observed loss."""

    def __post_init__(self) -> None:
        if self.lambda_max < 0 or self.eta < 0 or not 0 <= self.rho < 1:
            raise ValueError("need lambda_max >= 0, eta >= 0 and 0 <= rho < 1")
        for k in self.eps:
            self.lambdas.setdefault(k, 0.0)

    def penalty(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Σ_k λ_k (L_k − ε_k): the constraint part of the Lagrangian for the θ step."""
        # a 0-d zero start: a tensor (that broadcasts to any device) even when eps is empty
        terms = (self.lambdas[k] * (losses[k] - self.eps[k]) for k in self.eps)
        return sum(terms, torch.zeros(()))

    def update(self, losses: dict[str, float]) -> None:
        """One dual step from this batch's constraint losses (plain floats, no gradient)."""
        for k, eps in self.eps.items():
            value = float(losses[k])
            prev = self.ema.get(k)
            self.ema[k] = value if prev is None else self.rho * prev + (1 - self.rho) * value
            step = self.lambdas[k] + self.eta * (self.ema[k] - eps)
            self.lambdas[k] = min(max(step, 0.0), self.lambda_max)

    def satisfied(self) -> dict[str, bool]:
        """Whether each smoothed constraint holds now."""
        return {k: self.ema.get(k, float("inf")) <= eps for k, eps in self.eps.items()}
