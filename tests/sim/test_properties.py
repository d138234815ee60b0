"""The simulator's properties (SPEC §1), checked by measurement on a small population."""

from __future__ import annotations

import numpy as np
import pytest

from glan_ray.sim.baselines import (
    FixedPagePolicy,
    GreedyImmediatePolicy,
    LoggingPolicy,
    OraclePolicy,
    UniformPolicy,
)
from glan_ray.sim.engine import simulate
from glan_ray.sim.interface import Policy
from tests.conftest import concat_sessions


def test_most_active_user_days_have_several_sessions(logged_days):
    se = np.concatenate([log.y_se[log.active] for log in logged_days])
    assert se.min() >= 1
    assert np.mean(se > 1) >= 0.70


def test_hourly_entries_are_tidal(logged_days):
    hours = concat_sessions(logged_days, "hour").astype(int)
    counts = np.bincount(hours, minlength=24)
    assert counts.argmax() in (12, 13, 19, 20, 21)
    assert counts.argmin() in (3, 4, 5)
    peaks = np.r_[counts[12:14], counts[19:22]].mean()
    assert peaks > 5 * counts[3:6].mean()
    # Both peaks stand above the afternoon and morning hours around them.
    assert counts[12:14].mean() > counts[15:18].mean()
    assert counts[19:22].mean() > counts[15:18].mean()


def test_weekly_cycle_in_daily_usage(logged_days):
    by_weekday = {}
    for log in logged_days:
        by_weekday.setdefault(log.weekday, []).append(log.y_wt.mean())
    weekend = np.mean(by_weekday[5] + by_weekday[6])
    weekdays = np.mean([v for d in range(5) for v in by_weekday[d]])
    assert weekend > 1.1 * weekdays


def test_usage_time_is_log_linear_in_session_count(logged_days):
    wt = np.concatenate([log.y_wt[log.active] for log in logged_days])
    se = np.concatenate([log.y_se[log.active] for log in logged_days])
    x = np.log1p(se)
    a, b = np.polyfit(x, wt, 1)
    r2 = 1 - np.sum((wt - (a * x + b)) ** 2) / np.sum((wt - wt.mean()) ** 2)
    assert a > 0
    assert r2 >= 0.5


def test_logging_policy_prefers_featured_and_logs_propensities(logged_days, sim_cfg):
    actions = concat_sessions(logged_days, "action")
    assert np.bincount(actions, minlength=3).argmax() == 0
    assert np.mean(actions == 0) > 0.5
    prop = concat_sessions(logged_days, "propensity")
    assert np.all((prop > 0) & (prop <= 1))
    # Every page keeps at least the epsilon share of the mass: the logs support OPE.
    assert prop.min() >= sim_cfg.log_epsilon / 3 - 1e-9


def test_dropoff_is_landing_consumption_below_tau(logged_days, sim_cfg):
    dur = concat_sessions(logged_days, "dur")
    action = concat_sessions(logged_days, "action").astype(int)
    y_sw = concat_sessions(logged_days, "y_sw")
    landing = dur[np.arange(len(action)), action]
    np.testing.assert_array_equal(y_sw, landing < sim_cfg.tau)
    assert 0.05 < y_sw.mean() < 0.4
    # Compensation: after a drop-off users navigate to other pages far more often.
    switched = concat_sessions(logged_days, "seq_len") > 1
    assert switched[y_sw].mean() > switched[~y_sw].mean() + 0.15


def test_pages_have_different_duration_distributions(sim_cfg):
    """Under random assignment (no selection bias) each page has its own duration law."""
    logs = list(simulate(sim_cfg, 0, 2000, 3, UniformPolicy()))
    dur = concat_sessions(logs, "dur")
    action = concat_sessions(logs, "action").astype(int)
    landing = dur[np.arange(len(action)), action]
    medians = [np.median(landing[action == k]) for k in range(3)]
    drop = [concat_sessions(logs, "y_sw")[action == k].mean() for k in range(3)]
    assert medians[0] > medians[1] > medians[2] > 0
    assert drop[2] > drop[1] and drop[2] > drop[0]


def test_intent_is_hidden_but_history_reveals_it(sim_cfg):
    """Consecutive sessions of a day share a drifting intent: their landing-duration residuals
    (after each user-page mean) correlate, though no observed feature carries the intent."""
    logs = list(simulate(sim_cfg, 0, 2000, 10, FixedPagePolicy(1)))
    rows = np.concatenate([log.sessions["row"] for log in logs])
    day = np.concatenate([np.full(len(log.sessions["row"]), log.day) for log in logs])
    t = concat_sessions(logs, "session_idx")
    logd = np.log(concat_sessions(logs, "dur")[:, 1] * (1 + sim_cfg.session_decay * t))
    user_mean = np.bincount(rows, logd) / np.maximum(np.bincount(rows), 1)
    resid = logd - user_mean[rows]
    same = (rows[1:] == rows[:-1]) & (day[1:] == day[:-1])
    corr = np.corrcoef(resid[:-1][same], resid[1:][same])[0, 1]
    assert corr > 0.05


