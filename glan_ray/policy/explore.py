"""Exploration: how a learned policy turns its distribution π over pages into the probabilities
it serves from, so that what it serves can be learned from off-policy (GLAN eq. 29, a_t ~ π).

Every learned policy (KLAN and its ablations, GLAN and its ablations) computes π (B, 3): GLAN's
DT the softmax of its logits, CQL the interest scores softmax(Q/T), ISP the static scores, KLAN
its fused scores f normalised. ``Exploration.probs`` maps π to the serving distribution:

- ``greedy``: one-hot on argmax π (the A/B's default: what every arm did before exploration);
- ``epsilon=E``: (1 − E)·one-hot(argmax π) + E/3, ε-greedy around the argmax;
- ``softmax=T``: π^(1/T) renormalised; ``softmax`` (T = 1) samples from π itself (eq. 29), a
  smaller T is greedier, a larger one flatter.

The page is then drawn from these probabilities (the simulator by inverse CDF of its common random
numbers, Serve from a per-request seed) and its probability is the logged propensity. One
implementation, used by the simulator's policies and by Serve alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glan_ray.schema import N_PAGES
from glan_ray.sim.interface import IntraDayHistory, Observation, Policy, sample_pages

MODES = ("greedy", "epsilon", "softmax")
DEPLOY_DEFAULT = "epsilon=0.1"
"""The exploration a deployment that collects training data uses unless told otherwise: 10% of
entries land uniformly at random (so every page keeps a propensity ≥ 0.033 and 93% of entries
still get the argmax). The A/B's arms are greedy unless an arm option says otherwise."""


@dataclass(frozen=True)
class Exploration:
    """How a policy samples its page from its distribution π (module docstring)."""

    mode: str = "greedy"
    """``greedy``, ``epsilon`` or ``softmax``."""
    epsilon: float = 0.0
    """Share of uniformly random pages (mode ``epsilon``): in [0, 1]."""
    temperature: float = 1.0
    """Temperature of mode ``softmax``: > 0; 1 samples from π itself."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"exploration mode: unknown {self.mode!r}; expected one of {MODES}")
        if not (np.isfinite(self.epsilon) and 0.0 <= self.epsilon <= 1.0):
            raise ValueError(f"exploration epsilon must be in [0, 1]; got {self.epsilon}")
        if not (np.isfinite(self.temperature) and self.temperature > 0.0):
            raise ValueError(f"exploration temperature must be > 0; got {self.temperature}")

    @classmethod
    def parse(cls, spec: str | Exploration | None) -> Exploration:
        """``"greedy"``, ``"epsilon=0.1"``, ``"softmax"`` or ``"softmax=0.5"`` (or an instance)."""
        if spec is None:
            return cls()
        if isinstance(spec, Exploration):
            return spec
        mode, _, value = str(spec).strip().partition("=")
        mode = mode.strip()
        if mode not in MODES:
            raise ValueError(
                f"exploration {spec!r}: unknown mode {mode!r}; expected greedy, epsilon=E or "
                "softmax[=T]"
            )
        if mode == "greedy":
            if value:
                raise ValueError(f"exploration {spec!r}: greedy takes no value")
            return cls()
        if mode == "epsilon" and not value:
            raise ValueError(f"exploration {spec!r}: epsilon needs a value, e.g. epsilon=0.1")
        try:
            x = float(value) if value else 1.0
        except ValueError:
            raise ValueError(f"exploration {spec!r}: {value!r} is not a number") from None
        return cls(mode, epsilon=x) if mode == "epsilon" else cls(mode, temperature=x)

    def __str__(self) -> str:
        if self.mode == "greedy":
            return "greedy"
        if self.mode == "epsilon":
            return f"epsilon={self.epsilon:g}"
        return f"softmax={self.temperature:g}"

    @property
    def greedy(self) -> bool:
        """True when the served page is always the argmax (propensity 1)."""
        return self.mode == "greedy" or (self.mode == "epsilon" and self.epsilon == 0.0)

    def probs(self, pi: np.ndarray, n_pages: int = N_PAGES) -> np.ndarray:
        """The serving distribution (B, P) float64 of the policy distribution ``pi`` (B, P) ≥ 0
        over an app's ``n_pages`` pages P (the simulator's 3 unless given; rows need not sum to
        1; a row of zeros is refused)."""
        pi = np.asarray(pi, dtype=np.float64)
        if pi.ndim != 2 or pi.shape[1] != n_pages:
            raise ValueError(f"exploration: pi must have shape (B, {n_pages}); got {pi.shape}")
        if not np.isfinite(pi).all() or (pi < 0).any() or (pi.sum(1) <= 0).any():
            raise ValueError("exploration: pi must be finite, >= 0 and not all 0 in a row")
        greedy = np.zeros_like(pi)
        greedy[np.arange(len(pi)), pi.argmax(1)] = 1.0  # ties: the first page, as argmax
        if self.mode == "greedy":
            return greedy
        if self.mode == "epsilon":
            return (1.0 - self.epsilon) * greedy + self.epsilon / n_pages
        # π^(1/T) in log space: exact for T = 1, no overflow for a small T
        with np.errstate(divide="ignore"):
            z = np.log(pi / pi.sum(1, keepdims=True)) / self.temperature
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(1, keepdims=True)


class ExploringPolicy(Policy):
    """A learned policy: subclasses compute π (``pi``); ``probs`` serves ``exploration.probs(π)``
    (greedy unless the arm's ``explore`` option says otherwise)."""

    exploration: Exploration = Exploration()

    def explore(self, spec: str | Exploration | None) -> ExploringPolicy:
        """Set the exploration (``Exploration.parse``); returns self."""
        self.exploration = Exploration.parse(spec)
        return self

    def pi(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        """The policy's distribution over pages (B, 3), ≥ 0 (rows need not be normalised)."""
        raise NotImplementedError

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        return self.exploration.probs(self.pi(obs, history))


__all__ = ["DEPLOY_DEFAULT", "MODES", "Exploration", "ExploringPolicy", "sample_pages"]
