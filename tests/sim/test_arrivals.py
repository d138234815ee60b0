"""The exogenous day plan: inverse-CDF Poisson draws, sorted slots, tidal hours, hidden intent."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats as st

from glan_ray.sim.arrivals import NO_HOUR, DayPlan, _poisson_from_uniform, make_plan
from glan_ray.sim.config import SimConfig
from glan_ray.sim.users import make_users

CFG = SimConfig(seed=5, block_size=100)


def _plan(cfg: SimConfig = CFG, first: int = 0, n: int = 300, day: int = 0) -> DayPlan:
    return make_plan(cfg, make_users(cfg, first, n), first, day)


def test_poisson_from_uniform_is_the_inverse_cdf_by_hand():
    # lam = 1: P(0) = e^-1 = 0.368, P(<= 1) = 0.736, P(<= 2) = 0.920, P(<= 3) = 0.981
    lam = np.ones(5)
    u = np.array([0.0, 0.30, 0.50, 0.90, 0.95])
    np.testing.assert_array_equal(_poisson_from_uniform(lam, u), [0, 0, 1, 2, 3])
    assert _poisson_from_uniform(np.zeros(3), np.array([0.1, 0.5, 0.99])).tolist() == [0, 0, 0]


def test_poisson_from_uniform_matches_scipy_and_caps_at_k_max():
    rng = np.random.default_rng(0)
    lam = rng.uniform(0.0, 8.0, 20_000)
    u = rng.random(20_000)
    np.testing.assert_array_equal(_poisson_from_uniform(lam, u), st.poisson.ppf(u, lam))
    # far in the tail the count stops at k_max (the arrays keep a fixed shape)
    assert _poisson_from_uniform(np.array([60.0]), np.array([0.5])).tolist() == [30]
    assert _poisson_from_uniform(np.array([60.0]), np.array([0.5]), k_max=10).tolist() == [10]


def test_plan_shapes_and_slot_invariants():
    p = _plan()
    n, s = 300, CFG.n_slots
    for name in ("hour", "valid", "is_bonus", "is_first", "live_count", "u_return", "u_action"):
        assert getattr(p, name).shape == (n, s), name
    for name in ("intent", "eps", "u_nav", "u_views", "u_order"):
        assert getattr(p, name).shape == (n, s, 3), name
    assert p.u_active.shape == (n,)
    # slots sorted by hour; slots that do not exist have NO_HOUR and come last
    assert (np.diff(p.hour, axis=1) >= 0).all()
    np.testing.assert_array_equal(p.valid, p.hour < NO_HOUR)
    assert (p.hour[~p.valid] == NO_HOUR).all() and (p.hour[p.valid] < 24).all()
    # every user has all bonus slots (in the bonus window) and 1..max_planned planned slots
    assert (p.is_bonus.sum(1) == CFG.n_bonus_slots).all()
    lo, hi = CFG.bonus_hours
    assert ((p.hour[p.is_bonus] >= lo) & (p.hour[p.is_bonus] < hi)).all()
    planned = (p.valid & ~p.is_bonus).sum(1)
    assert planned.min() >= 1 and planned.max() <= CFG.max_planned
    # exactly one first slot per user: a valid planned one
    assert (p.is_first.sum(1) == 1).all()
    assert (p.valid & ~p.is_bonus)[p.is_first].all()
    # no live creators at slots that do not exist
    assert (p.live_count[~p.valid] == 0).all() and (p.live_count >= 0).all()
    assert ((p.u_active >= 0) & (p.u_active < 1)).all()


def test_weekday_follows_the_start_weekday():
    cfg = dataclasses.replace(CFG, start_weekday=5)
    assert [make_plan(cfg, make_users(cfg, 0, 10), 0, d).weekday for d in range(4)] == [5, 6, 0, 1]


def test_planned_hours_follow_the_tidal_curve():
    # all the intensity at 7h and 20h, twice as much at 20h: hours fall in [7, 8) or [20, 21)
    tidal = [0.0] * 24
    tidal[7], tidal[20] = 1.0, 2.0
    cfg = dataclasses.replace(CFG, tidal_hourly=tuple(tidal), n_bonus_slots=0)
    p = _plan(cfg, n=2000)
    hours = p.hour[p.valid]
    assert set(np.floor(hours).astype(int)) == {7, 20}
    share_20 = np.mean(hours >= 20)
    assert share_20 == pytest.approx(2 / 3, abs=0.02)  # ~10,000 draws: se ≈ 0.005
    # uniform within the hour
    assert np.mean(hours[hours < 8] - 7) == pytest.approx(0.5, abs=0.03)


def test_intent_is_centred_over_pages_except_the_live_reaction():
    cfg = dataclasses.replace(CFG, live_intent_gain=0.0)
    p = _plan(cfg)
    np.testing.assert_allclose(p.intent.sum(-1), 0.0, atol=1e-12)
    # centring and the sqrt(1.5) rescaling keep the stationary std at intent_std
    big = _plan(cfg, n=2000)
    assert big.intent[big.valid].std() == pytest.approx(cfg.intent_std, rel=0.05)
    # with the reaction, only Following moves, by gain · live_sens · log(1 + live)
    users = make_users(CFG, 0, 300)
    q = make_plan(CFG, users, 0, 0)
    extra = CFG.live_intent_gain * users.live_sens[:, None] * np.log1p(q.live_count)
    np.testing.assert_allclose(q.intent[..., 2] - extra, p.intent[..., 2], atol=1e-12)
    np.testing.assert_array_equal(q.intent[..., :2], p.intent[..., :2])


def test_plans_are_common_random_numbers():
    a, b = _plan(day=3), _plan(day=3)
    for f in dataclasses.fields(DayPlan):
        np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name), err_msg=f.name)
    assert not np.array_equal(a.u_action, _plan(day=4).u_action)
    # a shard of the users gets the rows the whole population got
    part = _plan(first=100, n=150, day=3)
    for f in dataclasses.fields(DayPlan):
        if f.name != "weekday":
            np.testing.assert_array_equal(
                getattr(part, f.name), getattr(a, f.name)[100:250], err_msg=f.name
            )
