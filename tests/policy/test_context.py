"""Decision-time model inputs: the columns a live policy rebuilds from begin_day's features, the
entry's observation and today's history give exactly the training features of the datasets."""

from __future__ import annotations

import numpy as np
import pytest

from glan_ray.data.features import SPECS, as_columns
from glan_ray.data.tables import daily_table, sessions_table
from glan_ray.policy.context import (
    DAY_KEYS,
    completed_session_columns,
    daily_columns,
    session_columns,
)
from glan_ray.schema import SEQ_LEN
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import DayLog, simulate
from glan_ray.sim.interface import IntraDayHistory, Observation

CFG = SimConfig(seed=6, block_size=100)


class Recorder(LoggingPolicy):
    """The logging policy, keeping what a live policy sees: features, observations, history."""

    def __init__(self, cfg: SimConfig) -> None:
        super().__init__(cfg)
        self.features: dict[str, np.ndarray] = {}
        self.steps: list[Observation] = []
        self.history: IntraDayHistory | None = None

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        self.features, self.steps = features, []

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        self.steps.append(obs)
        self.history = history  # one object per day, filled in as sessions complete
        return super().probs(obs, history)


@pytest.fixture(scope="module")
def played() -> tuple[Recorder, DayLog]:
    """The second day of 200 users (so the statistics and the 30-day sequence are not empty)."""
    rec = Recorder(CFG)
    log = list(simulate(CFG, 0, 200, 2, rec))[-1]
    return rec, log


def _features(model: str, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    f = SPECS[model].build(cols)
    return {k: f[k] for k in ("x_cat", "x_num", "seq", "seq_dt", "page") if k in f}


def _assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].shape == want[k].shape, k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_daily_columns_give_the_daily_datasets_features(played):
    rec, log = played
    cols = daily_columns(rec.features, log.weekday)
    assert set(DAY_KEYS) <= set(cols)
    assert (cols["weekday"] == log.weekday).all() and len(cols["weekday"]) == 200
    np.testing.assert_array_equal(cols["seq_dt"][7], np.arange(1, SEQ_LEN + 1))
    table = as_columns(daily_table(log))
    _assert_same(_features("lrtg", cols), _features("lrtg", table))
    _assert_same(_features("isp", cols), _features("isp", table))  # rct rows share these columns
    assert cols["seq_usage"].any() and cols["usage_7d"].any()  # day 2: real history


def test_session_columns_give_the_sessions_datasets_context_features(played):
    rec, log = played
    day = daily_columns(rec.features, log.weekday)
    table = as_columns(sessions_table(log))
    keys = zip(log.sessions["row"], log.sessions["session_idx"], strict=True)
    index = {(r, t): i for i, (r, t) in enumerate(keys)}  # (user row, session) -> table row
    seen = 0
    for ob in rec.steps:
        rows = np.array([index[(r, t)] for r, t in zip(ob.rows, ob.entries_today, strict=True)])
        cols = session_columns(day, ob.rows, ob.obs, ob.hour, ob.entries_today)
        np.testing.assert_array_equal(cols["live_count"], table["live_count"][rows])
        np.testing.assert_allclose(
            cols["today_dur"], table["today_dur"][rows], rtol=1e-5, atol=1e-3
        )
        # KLAN-AM scores every page from these columns
        cols["action"] = np.zeros(len(rows), dtype=np.int64)
        want = {k: v[rows] for k, v in table.items()}
        want["action"] = cols["action"]
        _assert_same(_features("am", cols), _features("am", want))
        seen += len(rows)
    assert seen == len(log.sessions["row"]) > 100  # every session was a decision


def test_completed_session_columns_give_the_hrm_features_of_past_sessions(played):
    rec, log = played
    day = daily_columns(rec.features, log.weekday)
    rows, t = log.sessions["row"], log.sessions["session_idx"].astype(np.int64)
    cols = completed_session_columns(day, rec.history, rows, t)
    table = as_columns(sessions_table(log))
    _assert_same(_features("hrm", cols), _features("hrm", table))
    np.testing.assert_array_equal(cols["action"], table["action"])
    assert cols["action"].dtype == np.int64
