"""The observation vector: every component by hand, named by schema.OBS_FEATURES."""

from __future__ import annotations

import numpy as np
import pytest

from glan_ray.schema import OBS_DIM, OBS_FEATURES
from glan_ray.sim.observation import build_obs

IDX = {name: i for i, name in enumerate(OBS_FEATURES)}


def _inputs(weekday: np.ndarray | int = 2) -> dict:
    return {
        "user": {
            "activity": np.array([3, 0]),
            "age": np.array([5, 1]),
            "region": np.array([7, 0]),
            "social_degree": np.array([np.e - 1, 0.0]),
        },
        "stats": {
            "usage_7d": np.array([7200.0, 0.0]),
            "usage_30d": np.array([36000.0, 0.0]),
            "sessions_7d": np.array([20.0, 0.0]),
            "sessions_30d": np.array([80.0, 0.0]),
            "page_entries_7d": np.array([[6.0, 3.0, 1.0], [0.0, 0.0, 0.0]]),
            "page_dur_14d": np.array([[600.0, 300.0, 1200.0], [0.0, 0.0, 0.0]]),
        },
        "hour": np.array([6.0, 18.0]),
        "weekday": weekday,
        "entries_today": np.array([3, 0]),
        "live_count": np.array([10, 0]),
        "today_dur": np.array([[60.0, 0.0, 120.0], [0.0, 0.0, 0.0]]),
        "prev_dropoff": np.array([1.0, 0.0]),
        "last_exit": np.array([2, 0]),
    }


def test_every_component_by_hand():
    obs = build_obs(**_inputs())
    assert obs.shape == (2, OBS_DIM) and obs.dtype == np.float32
    want = {
        "activity": [1.0, 0.0],
        "age": [1.0, 0.2],
        "region": [1.0, 0.0],
        "social_degree_log": [1 / 3, 0.0],  # log1p(e - 1) = 1, over 3
        "usage_7d": [2.0, 0.0],  # hours
        "usage_30d": [10.0, 0.0],
        "sessions_7d": [2.0, 0.0],
        "sessions_30d": [8.0, 0.0],
        "page_share_7d_featured": [0.6, 0.0],  # a user without entries has no share
        "page_share_7d_explore": [0.3, 0.0],
        "page_share_7d_following": [0.1, 0.0],
        "page_dur_14d_featured": [1.0, 0.0],  # units of 10 minutes
        "page_dur_14d_explore": [0.5, 0.0],
        "page_dur_14d_following": [2.0, 0.0],
        "last_exit_featured": [0.0, 1.0],
        "last_exit_explore": [0.0, 0.0],
        "last_exit_following": [1.0, 0.0],
        "hour": [0.25, 0.75],
        "hour_sin": [1.0, -1.0],  # 6h and 18h
        "hour_cos": [0.0, 0.0],
        "weekend": [0.0, 0.0],
        "entries_today": [0.3, 0.0],
        "live_count": [2.0, 0.0],
        "today_dur_featured": [0.1, 0.0],
        "today_dur_explore": [0.0, 0.0],
        "today_dur_following": [0.2, 0.0],
        "today_usage": [180 / 3600, 0.0],  # hours
        "prev_dropoff": [1.0, 0.0],
    }
    assert set(want) == set(OBS_FEATURES)
    for name, values in want.items():
        np.testing.assert_allclose(obs[:, IDX[name]], values, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("weekday, weekend", [(4, 0.0), (5, 1.0), (6, 1.0), (0, 0.0)])
def test_weekend_flag_from_an_int_weekday(weekday, weekend):
    obs = build_obs(**_inputs(weekday))
    assert obs[:, IDX["weekend"]].tolist() == [weekend, weekend]


def test_weekday_may_differ_per_row():
    obs = build_obs(**_inputs(np.array([6, 3])))
    assert obs[:, IDX["weekend"]].tolist() == [1.0, 0.0]


def test_page_shares_sum_to_one_and_last_exit_is_one_hot():
    rng = np.random.default_rng(0)
    b = 50
    args = _inputs()
    args["user"] = {k: np.resize(v, b) for k, v in args["user"].items()}
    args["stats"] = {k: np.resize(v, (b, *v.shape[1:])) for k, v in args["stats"].items()}
    args["stats"]["page_entries_7d"] = rng.integers(1, 9, (b, 3)).astype(float)
    args.update(
        hour=rng.uniform(0, 24, b),
        entries_today=rng.integers(0, 9, b),
        live_count=rng.integers(0, 5, b),
        today_dur=rng.uniform(0, 900, (b, 3)),
        prev_dropoff=rng.integers(0, 2, b).astype(float),
        last_exit=rng.integers(0, 3, b),
    )
    obs = build_obs(**args)
    share = obs[:, [IDX["page_share_7d_featured"], IDX["page_share_7d_explore"],
                    IDX["page_share_7d_following"]]]  # fmt: skip
    np.testing.assert_allclose(share.sum(1), 1.0, rtol=1e-6)
    last = obs[:, [IDX["last_exit_featured"], IDX["last_exit_explore"], IDX["last_exit_following"]]]
    np.testing.assert_array_equal(last.argmax(1), args["last_exit"])
    np.testing.assert_array_equal(last.sum(1), 1.0)
    # the hour is on the unit circle
    np.testing.assert_allclose(
        obs[:, IDX["hour_sin"]] ** 2 + obs[:, IDX["hour_cos"]] ** 2, 1.0, rtol=1e-6
    )
