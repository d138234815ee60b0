"""Session dynamics (SPEC §1, properties 3–6) and the exact expected values the oracle plans with.

One function samples a session given the landing page; another computes, for every candidate
landing page, the expected immediate session usage and its delayed effects on the rest of the
day (returns, bonus evening entries) and on tomorrow's activity. The oracle policy maximises the
latter; the ``value_true`` column of the sessions dataset is its value at the logged action.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glan_ray.sim.config import SimConfig


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x), vectorised (Abramowitz & Stegun 7.1.26 erf, absolute error < 1.5e-7)."""
    z = np.abs(np.asarray(x, dtype=float)) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


@dataclass
class Latent:
    """The hidden state of B deciding users at one app entry (seen only by privileged policies)."""

    median: np.ndarray  # (B, 3) median landing duration (s) of each page right now
    pref: np.ndarray  # (B, 3) affinity + intent: drives navigation
    day_sat: np.ndarray  # (B,) satisfaction accumulated today
    fatigue: np.ndarray  # (B,) current Featured fatigue
    fatigue_sens: np.ndarray  # (B,)
    good_morning_following: np.ndarray  # (B,) satisfied Following sessions before noon today
    remaining_planned: np.ndarray  # (B,) planned entries still to come today
    remaining_bonus: np.ndarray  # (B,) bonus evening slots still to come today
    session_idx: np.ndarray  # (B,) index t of this session today
    hour: np.ndarray  # (B,)
    p_active_tomorrow: np.ndarray  # (B,) tomorrow's active probability at today's state
    usage_7d: np.ndarray  # (B,) the user's recent daily usage: the stake of tomorrow
    setpoint: np.ndarray | None = None  # (B,) the day's set-point: +1 held, -1 dropped, 0 none yet
    debt: np.ndarray | None = None  # (B,) matured lagged debt now (premise mechanisms)
    regime: np.ndarray | None = None  # (B,) in-day regime: +1 resume, -1 switch, 0 off


def medians(
    cfg: SimConfig,
    affinity: np.ndarray,
    intent: np.ndarray,
    fatigue: np.ndarray,
    dur_scale: np.ndarray,
    t: np.ndarray,
) -> np.ndarray:
    """Median landing duration (B, 3) of each page for the t-th session of the day."""
    log_m = affinity + intent  # (B, 3)
    log_m[:, 0] = log_m[:, 0] - cfg.fatigue_on_featured * fatigue
    decay = 1.0 / (1.0 + cfg.session_decay * t)
    return np.asarray(cfg.base_duration) * np.exp(log_m) * (dur_scale * decay)[:, None]


def _nav_logits(cfg: SimConfig, pref: np.ndarray, landing: np.ndarray, dropped: np.ndarray):
    """Navigation logits (B, 3) from the landing page to every page."""
    gap = pref - np.take_along_axis(pref, landing[:, None], axis=1)  # (B, 3)
    return cfg.nav_logit + cfg.nav_dropoff_boost * dropped[:, None] + cfg.nav_pref_slope * gap


def sample_session(
    cfg: SimConfig,
    median: np.ndarray,
    pref: np.ndarray,
    action: np.ndarray,
    eps: np.ndarray,
    u_nav: np.ndarray,
    u_views: np.ndarray,
    u_order: np.ndarray,
) -> dict[str, np.ndarray]:
    """Play one session for B users landing on ``action`` (B,). All noise is given (CRN)."""
    b = len(action)
    rows = np.arange(b)
    raw = np.minimum(median * np.exp(cfg.duration_sigma * eps), cfg.max_page_duration)  # (B, 3)
    landing = raw[rows, action]
    y_sw = landing < cfg.tau
    p_nav = sigmoid(_nav_logits(cfg, pref, action, y_sw.astype(float)))
    nav = u_nav < p_nav
    nav[rows, action] = False
    dur = np.where(nav, cfg.nav_fraction * raw, 0.0)
    dur[rows, action] = landing
    visited = nav.copy()
    visited[rows, action] = True
    # Page sequence: landing first, then navigated pages in a random order; -1 pads.
    key = np.where(nav, u_order, np.inf)
    key[rows, action] = -1.0
    page_seq = np.argsort(key, axis=1).astype(np.int8)
    seq_len = visited.sum(1)
    page_seq[np.arange(3)[None, :] >= seq_len[:, None]] = -1
    last_exit = page_seq[rows, seq_len - 1]
    views = np.floor(dur / np.asarray(cfg.video_length) + u_views * visited).astype(np.int16)
    return {
        "dur": dur,
        "y_sw": y_sw,
        "usage": dur.sum(1) + cfg.browse_overhead * seq_len,
        "watch": (dur * np.asarray(cfg.watch_fraction)).sum(1),
        "views": views,
        "page_seq": page_seq,
        "seq_len": seq_len,
        "last_exit": last_exit,
    }


