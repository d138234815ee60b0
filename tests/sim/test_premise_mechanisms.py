"""The premise mechanisms (issue 27), each checked by hand on common random numbers: the in-day
regime moves the last-exit page's median one way and the others the other way; a drop-off's
debt matures exactly ``lag_sessions`` sessions later; the first session sets the day's
set-point; every mechanism is off in the default world."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import LATENT_FEATURES, has_premise_mechanisms, simulate
from glan_ray.sim.worlds import WORLDS, world_config

COL = {name: i for i, name in enumerate(LATENT_FEATURES)}


def _day(cfg: SimConfig, users: int = 400) -> dict[str, np.ndarray]:
    return next(iter(simulate(cfg, 0, users, 1, LoggingPolicy(cfg), keep_latent=True))).sessions


def test_default_world_has_every_mechanism_off():
    assert not has_premise_mechanisms(SimConfig())
    assert WORLDS["default"] == {}
    assert has_premise_mechanisms(world_config("premise"))
    with pytest.raises(ValueError, match="unknown world 'nope'; the worlds are: default, premise"):
        world_config("nope")


def test_regime_moves_the_last_exit_page_and_the_others_the_other_way():
    base = SimConfig(seed=3)
    on = dataclasses.replace(base, regime_gain=0.5)
    a, b = _day(base), _day(on)
    # the first session of each user-day plays on the same numbers in both worlds
    first_a, first_b = a["session_idx"] == 0, b["session_idx"] == 0
    assert np.array_equal(a["row"][first_a], b["row"][first_b])
    lat_a, lat_b = a["latent"][first_a], b["latent"][first_b]
    regime = lat_b[:, COL["regime"]]
    assert set(np.unique(regime)) == {-1.0, 1.0}
    # which page the user last exited: the obs one-hot (yesterday's before the first session)
    last = a["obs"][first_a][:, 14:17].argmax(1)
    shift = lat_b[:, :3] - lat_a[:, :3]  # log-median change per page
    rows = np.arange(len(last))
    np.testing.assert_allclose(shift[rows, last], 0.5 * regime, atol=1e-5)
    others = np.ones_like(shift, dtype=bool)
    others[rows, last] = False
    np.testing.assert_allclose(shift[others], np.repeat(-0.5 * regime, 2), atol=1e-5)


def test_a_dropoff_debt_matures_lag_sessions_later_and_the_first_session_sets_the_setpoint():
    cfg = SimConfig(seed=4, lag_sessions=2, lag_dur_cost=0.3, setpoint_return=0.5,
                    base_rate=(6.0, 8.0, 10.0, 14.0))  # fmt: skip
    s = _day(cfg, users=300)
    debt, sp = s["latent"][:, COL["debt"]], s["latent"][:, COL["setpoint"]]
    checked = 0
    for r in np.unique(s["row"]):
        mine = s["row"] == r
        drops = s["y_sw"][mine].astype(float)
        # debt at session t = drop-offs at sessions <= t - 2 (one unit each)
        expected = np.r_[0.0, 0.0, np.cumsum(drops)[:-2]][: mine.sum()]
        np.testing.assert_allclose(debt[mine], expected)
        # the set-point: 0 at the first session, then +1 if it held, -1 if it dropped
        want = np.r_[0.0, np.full(mine.sum() - 1, -1.0 if drops[0] else 1.0)]
        np.testing.assert_allclose(sp[mine], want)
        checked += drops[:-2].sum() > 0
    assert checked > 10  # days with a matured debt were seen


def test_premise_world_days_can_exceed_one_dt_window():
    s = _day(world_config("premise", seed=5), users=500)
    per_day = np.bincount(s["row"])
    assert per_day.max() > 20  # the DT's context_len
    assert per_day[per_day > 0].mean() > 8
