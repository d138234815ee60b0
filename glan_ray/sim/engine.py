"""The day loop: users enter the app slot by slot, the policy picks landing pages, sessions play.

``simulate_day`` is a pure function of (state, plan, policy): it never mutates the state it is
given, so the same user-day can be replayed under another policy or treatment (CRN).
``simulate`` runs a user range through consecutive days and yields one ``DayLog`` per day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from glan_ray.schema import N_PAGES, N_TREATMENTS, OBS_DIM
from glan_ray.sim.arrivals import DayPlan, make_plan
from glan_ray.sim.config import SimConfig
from glan_ray.sim.dynamics import Latent, action_values, medians, sample_session, sigmoid
from glan_ray.sim.interface import IntraDayHistory, Observation, Policy
from glan_ray.sim.observation import build_obs
from glan_ray.sim.rng import blocks_of, draw
from glan_ray.sim.state import UserState, day_stats, initial_state, roll_day
from glan_ray.sim.users import Users, make_users


@dataclass
class DayLog:
    """Everything logged on one day for N users; session arrays have M rows sorted by user, t."""

    day: int
    weekday: int
    users: Users
    stats: dict[str, np.ndarray]  # start-of-day statistical features, (N, ...)
    seq_sessions: np.ndarray  # (N, 30) history before today, index 0 = yesterday
    seq_usage: np.ndarray  # (N, 30)
    active: np.ndarray  # (N,) bool
    y_wt: np.ndarray  # (N,) usage time today (s)
    y_se: np.ndarray  # (N,) sessions today
    sessions: dict[str, np.ndarray]  # (M, ...) per-session records
    treatment: np.ndarray | None = None  # (N,) RCT treatment, 0 = control
    response_cf: np.ndarray | None = None  # (N, 4) usage today under every treatment
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    next_state: UserState | None = None  # the users' state after this day (set by ``simulate``)


def user_features(users: Users, rows: np.ndarray | slice = slice(None)) -> dict[str, np.ndarray]:
    """The observed profile columns (schema USER_FIELDS) of some users."""
    return {k: getattr(users, k)[rows] for k in ("age", "region", "activity", "social_degree")}


def p_active(cfg: SimConfig, users: Users, state: UserState, weekday: int) -> np.ndarray:
    """Probability (N,) of being active today: base, weekly cycle, retention (property 7)."""
    logit = (
        users.active_logit
        + cfg.weekly_active_logit * (cfg.weekly[weekday] - 1.0)
        + cfg.retention_sat * state.sat
        - cfg.retention_fatigue * state.fatigue
    )
    return sigmoid(logit)


def _remaining(mask: np.ndarray) -> np.ndarray:
    """(N, S): how many true entries of ``mask`` come strictly after each slot."""
    rev = np.cumsum(mask[:, ::-1], axis=1)[:, ::-1]
    return rev - mask


def simulate_day(
    cfg: SimConfig,
    users: Users,
    state: UserState,
    plan: DayPlan,
    policy: Policy,
    day: int,
    treatment: np.ndarray | None = None,
    keep_latent: bool = False,
) -> tuple[DayLog, UserState]:
    """Play one day. ``treatment`` (N,) forces page t - 1 where t > 0 (RCT); 0 keeps the policy.

    ``keep_latent`` adds each session's hidden state (``latent_vector``, LATENT_FEATURES) to
    the sessions as ``latent``: what the premise diagnostics predict from.
    """
    n, s = len(users), cfg.n_slots
    premise = has_premise_mechanisms(cfg)
    stats = day_stats(state)
    p_act = p_active(cfg, users, state, plan.weekday)
    active = plan.u_active < p_act
    features = {
        "user_id": users.user_id,
        **user_features(users),
        **stats,
        "seq_sessions": state.hist_sessions,
        "seq_usage": state.hist_usage,
        "weekday": np.full(n, plan.weekday, dtype=np.int64),
        "last_exit": state.last_exit.astype(np.int64),
    }
    policy.begin_day(day, features)
    most_visited = stats["page_entries_14d"].argmax(1)

    day_sat, fatigue = np.zeros(n), state.fatigue.copy()
    good_following = np.zeros(n)
    today_dur, page_entries = np.zeros((n, N_PAGES)), np.zeros((n, N_PAGES))
    entries, prev_drop = np.zeros(n, dtype=np.int64), np.zeros(n)
    last_exit = state.last_exit.astype(np.int64)
    hist = IntraDayHistory.empty(n, s, OBS_DIM)
    rem_planned = _remaining(plan.valid & ~plan.is_bonus)
    rem_bonus = _remaining(plan.valid & plan.is_bonus)
    records: list[dict[str, np.ndarray]] = []
    # Premise mechanisms (issue 27), all zero in the default world: the day's set-point (+1 the
    # first session held, -1 it dropped) and the lagged debt due at each session index.
    setpoint = np.zeros(n)
    debt_due = np.zeros((n, s + cfg.lag_sessions + 1))
    no_debt = np.zeros(n)

    for k in range(s):
        if not plan.valid[:, k].any():
            break  # slots are sorted by hour; invalid ones come last
        matured = (
            np.take_along_axis(np.cumsum(debt_due, 1), entries[:, None], 1)[:, 0]  # (N,)
            if premise
            else no_debt
        )
        p_ret = sigmoid(
            cfg.return_logit
            + cfg.return_sat * day_sat
            - cfg.return_fatigue * fatigue
            + (cfg.setpoint_return * setpoint - cfg.lag_return_cost * matured)
        )
        p_bonus = sigmoid(cfg.bonus_logit + cfg.bonus_per_following * good_following)
        p_real = np.where(plan.is_first[:, k], 1.0, np.where(plan.is_bonus[:, k], p_bonus, p_ret))
        rows = np.flatnonzero(active & plan.valid[:, k] & (plan.u_return[:, k] < p_real))
        if rows.size == 0:
            continue
        t, hour = entries[rows], plan.hour[rows, k]
        intent = plan.intent[rows, k]
        med = medians(cfg, users.affinity[rows], intent, fatigue[rows], users.dur_scale[rows], t)
        if premise:
            shift = (cfg.setpoint_dur * setpoint[rows] - cfg.lag_dur_cost * matured[rows])[:, None]
            shift = shift * np.ones((1, N_PAGES))  # (B, 3)
            # resume day (+1): the page the user last exited (yesterday's before the first
            # session) holds longer, the others shorter; switch day (-1): the reverse
            g = (cfg.regime_gain * plan.regime[rows])[:, None]  # (B, 1)
            shift = shift - g
            shift[np.arange(rows.size), last_exit[rows]] += 2 * g[:, 0]
            med = med * np.exp(shift)
        pref = users.affinity[rows] + intent
        obs = build_obs(
            user_features(users, rows),
            {k2: v[rows] for k2, v in stats.items()},
            hour,
            plan.weekday,
            t,
            plan.live_count[rows, k],
            today_dur[rows],
            prev_drop[rows],
            last_exit[rows],
        )
        latent = Latent(
            median=med,
            pref=pref,
            day_sat=day_sat[rows],
            fatigue=fatigue[rows],
            fatigue_sens=users.fatigue_sens[rows],
            good_morning_following=good_following[rows],
            remaining_planned=rem_planned[rows, k],
            remaining_bonus=rem_bonus[rows, k],
            session_idx=t,
            hour=hour,
            p_active_tomorrow=p_act[rows],
            usage_7d=stats["usage_7d"][rows],
            setpoint=setpoint[rows],
            debt=matured[rows],
            regime=plan.regime[rows],
        )
        ob = Observation(
            rows=rows,
            user_id=users.user_id[rows],
            obs=obs,
            hour=hour,
            weekday=plan.weekday,
            entries_today=t,
            last_exit=last_exit[rows],
            most_visited=most_visited[rows],
            latent=latent if policy.privileged else None,
            live_count=plan.live_count[rows, k],
        )
        action, probs = policy.act(ob, hist, plan.u_action[rows, k])
        if treatment is not None:
            forced = treatment[rows] > 0
            action = np.where(forced, treatment[rows] - 1, action).astype(np.int8)
            probs = np.where(
                forced[:, None], np.eye(N_PAGES)[np.maximum(treatment[rows] - 1, 0)], probs
            )
        a = action.astype(np.int64)
        out = sample_session(
            cfg,
            med,
            pref,
            a,
            plan.eps[rows, k],
            plan.u_nav[rows, k],
            plan.u_views[rows, k],
            plan.u_order[rows, k],
        )
        _, q = action_values(cfg, latent)
        records.append(
            {
                "slot": np.full(rows.size, k, dtype=np.int16),
                "row": rows,
                "session_idx": t,
                "hour": hour,
                "entries_today": t,
                "live_count": plan.live_count[rows, k],
                "today_dur": today_dur[rows].copy(),
                "obs": obs,
                "action": action,
                "propensity": probs[np.arange(rows.size), a],
                "dur": out["dur"],
                "y_sw": out["y_sw"],
                "usage": out["usage"],
                "watch": out["watch"],
                "views": out["views"],
                "page_seq": out["page_seq"],
                "seq_len": out["seq_len"],
                "value_true": q[np.arange(rows.size), a],
            }
        )
        if keep_latent:
            records[-1]["latent"] = latent_vector(cfg, users, rows, latent)

        # Intra-day history seen by the policy at the next entries.
        hist.obs[rows, t] = obs
        hist.action[rows, t] = action
        hist.hour[rows, t] = hour
        hist.dur[rows, t] = out["dur"]
        hist.video_views[rows, t] = out["views"]
        hist.n_switches[rows, t] = out["seq_len"] - 1
        hist.y_sw[rows, t] = out["y_sw"]
        hist.usage[rows, t] = out["usage"]
        hist.exit_page[rows, t] = out["last_exit"]
        hist.watch[rows, t] = out["watch"]
        hist.length[rows] += 1

        # Hidden dynamics: satisfaction, fatigue, the Following-morning effect.
        dropped = out["y_sw"]
        day_sat[rows] += np.where(dropped, cfg.sat_drop, cfg.sat_good)
        fatigue[rows] += cfg.fatigue_rate * users.fatigue_sens[rows] * out["dur"][:, 0] / 600.0
        good_following[rows] += (a == 2) & ~dropped & (hour < 12.0)
        today_dur[rows] += out["dur"]
        page_entries[rows, a] += 1
        entries[rows] += 1
        prev_drop[rows] = dropped
        last_exit[rows] = out["last_exit"]
        if premise:
            setpoint[rows] = np.where(t == 0, np.where(dropped, -1.0, 1.0), setpoint[rows])
            landing = out["dur"][np.arange(rows.size), a]
            binge = (a == 0) & (landing > cfg.lag_binge_s)
            debt = dropped + cfg.lag_binge_debt * binge
            if cfg.lag_sessions:
                debt_due[rows, t + cfg.lag_sessions] += debt

    sessions = _concat_sorted(records)
    y_wt = np.bincount(sessions["row"], weights=sessions["usage"], minlength=n)
    log = DayLog(
        day=day,
        weekday=plan.weekday,
        users=users,
        stats=stats,
        seq_sessions=state.hist_sessions,
        seq_usage=state.hist_usage,
        active=active,
        y_wt=y_wt,
        y_se=entries.copy(),
        sessions=sessions,
        treatment=treatment,
    )
    new_state = roll_day(
        cfg, state, entries, y_wt, today_dur, page_entries, day_sat, fatigue, active, last_exit
    )
    return log, new_state


LATENT_FEATURES: tuple[str, ...] = (
    "log_median_featured",
    "log_median_explore",
    "log_median_following",
    "pref_featured",
    "pref_explore",
    "pref_following",
    "day_sat",
    "fatigue",
    "fatigue_sens_log",
    "rate_log",
    "good_morning_following",
    "setpoint",
    "debt",
    "regime",
)
"""The hidden state of a user at an app entry, as the premise diagnostics see it: every hidden
variable their behaviour depends on (affinity and intent through the per-page medians and
preferences, satisfaction, fatigue and its sensitivity, entry rate, the set-point, the lagged
debt, the regime), not the day's exogenous draws (arrival times, noises)."""


