"""Per-user state carried from day to day: satisfaction, fatigue and the logged history."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from glan_ray.schema import N_PAGES, SEQ_LEN
from glan_ray.sim.config import SimConfig
from glan_ray.sim.rng import blocks_of, draw
from glan_ray.sim.users import Users

PAGE_HIST_DAYS = 14
"""Days of page-level history kept for the 7/14-day page statistics."""


@dataclass
class UserState:
    """State of N users at the start of a day. History index 0 is yesterday (Δt = 1)."""

    sat: np.ndarray  # (N,) hidden carried satisfaction
    fatigue: np.ndarray  # (N,) hidden carried Featured fatigue
    hist_sessions: np.ndarray  # (N, 30) sessions per past day
    hist_usage: np.ndarray  # (N, 30) usage time (s) per past day
    hist_page_dur: np.ndarray  # (N, 14, 3) consumption (s) per page per past day
    hist_page_entries: np.ndarray  # (N, 14, 3) landings per page per past day
    last_exit: np.ndarray  # (N,) int8 page the user last exited from

    def copy(self) -> UserState:
        return UserState(**{f.name: getattr(self, f.name).copy() for f in dataclasses.fields(self)})

    def select(self, take_other: np.ndarray, other: UserState) -> UserState:
        """Per user: this state, or ``other``'s where ``take_other`` (N,) is true."""
        out = {}
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            mask = take_other.reshape((-1,) + (1,) * (a.ndim - 1))
            out[f.name] = np.where(mask, b, a)
        return UserState(**out)


def initial_state(cfg: SimConfig, users: Users, first_user: int) -> UserState:
    """A 30-day synthetic history drawn from each user's stationary behaviour (no burn-in)."""
    n = len(users)
    weekly = np.asarray(cfg.weekly)
    weekday_back = (cfg.start_weekday - np.arange(1, SEQ_LEN + 1)) % 7  # (30,)
    p_active = 1 / (1 + np.exp(-users.active_logit))  # (N,)
    lam = users.rate[:, None] * weekly[weekday_back][None, :]  # (N, 30)
    # Expected session value of a typical logged session, Featured-heavy like the logging policy.
    share = np.array([0.6, 0.2, 0.2])
    base = np.asarray(cfg.base_duration) * np.exp(users.affinity + cfg.duration_sigma**2 / 2)
    per_session = users.dur_scale * (base * share).sum(1)  # (N,)

    def one_block(rng: np.random.Generator, m: int) -> dict[str, np.ndarray]:
        return {
            "u": rng.random((m, SEQ_LEN)),
            "z": rng.normal(size=(m, SEQ_LEN)),
            "noise": rng.lognormal(0.0, 0.3, (m, SEQ_LEN)),
        }

    d = draw(
        blocks_of(first_user, n, cfg.block_size), cfg.seed, -1, "init", cfg.block_size, one_block
    )
    active = d["u"] < p_active[:, None]
    # Normal approximation of Poisson(lam): the draw's shape does not depend on lam (CRN).
    count = np.rint(lam + np.sqrt(lam) * d["z"])
    se = np.where(active, np.clip(count, 1, cfg.max_planned), 0)
    t = np.arange(cfg.max_planned)
    harmonic = np.cumsum(1.0 / (1.0 + cfg.session_decay * t))  # (S,)
    usage = np.where(
        se > 0, per_session[:, None] * harmonic[np.maximum(se - 1, 0).astype(int)] * d["noise"], 0.0
    )
    page_share = share[None, None, :] * np.ones((n, PAGE_HIST_DAYS, N_PAGES))
    return UserState(
        sat=np.zeros(n),
        fatigue=np.zeros(n),
        hist_sessions=se.astype(np.float32),
        hist_usage=usage.astype(np.float32),
        hist_page_dur=(usage[:, :PAGE_HIST_DAYS, None] * page_share).astype(np.float32),
        hist_page_entries=(se[:, :PAGE_HIST_DAYS, None] * page_share).astype(np.float32),
        last_exit=np.zeros(n, dtype=np.int8),
    )


def day_stats(state: UserState) -> dict[str, np.ndarray]:
    """The statistical features t of the schema, computed from the history (start of day)."""
    return {
        "usage_7d": state.hist_usage[:, :7].mean(1),
        "usage_30d": state.hist_usage.mean(1),
        "sessions_7d": state.hist_sessions[:, :7].mean(1),
        "sessions_30d": state.hist_sessions.mean(1),
        "page_dur_7d": state.hist_page_dur[:, :7].mean(1),
        "page_dur_14d": state.hist_page_dur.mean(1),
        "page_entries_7d": state.hist_page_entries[:, :7].mean(1),
        "page_entries_14d": state.hist_page_entries.mean(1),
    }


def roll_day(
    cfg: SimConfig,
    state: UserState,
    sessions: np.ndarray,
    usage: np.ndarray,
    page_dur: np.ndarray,
    page_entries: np.ndarray,
    day_sat: np.ndarray,
    fatigue: np.ndarray,
    active: np.ndarray,
    last_exit: np.ndarray,
) -> UserState:
    """The state at the start of tomorrow, given today's outcome (arrays over N users)."""

    def push(hist: np.ndarray, today: np.ndarray) -> np.ndarray:
        return np.concatenate([today[:, None].astype(hist.dtype), hist[:, :-1]], axis=1)

    sat = cfg.sat_carry * state.sat + np.where(active, (1 - cfg.sat_carry) * np.tanh(day_sat), 0)
    return UserState(
        sat=sat,
        fatigue=cfg.fatigue_carry * fatigue,
        hist_sessions=push(state.hist_sessions, sessions),
        hist_usage=push(state.hist_usage, usage),
        hist_page_dur=push(state.hist_page_dur, page_dur),
        hist_page_entries=push(state.hist_page_entries, page_entries),
        last_exit=last_exit.astype(np.int8),
    )
