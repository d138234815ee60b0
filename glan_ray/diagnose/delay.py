"""Delay profile: when does a page's effect on usage arrive?

*In the simulator* (``crn_profile``): every user-day is played twice on common random numbers,
under a policy whose actions depend only on the day's random numbers (uniformly random pages,
so the two plays take the same pages everywhere else), once as is and once with one session's
page flipped to another page. The usage difference at the flipped session (lag 0), at each
later entry slot of the day (lag 1, 2, ...), and on the next day (both plays continue under the
same policy) is the page's effect, by lag. The *delayed share* is the part of the day's absolute
effect that arrives 3 or more sessions later.

*On logs* (``log_profile``): with no counterfactuals, the page's effect by lag is read as the
share of variance of the usage ``lag`` sessions later that the page explains beyond the state
(the return-consistency measure of ``consistency.r2_gain``, per lag, inverse-propensity
weighted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from glan_ray.schema import N_PAGES
from glan_ray.sim.arrivals import make_plan
from glan_ray.sim.baselines import LoggingPolicy, UniformPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate, simulate_day
from glan_ray.sim.interface import IntraDayHistory, Observation, Policy
from glan_ray.sim.users import make_users

logger = logging.getLogger(__name__)

MAX_LAG = 8
"""Lags reported one by one; larger lags are pooled into the last."""
DELAYED_FROM = 3
"""A page's effect counts as delayed from this many sessions after it."""


class FlipPolicy(Policy):
    """Uniformly random pages (drawn from the slot's uniform, as ``UniformPolicy``), except at
    each user's session ``flip_at`` where the page is moved ``offset`` pages on (mod 3)."""

    name = "flip"

    def __init__(self, flip_at: np.ndarray, offset: np.ndarray):
        self.flip_at, self.offset = flip_at, offset
        self.base = UniformPolicy()

    def act(self, obs: Observation, history: IntraDayHistory, u: np.ndarray):
        action, probs = self.base.act(obs, history, u)
        hit = obs.entries_today == self.flip_at[obs.rows]
        moved = (action.astype(np.int64) + self.offset[obs.rows]) % N_PAGES
        return np.where(hit, moved, action).astype(np.int8), probs


@dataclass
class DelayProfile:
    """Mean absolute usage change (s) per flipped session, by lag."""

    lags: list[str]  # "0", "1", ..., f"{MAX_LAG}+", "next day"
    effect_s: list[float]
    delayed_share: float  # share of the day's effect at lag >= DELAYED_FROM
    next_day_ratio: float  # next day's effect / the day's
    flips: int


def _slot_usage(log, n: int, s: int) -> np.ndarray:
    """(N, S) usage per entry slot (0 where no session)."""
    out = np.zeros((n, s))
    ses = log.sessions
    if ses:
        out[ses["row"], ses["slot"]] = ses["usage"]
    return out


def crn_profile(
    cfg: SimConfig, users: int = 2000, days: int = 3, burn_in: int = 3, seed: int = 0
) -> DelayProfile:
    """The simulator's delay profile over ``days`` days after ``burn_in`` days of logging."""
    s = cfg.n_slots
    total = np.zeros(MAX_LAG + 1)
    next_day, day_total, flips = 0.0, 0.0, 0
    burn = list(simulate(cfg, 0, users, burn_in, LoggingPolicy(cfg)))
    users_ = make_users(cfg, 0, users)
    state = burn[-1].next_state
    assert state is not None, "simulate sets every DayLog's next_state"
    for day in range(burn_in, burn_in + days):
        plan = make_plan(cfg, users_, 0, day)
        none = np.full(users, -1)
        base_log, base_state = simulate_day(
            cfg, users_, state, plan, FlipPolicy(none, np.ones(users, np.int64)), day
        )
        base = _slot_usage(base_log, users, s)
        n_sessions = base_log.y_se
        u = np.random.default_rng([seed, day]).random((users, 2))  # which session, which page
        has = n_sessions > 0
        flip_at = np.where(has, np.floor(u[:, 0] * np.maximum(n_sessions, 1)), -1).astype(int)
        offset = np.where(u[:, 1] < 0.5, 1, 2).astype(np.int64)
        log, flip_state = simulate_day(cfg, users_, state, plan, FlipPolicy(flip_at, offset), day)
        flipped = _slot_usage(log, users, s)
        # the flipped session's slot: the base's flip_at-th realised slot (same in both plays)
        ses = base_log.sessions
        slot0 = np.full(users, -1)
        hit = ses["session_idx"] == flip_at[ses["row"]]
        slot0[ses["row"][hit]] = ses["slot"][hit]
        rows = np.flatnonzero(slot0 >= 0)
        diff = np.abs(flipped - base)  # (N, S)
        k = np.arange(s)[None, :] - slot0[rows, None]  # (R, S) lag of each slot
        d = diff[rows]
        for lag in range(MAX_LAG + 1):
            sel = (k == lag) if lag < MAX_LAG else (k >= lag)
            total[lag] += float((d * sel).sum())
        day_total += float((d * (k >= 0)).sum())
        # the next day, both plays continue with uniformly random pages
        plan2 = make_plan(cfg, users_, 0, day + 1)
        none_pol = FlipPolicy(none, np.ones(users, np.int64))
        y0 = simulate_day(cfg, users_, base_state, plan2, none_pol, day + 1)[0].y_wt
        y1 = simulate_day(cfg, users_, flip_state, plan2, none_pol, day + 1)[0].y_wt
        next_day += float(np.abs(y1 - y0)[rows].sum())
        flips += len(rows)
        state = base_state
    effect = total / max(flips, 1)
    delayed = float(effect[DELAYED_FROM:].sum() / max(effect.sum(), 1e-9))
    lags = [str(i) for i in range(MAX_LAG)] + [f"{MAX_LAG}+", "next day"]
    return DelayProfile(
        lags=lags,
        effect_s=[*effect.tolist(), next_day / max(flips, 1)],
        delayed_share=delayed,
        next_day_ratio=next_day / max(day_total, 1e-9),
        flips=flips,
    )


__all__ = ["DELAYED_FROM", "MAX_LAG", "DelayProfile", "FlipPolicy", "crn_profile"]
