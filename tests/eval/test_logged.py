"""Off-policy evaluation on logged sessions (glan_ray.eval.logged): the estimators' values by
hand, the logged days' order and their daily rows, and the report's files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glan_ray.apps import plpm_spec
from glan_ray.eval.logged import Logged, LoggedOPEConfig, evaluate_policy, read_logged, write_ope
from glan_ray.eval.ope import FQEConfig

FAST = LoggedOPEConfig(bootstrap=100, fqe=FQEConfig(iterations=2, steps_per_iteration=20))


def _log(n_users: int = 40, per_day: int = 3, seed: int = 0) -> Logged:
    """``n_users`` users, one day each, ``per_day`` sessions; page 0 logged with propensity 0.5,
    pages 1 and 2 with 0.25; the reward is 100 s on page 2, else 10 s."""
    rng = np.random.default_rng(seed)
    n = n_users * per_day
    action = rng.choice(3, size=n, p=[0.5, 0.25, 0.25])
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    sessions = {"user_id": np.repeat(np.arange(n_users), per_day), "action": action,
                "propensity": np.where(action == 0, 0.5, 0.25), "obs": obs}  # fmt: skip
    reward = np.where(action == 2, 100.0, 10.0)
    return Logged(sessions, {}, np.repeat(np.arange(n_users), per_day),
                  np.tile(np.arange(per_day), n_users), reward, False)  # fmt: skip


def test_ips_and_snips_by_hand():
    log = _log()
    a, r = log.sessions["action"], log.reward
    always2 = np.tile([0.0, 0.0, 1.0], (len(a), 1))
    v = evaluate_policy("page:2", always2, log, FAST, log.sessions["user_id"])
    w = (a == 2) / 0.25
    assert v.ips.value == pytest.approx(np.mean(w * r))
    assert v.snips.value == pytest.approx(100.0)  # every supported row earned 100 s
    assert v.agree == pytest.approx(np.mean(a == 2))
    assert v.ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert v.ips.lo <= v.ips.value <= v.ips.hi and v.ips.lo < v.ips.hi  # a real interval
    assert v.snips.lo == pytest.approx(100.0) and v.snips.hi == pytest.approx(100.0)


def test_the_logging_policy_is_valued_at_the_logged_mean():
    log = _log()
    a, mu = log.sessions["action"], log.sessions["propensity"]
    pi = np.repeat(((1 - mu) / 2)[:, None], 3, axis=1)
    pi[np.arange(len(a)), a] = mu
    v = evaluate_policy("logging", pi, log, FAST, log.sessions["user_id"])
    assert v.ips.value == pytest.approx(log.reward.mean())  # w = 1 on every row
    assert v.snips.value == pytest.approx(log.reward.mean())
    assert v.ess == pytest.approx(len(a))


def test_a_zero_propensity_is_refused_naming_the_column():
    log = _log()
    log.sessions["propensity"][0] = 0.0
    with pytest.raises(ValueError, match="column 'propensity'"):
        evaluate_policy("x", np.full((len(log.t), 3), 1 / 3), log, FAST, log.sessions["user_id"])


def _write(tmp_path, name: str, table: pa.Table) -> None:
    (tmp_path / name).mkdir()
    pq.write_table(table, tmp_path / name / "part-0.parquet")


def test_read_logged_orders_sessions_by_day_and_joins_their_daily_row(tmp_path):
    sessions = pa.table({"user_id": [2, 1, 2, 1], "day": [5, 5, 5, 6], "session_idx": [1, 0, 0, 0],
                         "usage_time": [30.0, 10.0, 20.0, 40.0]})  # fmt: skip
    daily = pa.table({"user_id": [1, 1, 2], "day": [5, 6, 5], "usage_7d": [1.0, 2.0, 3.0]})
    _write(tmp_path, "sessions", sessions)
    _write(tmp_path, "daily", daily)
    log = read_logged(str(tmp_path), plpm_spec(), max_sessions=100)
    assert log.sessions["user_id"].tolist() == [1, 1, 2, 2]
    assert log.reward.tolist() == [10.0, 40.0, 20.0, 30.0]  # usage_time: the spec's reward
    assert log.episode.tolist() == [0, 1, 2, 2] and log.t.tolist() == [0, 0, 0, 1]
    assert log.daily["usage_7d"].tolist() == [1.0, 2.0, 3.0, 3.0]
    assert not log.truncated
    pq.write_table(daily.slice(0, 2), tmp_path / "daily" / "part-0.parquet")
    with pytest.raises(ValueError, match=r"sessions of user-day \(2, 5\) have no 'daily' row"):
        read_logged(str(tmp_path), plpm_spec(), max_sessions=100)


def test_write_ope_writes_the_table_and_the_json(tmp_path):
    log = _log()
    v = evaluate_policy("page:2", np.tile([0.0, 0.0, 1.0], (len(log.t), 1)), log, FAST,
                        log.sessions["user_id"])  # fmt: skip
    md = write_ope(str(tmp_path), [v], log, FAST)
    with open(md) as f:
        text = f.read()
    assert "| page:2 |" in text and "120 logged sessions of 40 user-days, 40 users" in text
    with open(tmp_path / "ope.json") as f:
        data = json.load(f)
    assert data["policies"][0]["snips"]["value"] == pytest.approx(100.0)
