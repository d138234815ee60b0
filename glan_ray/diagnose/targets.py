"""The premise world's targets (issue 27), written down before any policy was trained in it.

GLAN's case against KLAN rests on two premises: behaviour is not Markov in the observation (the
day's sequence says what the state vector cannot), and credit is delayed over many entries. A
return-conditioned policy also needs the page to explain some of the return beyond the state.
The ``premise`` world must show each, measured by ``glan_ray.diagnose``, while every calibration
target of the default world (``sim.calibration.TARGETS``) still holds. The default world is
measured against the same thresholds for contrast.
"""

from __future__ import annotations

from glan_ray.sim.calibration import Target

PREMISE_TARGETS: tuple[Target, ...] = (
    Target("history_gap_closed", "share of the observation -> latent prediction gap of the next "
           "session's outcomes that the day's sequence closes (held-out users)", ">=", 0.50),
    Target("delayed_share", "share of a page's effect on the day's usage arriving >= 3 sessions "
           "later (CRN flips)", ">=", 0.30),
    Target("return_consistency_ipw", "lower 95% bound of the paired R² gain of the "
           "return-to-go: one (s, a) model's prediction for the logged page against its mean "
           "over the pages, inverse-propensity weighted, held-out users", ">=", 0.0),
)  # fmt: skip
"""Targets of the premise world; the last is met only when strictly positive (checked by
``met``)."""


def met(target: Target, value: float) -> bool:
    """``target`` met by ``value``; a consistency gain must be strictly positive."""
    if target.name == "return_consistency_ipw":
        return value > 0.0
    return target.met(value)


__all__ = ["PREMISE_TARGETS", "met"]