def test_following_in_the_morning_brings_evening_revisits(sim_cfg):
    following = list(simulate(sim_cfg, 0, 2000, 5, FixedPagePolicy(2)))
    featured = list(simulate(sim_cfg, 0, 2000, 5, FixedPagePolicy(0)))

    def evening_sessions(logs):
        return np.mean([(log.sessions["hour"] >= 19).sum() / len(log.users) for log in logs])

    assert evening_sessions(following) > 1.05 * evening_sessions(featured)


def test_greedy_on_immediate_duration_loses_to_the_oracle(sim_cfg):
    """Same users, same random numbers: planning over the day beats the greedy policy."""
    greedy = list(simulate(sim_cfg, 0, 2000, 7, GreedyImmediatePolicy(sim_cfg)))
    oracle = list(simulate(sim_cfg, 0, 2000, 7, OraclePolicy(sim_cfg)))
    g = np.sum([log.y_wt for log in greedy], axis=0)  # (users,) total usage over the week
    o = np.sum([log.y_wt for log in oracle], axis=0)
    diff = o - g
    t_stat = diff.mean() / (diff.std(ddof=1) / np.sqrt(len(diff)))
    assert o.sum() > g.sum()
    assert t_stat > 3


def test_common_random_numbers_replay_the_same_user_days(sim_cfg):
    a = next(simulate(sim_cfg, 0, 1000, 1, FixedPagePolicy(0)))
    b = next(simulate(sim_cfg, 0, 1000, 1, FixedPagePolicy(1)))
    np.testing.assert_array_equal(a.active, b.active)
    first_a = a.sessions["hour"][a.sessions["session_idx"] == 0]
    first_b = b.sessions["hour"][b.sessions["session_idx"] == 0]
    np.testing.assert_array_equal(first_a, first_b)
    # A user's numbers do not depend on the population around them.
    part = next(simulate(sim_cfg, 500, 500, 1, FixedPagePolicy(0)))
    np.testing.assert_allclose(part.y_wt, a.y_wt[500:])


def test_retention_responds_to_experience(sim_cfg):
    """Tomorrow's activity follows today's experience: a day of drop-offs costs active users."""
    from glan_ray.sim.engine import p_active
    from glan_ray.sim.state import initial_state
    from glan_ray.sim.users import make_users

    users = make_users(sim_cfg, 0, 2000)
    state = initial_state(sim_cfg, users, 0)
    base = p_active(sim_cfg, users, state, 2).mean()
    # Play one day where every session drops off, then compare tomorrow's activity.
    bad = list(simulate(sim_cfg, 0, 2000, 3, _WorstPagePolicy(sim_cfg)))
    good = list(simulate(sim_cfg, 0, 2000, 3, OraclePolicy(sim_cfg)))
    assert np.mean(good[-1].active) > np.mean(bad[-1].active)
    assert 0 < base < 1


class _WorstPagePolicy(OraclePolicy):
    name = "worst"

    def probs(self, obs, history):
        from glan_ray.sim.dynamics import action_values

        _, q = action_values(self.cfg, obs.latent)
        return np.eye(3)[q.argmin(1)]


def test_policy_with_wrong_output_shape_is_rejected(sim_cfg):
    class Broken(Policy):
        name = "broken"

        def probs(self, obs, history):
            return np.ones((len(obs.rows), 2))

    with pytest.raises(ValueError, match="broken: probs must have shape"):
        next(simulate(sim_cfg, 0, 100, 1, Broken()))


def test_rct_mode_records_counterfactuals(sim_cfg):
    logs = list(simulate(sim_cfg, 0, 2000, 2, LoggingPolicy(sim_cfg), rct=True))
    for log in logs:
        t = log.treatment.astype(int)
        np.testing.assert_allclose(log.response_cf[np.arange(len(t)), t], log.y_wt, rtol=1e-6)
        share = np.bincount(t, minlength=4) / len(t)
        assert abs(share[0] - sim_cfg.rct_control_share) < 0.05
        forced = log.sessions["row"]
        tr = t[forced]
        acts = log.sessions["action"]
        np.testing.assert_array_equal(acts[tr > 0], tr[tr > 0] - 1)