def has_premise_mechanisms(cfg: SimConfig) -> bool:
    """True when any premise mechanism (regime, lagged costs, set-point) is on."""
    return bool(
        cfg.regime_gain
        or (cfg.lag_sessions and (cfg.lag_dur_cost or cfg.lag_return_cost))
        or cfg.setpoint_return
        or cfg.setpoint_dur
    )


def latent_vector(cfg: SimConfig, users: Users, rows: np.ndarray, lat: Latent) -> np.ndarray:
    """(B, len(LATENT_FEATURES)) float32 hidden state of the deciding users ``rows``."""
    b = len(rows)
    zero = np.zeros(b)
    cols = [
        *np.log(lat.median).T,
        *lat.pref.T,
        lat.day_sat,
        lat.fatigue,
        np.log(users.fatigue_sens[rows]),
        np.log(users.rate[rows]),
        lat.good_morning_following,
        lat.setpoint if lat.setpoint is not None else zero,
        lat.debt if lat.debt is not None else zero,
        lat.regime if lat.regime is not None else zero,
    ]
    return np.stack([np.asarray(c, dtype=np.float32) for c in cols], axis=1)


def _concat_sorted(records: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not records:
        return {}
    out = {k: np.concatenate([r[k] for r in records]) for k in records[0]}
    order = np.lexsort((out["session_idx"], out["row"]))
    return {k: v[order] for k, v in out.items()}


def rct_treatments(cfg: SimConfig, first_user: int, n_users: int, day: int) -> np.ndarray:
    """Per user-day treatment (N,): 0 = control with ``rct_control_share``, else a page + 1."""

    def one_block(rng: np.random.Generator, m: int) -> dict[str, np.ndarray]:
        return {"u": rng.random(m)}

    u = draw(
        blocks_of(first_user, n_users, cfg.block_size),
        cfg.seed,
        day,
        "rct",
        cfg.block_size,
        one_block,
    )["u"]
    c = cfg.rct_control_share
    page = np.minimum(((u - c) / (1 - c) * N_PAGES).astype(np.int64), N_PAGES - 1)
    return np.where(u < c, 0, page + 1).astype(np.int8)


def simulate(
    cfg: SimConfig,
    first_user: int,
    n_users: int,
    days: int,
    policy: Policy | Callable[[], Policy],
    rct: bool = False,
    first_day: int = 0,
    start: UserState | None = None,
    keep_latent: bool = False,
) -> Iterator[DayLog]:
    """Run users [first_user, first_user + n_users) for ``days`` days; yield a DayLog per day.

    ``policy`` is a Policy or a factory. In RCT mode each user-day gets a random treatment and
    the day is also replayed under every treatment to record the counterfactual responses.
    ``start`` continues these users from a state an earlier run left (``DayLog.next_state`` of
    its last day, with ``first_day`` the day after it), e.g. after a burn-in under another
    policy; None starts them fresh. ``keep_latent``: see ``simulate_day``.
    """
    pol = policy() if callable(policy) and not isinstance(policy, Policy) else policy
    users = make_users(cfg, first_user, n_users)
    state = initial_state(cfg, users, first_user) if start is None else start
    if len(state.sat) != n_users:
        raise ValueError(f"start: a state of {len(state.sat)} users for {n_users} users")
    for day in range(first_day, first_day + days):
        plan = make_plan(cfg, users, first_user, day)
        if not rct:
            log, state = simulate_day(cfg, users, state, plan, pol, day, keep_latent=keep_latent)
        else:
            treatment = rct_treatments(cfg, first_user, n_users, day)
            cf = np.stack(
                [
                    simulate_day(
                        cfg, users, state, plan, pol, day, np.full(n_users, k, dtype=np.int8)
                    )[0].y_wt
                    for k in range(N_TREATMENTS)
                ],
                axis=1,
            )
            log, state = simulate_day(
                cfg, users, state, plan, pol, day, treatment, keep_latent=keep_latent
            )
            log.response_cf = cf
        log.next_state = state
        yield log


__all__ = [
    "LATENT_FEATURES",
    "DayLog",
    "has_premise_mechanisms",
    "latent_vector",
    "p_active",
    "simulate",
    "simulate_day",
    "user_features",
]
