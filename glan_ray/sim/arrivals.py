"""The exogenous plan of one day: who may come, when, and every random number of the day.

Everything here is drawn before any policy acts and has a policy-independent shape, so two
policies replay the same user-day on the same numbers (common random numbers, property 9).
Slots are app-entry opportunities sorted by hour: planned entries (tidal intensity, property 2)
and bonus evening entries that only a good morning on Following unlocks (property 6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glan_ray.sim.config import SimConfig
from glan_ray.sim.rng import blocks_of, draw
from glan_ray.sim.users import Users

NO_HOUR = 99.0
"""Hour given to slots that do not exist, so they sort last."""


@dataclass
class DayPlan:
    """Exogenous randomness of one day for N users and S = ``cfg.n_slots`` sorted slots."""

    weekday: int
    u_active: np.ndarray  # (N,) uniform for the active draw
    hour: np.ndarray  # (N, S) entry hour, NO_HOUR where the slot does not exist
    valid: np.ndarray  # (N, S) bool: the slot exists
    is_bonus: np.ndarray  # (N, S) bool: a bonus evening slot
    is_first: np.ndarray  # (N, S) bool: the first planned slot (always taken when active)
    live_count: np.ndarray  # (N, S) int: followed creators live at the slot's hour (observed)
    intent: np.ndarray  # (N, S, 3) hidden intent, live reaction included
    u_return: np.ndarray  # (N, S) uniform: is the slot realised
    eps: np.ndarray  # (N, S, 3) standard normals of page durations
    u_nav: np.ndarray  # (N, S, 3) uniforms: navigation to each page
    u_views: np.ndarray  # (N, S, 3) uniforms: video-view rounding
    u_order: np.ndarray  # (N, S, 3) uniforms: order of navigated pages
    u_action: np.ndarray  # (N, S) uniforms: sampling of stochastic policies
    regime: np.ndarray  # (N,) hidden in-day regime: +1 resume day, -1 switch day (0: off)


def _poisson_from_uniform(lam: np.ndarray, u: np.ndarray, k_max: int = 30) -> np.ndarray:
    """Inverse-CDF Poisson draw: fixed-shape uniforms in, counts out (CRN-safe)."""
    k = np.zeros(lam.shape, dtype=np.int64)
    p = np.exp(-lam)
    cdf = p.copy()
    for i in range(1, k_max + 1):
        more = u > cdf
        if not more.any():
            break
        k += more
        p = p * lam / i
        cdf = cdf + p
    return k


def make_plan(cfg: SimConfig, users: Users, first_user: int, day: int) -> DayPlan:
    """Draw the plan of ``day`` for users [first_user, first_user + len(users))."""
    n, p, b, s = len(users), cfg.max_planned, cfg.n_bonus_slots, cfg.n_slots

    def one_block(rng: np.random.Generator, m: int) -> dict[str, np.ndarray]:
        return {
            "u_active": rng.random(m),
            "z_count": rng.normal(size=m),
            "u_hour": rng.random((m, p)),
            "u_bonus": rng.random((m, b)),
            "u_live": rng.random((m, s)),
            "z0": rng.normal(size=(m, 3)),
            "eta": rng.normal(size=(m, s, 3)),
            "u_return": rng.random((m, s)),
            "eps": rng.normal(size=(m, s, 3)),
            "u_nav": rng.random((m, s, 3)),
            "u_views": rng.random((m, s, 3)),
            "u_order": rng.random((m, s, 3)),
            "u_action": rng.random((m, s)),
        }

    d = draw(
        blocks_of(first_user, n, cfg.block_size), cfg.seed, day, "day", cfg.block_size, one_block
    )
    weekday = (cfg.start_weekday + day) % 7
    lam = users.rate * cfg.weekly[weekday]
    n_planned = np.clip(np.rint(lam + np.sqrt(lam) * d["z_count"]), 1, p).astype(int)

    # Planned hours by inverse CDF of the tidal curve (uniform within the hour), sorted.
    tidal = np.asarray(cfg.tidal_hourly)
    cdf = np.cumsum(tidal) / tidal.sum()
    u = d["u_hour"]
    bins = np.searchsorted(cdf, u, side="right").clip(0, 23)
    lo = np.where(bins > 0, cdf[np.maximum(bins - 1, 0)], 0.0)
    planned = bins + (u - lo) / (cdf[bins] - lo)
    # Keep the first n_planned draws (not the earliest hours: that would bias to the morning).
    planned_valid = np.arange(p)[None, :] < n_planned[:, None]
    planned = np.where(planned_valid, planned, NO_HOUR)
    b_lo, b_hi = cfg.bonus_hours
    bonus = b_lo + (b_hi - b_lo) * d["u_bonus"]

    hours = np.concatenate([planned, bonus], axis=1)  # (N, S)
    order = np.argsort(hours, axis=1, kind="stable")
    hour = np.take_along_axis(hours, order, axis=1)
    is_bonus = order >= p
    valid = hour < NO_HOUR
    is_first = order == 0

    # Live creators: Poisson with an evening-heavy hourly profile.
    live_lam = (
        cfg.live_rate
        * users.social_degree[:, None]
        * tidal[np.clip(hour, 0, 23.999).astype(int)]
        / tidal.mean()
    )
    live = np.where(valid, _poisson_from_uniform(live_lam, d["u_live"]), 0)

    # Hidden intent: an hourly AR(1) path, plus a hidden reaction to live creators (Following).
    rho = cfg.intent_persistence
    z = np.empty((n, s, 3))
    z_prev = cfg.intent_std * d["z0"]
    h_prev = np.zeros(n)
    for k in range(s):
        dt = np.clip(np.minimum(hour[:, k], 24.0) - h_prev, 0.0, 24.0)[:, None]
        a = rho**dt
        z_prev = a * z_prev + cfg.intent_std * np.sqrt(1 - a**2) * d["eta"][:, k]
        # Centred over pages (which page, not how much), rescaled to keep std intent_std.
        z[:, k] = np.sqrt(1.5) * (z_prev - z_prev.mean(1, keepdims=True))
        h_prev = np.minimum(hour[:, k], 24.0)
    # Saturating in the live count: a few live creators matter, the fiftieth does not.
    z[:, :, 2] += cfg.live_intent_gain * users.live_sens[:, None] * np.log1p(live)

    # The in-day regime draws from its own stream: the default world's numbers are untouched.
    regime = np.zeros(n)
    if cfg.regime_gain > 0:
        u_reg = draw(
            blocks_of(first_user, n, cfg.block_size),
            cfg.seed,
            day,
            "regime",
            cfg.block_size,
            lambda rng, m: {"u": rng.random(m)},
        )["u"]
        regime = np.where(u_reg < cfg.regime_resume_share, 1.0, -1.0)

    return DayPlan(
        weekday=weekday,
        u_active=d["u_active"],
        hour=hour,
        valid=valid,
        is_bonus=is_bonus,
        is_first=is_first,
        live_count=live,
        intent=z,
        u_return=d["u_return"],
        eps=d["eps"],
        u_nav=d["u_nav"],
        u_views=d["u_views"],
        u_order=d["u_order"],
        u_action=d["u_action"],
        regime=regime,
    )
