"""The GLAN step (GLAN §5.2): the formulas of one user-day's loop, written once and used by the
simulator's ``GlanPolicy`` and by the Serve app alike.

1. start of day: R̂₁ = target_gain × forecast, the forecast being L-RTG's ŷ_wt (hours -> s) or,
   without L-RTG, the user's 7-day mean usage (s);
2. decide: the DT's logits for the current session (``policy.glan.window_logits``);
3. reward: r̂_t = (1 − ŷ_sw)·Σ_j T̂^j from HRM (GLAN eq. 28; minutes -> s), or the naive
   session usage without HRM;
4. RTG update: R̂_{t+1} = R̂_t − r̂_t (GLAN eq. 30).

Every value is in seconds. ``target_gain`` is read from the DT's export record, here.
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


__all__ = ["HOUR", "initial_rtg", "lrtg_forecast_s", "next_rtg", "session_reward_s", "target_gain"]