def action_values(cfg: SimConfig, lat: Latent) -> tuple[np.ndarray, np.ndarray]:
    """Expected (immediate, long-term) value (B, 3) of landing each page now.

    immediate: expected session usage time. long-term: immediate + expected usage of the rest of
    the day (return probability through satisfaction and fatigue, bonus evening entries) + the
    change in tomorrow's expected usage through retention.
    """
    sig, e = cfg.duration_sigma, np.exp(cfg.duration_sigma**2 / 2)
    m, pref = lat.median, lat.pref
    b = len(m)
    p_drop = normal_cdf((np.log(cfg.tau) - np.log(m)) / sig)  # (B, 3)
    imm = np.empty((b, 3))
    featured = np.empty((b, 3))
    for a in range(3):
        land = np.full(b, a)
        p_nav = p_drop[:, a : a + 1] * sigmoid(_nav_logits(cfg, pref, land, np.ones(b))) + (
            1 - p_drop[:, a : a + 1]
        ) * sigmoid(_nav_logits(cfg, pref, land, np.zeros(b)))
        p_nav[:, a] = 0.0
        nav_dur = p_nav * cfg.nav_fraction * m * e  # (B, 3)
        imm[:, a] = m[:, a] * e + nav_dur.sum(1) + cfg.browse_overhead * (1 + p_nav.sum(1))
        featured[:, a] = m[:, 0] * e if a == 0 else nav_dur[:, 0]
    d_fat = cfg.fatigue_rate * lat.fatigue_sens[:, None] * featured / 600.0  # (B, 3)
    t = lat.session_idx
    future_session = imm.max(1) * (1 + cfg.session_decay * t) / (1 + cfg.session_decay * (t + 2))

    def p_ret(sat: np.ndarray, fat: np.ndarray, shift: np.ndarray | float = 0.0) -> np.ndarray:
        return sigmoid(cfg.return_logit + cfg.return_sat * sat - cfg.return_fatigue * fat + shift)

    fat = lat.fatigue[:, None] + d_fat
    ds = lat.day_sat[:, None]
    # Premise mechanisms (zero in the default world): the set-point this session fixes (first
    # session only) and the lagged debt it adds, as return-logit and duration changes averaged
    # over the rest of the day's sessions.
    zero = np.zeros(b)
    sp = lat.setpoint if lat.setpoint is not None else zero
    debt = lat.debt if lat.debt is not None else zero
    first = (t == 0)[:, None]
    sp_drop = np.where(first, -1.0, sp[:, None])  # (B, 1)
    sp_held = np.where(first, 1.0, sp[:, None])
    r = lat.remaining_planned.astype(float)
    # Share of the rest of the day's sessions that a debt added now reaches (after the lag).
    reach = np.clip(r - cfg.lag_sessions + 1, 0, None) / np.maximum(r, 1)
    frac = (reach if cfg.lag_sessions else np.zeros(b))[:, None] * np.ones((1, 3))  # (B, 3)
    p_binge = np.zeros((b, 3))
    p_binge[:, 0] = 1 - normal_cdf((np.log(cfg.lag_binge_s) - np.log(m[:, 0])) / sig)
    binge = cfg.lag_binge_debt * p_binge  # (B, 3) expected binge debt of each landing
    debt_now = debt[:, None]

    def extra(sp_after: np.ndarray, added: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(return-logit shift, future-duration multiplier) of the rest of the day."""
        d_debt = frac * added
        logit = cfg.setpoint_return * sp_after - cfg.lag_return_cost * (debt_now + d_debt)
        mult = np.exp(cfg.setpoint_dur * (sp_after - sp[:, None]) - cfg.lag_dur_cost * d_debt)
        return logit, mult

    lg_drop, m_drop = extra(sp_drop, 1.0 + binge)
    lg_held, m_held = extra(sp_held, binge)
    ret_drop = p_ret(ds + cfg.sat_drop, fat, lg_drop)
    ret_held = p_ret(ds + cfg.sat_good, fat, lg_held)
    p_return = p_drop * ret_drop * m_drop + (1 - p_drop) * ret_held * m_held
    rest = lat.remaining_planned[:, None] * future_session[:, None] * p_return

    n_good = lat.good_morning_following
    gain = sigmoid(cfg.bonus_logit + cfg.bonus_per_following * (n_good + 1)) - sigmoid(
        cfg.bonus_logit + cfg.bonus_per_following * n_good
    )
    bonus = np.zeros((b, 3))
    morning = lat.hour < 12.0
    bonus[:, 2] = morning * (1 - p_drop[:, 2]) * gain * lat.remaining_bonus * future_session

    d_sat = p_drop * cfg.sat_drop + (1 - p_drop) * cfg.sat_good
    p = lat.p_active_tomorrow[:, None]
    d_logit = (
        cfg.retention_sat * (1 - cfg.sat_carry) * d_sat
        - cfg.retention_fatigue * cfg.fatigue_carry * d_fat
    )
    tomorrow = lat.usage_7d[:, None] * p * (1 - p) * d_logit
    return imm, imm + rest + bonus + tomorrow
