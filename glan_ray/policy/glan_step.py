"""The GLAN step (GLAN §5.2): the formulas of one user-day's loop, written once and used by the
simulator's ``GlanPolicy`` and by the Serve app alike.

1. start of day: R̂₁ = target_gain × forecast, the forecast being L-RTG's ŷ_wt (hours -> s) or,
   without L-RTG, the user's 7-day mean usage (s);
2. decide: the DT's logits for the current session (``policy.glan.window_logits``);
3. reward: r̂_t = (1 − ŷ_sw)·Σ_j T̂^j from HRM (GLAN eq. 28; minutes -> s), or the naive
   session usage without HRM;
4. RTG update: R̂_{t+1} = R̂_t − r̂_t (GLAN eq. 30).

Every value is in seconds. ``target_gain`` is read from the DT's export record, here.

Critic-guided selection (the ``glan_cg`` arms; Critic-Guided DT, Wang et al. 2024; QT, Hu et al.
2024) changes step 2 only: the page is argmax_a [log π_DT(a | h) + λ·Â(s, a)], with
``critic_guided_scores`` below.
"""

from __future__ import annotations

import numpy as np
import torch

from glan_ray.models.exports import DTRecord
from glan_ray.models.hrm import hrm_reward

HOUR = 3600.0
MINUTE = 60.0


def target_gain(record: DTRecord, override: float | None = None) -> float:
    """The DT's R̂₁ gain: ``override`` if given (an arm option), else the export's (validated
    by its ``DTRecord``; 1 for exports that record none); > 0."""
    gain = float(record.target_gain if override is None else override)
    if not np.isfinite(gain) or gain <= 0:
        raise ValueError(f"target_gain must be > 0; got {gain}")
    return gain


def lrtg_forecast_s(wt_hours: torch.Tensor | np.ndarray) -> np.ndarray:
    """L-RTG's ŷ_wt (hours) -> the day's forecast usage (s), (N,) float64."""
    return np.asarray(wt_hours, dtype=np.float64) * HOUR


def initial_rtg(forecast_s: np.ndarray | float, gain: float) -> np.ndarray:
    """R̂₁ = gain × forecast (s)."""
    return gain * np.asarray(forecast_s, dtype=np.float64)


def session_reward_s(out: dict[str, torch.Tensor]) -> np.ndarray:
    """HRM's outputs (``dur`` (B, 3) minutes, ``p_sw`` (B,)) -> r̂ (B,) seconds (eq. 28)."""
    return (hrm_reward(out["dur"], out["p_sw"]) * MINUTE).numpy().astype(np.float64)


def next_rtg(rtg: np.ndarray | float, reward_s: np.ndarray | float) -> np.ndarray:
    """R̂_{t+1} = R̂_t − r̂_t (eq. 30)."""
    return np.asarray(rtg, dtype=np.float64) - np.asarray(reward_s, dtype=np.float64)


CRITIC_LAMBDA = 1.0
"""λ of critic-guided selection when none is given: the product of the DT's π and the critic's
softmax(Q/T) (``critic_guided_scores``). Tune it on validation users (``bench/critic_lambda.py``)
and pass the result as the ``critic_lambda`` arm option or Serve app arg."""


def critic_lambda(value: float | str | None = None) -> float:
    """λ of ``critic_guided_scores`` (an arm option or a Serve app arg): a finite number ≥ 0
    (a numeric string such as ``"1e6"``, as YAML reads it, is accepted; a bool is not); None:
    ``CRITIC_LAMBDA``."""
    if value is None:
        return CRITIC_LAMBDA
    try:
        lam = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        lam = float("nan")
    if not (np.isfinite(lam) and lam >= 0):
        raise ValueError(f"critic_lambda must be a finite number >= 0 (0: the DT alone; 1e6: "
                         f"the critic alone); got {value!r}")  # fmt: skip
    return lam


def critic_guided_scores(
    logits: torch.Tensor, q: torch.Tensor, lam: float, temperature: float = 1.0
) -> torch.Tensor:
    """Critic-guided scores log π_DT(a | h) + λ·Â(s, a)/T: (B, A), (B, A) -> (B, A).

    ``logits`` are the DT's for the current entry, ``q`` the critic's Q(s, ·) (a CQL export,
    trained on logged actions), T its export's temperature (``CQLRecord.temperature``).
    Â(s, a) = Q(s, a) − mean_a Q(s, a): the shift is per state, so Â has Q's argmax; it only
    keeps the scores' scale independent of Q's level. Dividing by T makes λ unit-free:
    Â/T = log softmax(Q/T) + a per-state constant, so softmax(scores) ∝ π_DT · d^λ with d =
    softmax(Q/T), KLAN-IIT's interest scores: λ = 0 is the DT alone (its log-softmax), λ = 1
    the product of the two policies, λ → ∞ the critic's argmax. With T = 1 and CQL's rewards
    in minutes (``reward_scale`` 1/60), one nat of the DT's log-probability weighs as much as
    1/λ minutes of the critic's discounted return.
    """
    log_pi = torch.log_softmax(logits.float(), dim=-1)  # (B, A)
    q = q.float().to(log_pi.device)
    adv = (q - q.mean(dim=-1, keepdim=True)) / temperature  # (B, A) Â / T
    return log_pi + critic_lambda(lam) * adv


__all__ = ["CRITIC_LAMBDA", "HOUR", "critic_guided_scores", "critic_lambda", "initial_rtg",
           "lrtg_forecast_s", "next_rtg", "session_reward_s", "target_gain"]  # fmt: skip
