"""Does the DT add anything to the critic? Agreement of critic-guided selection with each expert.

Critic-guided GLAN (``glan_cg``) picks argmax_a [log π_DT(a | h) + λ·Â(s, a)/T]
(``policy.glan_step.critic_guided_scores``). On a batch of decisions, with the DT's logits and the
critic's Q-values of each, ``critic_agreement`` measures for each λ the share of decisions where
that choice is the critic's own argmax and where it is the DT's argmax. λ = 0 agrees with the DT
always, λ → ∞ with the critic always; a chosen λ whose choice is the critic's nearly everywhere
means the DT adds (almost) nothing to the critic (issue 29).

``collect_decisions`` plays a critic-guided arm in the simulator and keeps each decision's
logits and Q-values (``GlanPolicy.last_logits`` / ``last_q``), so the agreement can be measured
on the states that arm visits (``bench/critic_lambda.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from glan_ray.policy import glan_step
from glan_ray.sim.interface import IntraDayHistory, Observation, Policy


@dataclass(frozen=True)
class CriticAgreement:
    """Agreement of the critic-guided choice at one λ over a batch of decisions."""

    critic_lambda: float
    """λ of the scores."""
    decisions: int
    """Decisions in the batch."""
    with_critic: float
    """Share of decisions whose critic-guided page is the critic's argmax_a Q(s, a)."""
    with_dt: float
    """Share of decisions whose critic-guided page is the DT's argmax_a π_DT(a | h)."""
    dt_with_critic: float
    """Share of decisions where the DT's and the critic's argmax are the same page (the floor of
    both agreements, whatever λ)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def critic_agreement(
    logits: torch.Tensor, q: torch.Tensor, lams: Sequence[float], temperature: float = 1.0
) -> list[CriticAgreement]:
    """The agreement of the critic-guided choice with the critic's and the DT's argmax, per λ of
    ``lams``, on decisions with the DT's ``logits`` (N, A) and the critic's ``q`` (N, A); T the
    critic export's temperature. Ties go to the first page (``argmax``), as the policies do."""
    if logits.shape != q.shape or logits.ndim != 2 or len(logits) == 0:
        raise ValueError(f"critic_agreement needs logits and q of one shape (N, A), N >= 1; got "
                         f"{tuple(logits.shape)} and {tuple(q.shape)}")  # fmt: skip
    critic = q.argmax(-1)  # (N,)
    dt = logits.argmax(-1)  # (N,)
    out = []
    for lam in lams:
        pick = glan_step.critic_guided_scores(logits, q, lam, temperature).argmax(-1)  # (N,)
        out.append(CriticAgreement(
            critic_lambda=float(lam),
            decisions=len(pick),
            with_critic=float((pick == critic).float().mean()),
            with_dt=float((pick == dt).float().mean()),
            dt_with_critic=float((dt == critic).float().mean()),
        ))  # fmt: skip
    return out


@dataclass(frozen=True)
class Decisions:
    """The DT's logits and the critic's Q-values of every decision a critic-guided arm made."""

    logits: torch.Tensor
    """(N, A) the DT's logits."""
    q: torch.Tensor
    """(N, A) the critic's Q(s, ·)."""
    temperature: float
    """The critic export's softmax temperature T (``CQLRecord.temperature``)."""


class _Recorder(Policy):
    """Plays a critic-guided ``GlanPolicy`` and keeps the logits and Q of each decision batch."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name
        self.logits: list[torch.Tensor] = []
        self.q: list[torch.Tensor] = []

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        self.inner.begin_day(day, features)

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        p = self.inner.probs(obs, history)
        self.logits.append(self.inner.last_logits)
        self.q.append(self.inner.last_q)
        return p


def collect_decisions(
    arm: str,
    models: str,
    sim: dict[str, Any],
    seed: int,
    first: int,
    n: int,
    days: int,
    options: dict[str, Any] | None = None,
) -> Decisions:
    """Play critic-guided arm ``arm`` (``policy.registry.CRITIC_GUIDED_ARMS``; ``options`` its
    builder options) on users [first, first + n) for ``days`` days with simulator seed ``seed``
    and ``sim`` overrides; returns every decision's logits and Q-values."""
    from glan_ray.policy.registry import make_arm
    from glan_ray.sim.config import SimConfig
    from glan_ray.sim.engine import simulate

    cfg = SimConfig.from_dict({**sim, "seed": seed})
    policy = make_arm(arm, models, cfg, options)
    critic = getattr(policy, "critic", None)  # a ModelRunner of the glan_cg arms
    if critic is None:
        raise ValueError(f"arm {arm!r} has no critic; expected a critic-guided arm (glan_cg...)")
    rec = _Recorder(policy)
    for _ in simulate(cfg, first, n, days, rec):
        pass
    if not rec.logits:
        raise ValueError(f"arm {arm!r} made no decision on users [{first}, {first + n})")
    return Decisions(torch.cat(rec.logits), torch.cat(rec.q), critic.record.temperature)


__all__ = ["CriticAgreement", "Decisions", "collect_decisions", "critic_agreement"]
