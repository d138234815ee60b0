"""SimSummary: the counts of a simulated day by hand, their sum over days, the printed table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from glan_ray.data.summary import SimSummary
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import DayLog, simulate
from glan_ray.sim.users import make_users

CFG = SimConfig(seed=2, block_size=100)


def _log(sessions: dict[str, np.ndarray] | None = None) -> DayLog:
    """4 users: three active, with 3, 1 and 2 sessions; 1,080 s of usage in all."""
    if sessions is None:
        sessions = {
            "action": np.array([0, 0, 2, 1, 0, 2], dtype=np.int8),
            "y_sw": np.array([True, False, False, True, False, False]),
        }
    return DayLog(
        day=0,
        weekday=0,
        users=make_users(CFG, 0, 4),
        stats={},
        seq_sessions=np.zeros((4, 30)),
        seq_usage=np.zeros((4, 30)),
        active=np.array([True, True, False, True]),
        y_wt=np.array([600.0, 180.0, 0.0, 300.0]),
        y_se=np.array([3, 1, 0, 2]),
        sessions=sessions,
    )


def test_of_day_by_hand():
    s = SimSummary.of_day(_log(), {"daily": 4, "sessions": 6})
    assert s.rows == {"daily": 4, "sessions": 6}
    assert (s.user_days, s.active_user_days, s.multi_session_user_days) == (4, 3, 2)
    assert (s.sessions, s.dropoffs) == (6, 2)
    assert s.usage_time == pytest.approx(1080.0)
    assert s.assigns == [3, 1, 2]
    assert s.drop_off_ratio == pytest.approx(2 / 6)
    assert s.sessions_per_active_user_day == pytest.approx(2.0)
    assert s.assign_ratios == pytest.approx({"featured": 0.5, "explore": 1 / 6, "following": 1 / 3})
    assert sum(s.assign_ratios.values()) == pytest.approx(1.0)


def test_a_day_without_sessions_gives_zeros_not_errors():
    log = _log(sessions={})
    log.active[:] = False
    log.y_se[:] = 0
    log.y_wt[:] = 0.0
    s = SimSummary.of_day(log, {})
    assert (s.sessions, s.dropoffs, s.assigns) == (0, 0, [0, 0, 0])
    assert s.drop_off_ratio == 0.0 and s.sessions_per_active_user_day == 0.0
    assert s.assign_ratios == {"featured": 0.0, "explore": 0.0, "following": 0.0}
    assert "0 active" in s.format()


def test_sums_add_every_count_and_merge_the_row_counts():
    a = SimSummary.of_day(_log(), {"daily": 4, "sessions": 6})
    b = SimSummary.of_day(_log(), {"sessions": 6, "transitions": 6})
    c = a + b
    assert c.rows == {"daily": 4, "sessions": 12, "transitions": 6}
    assert list(c.rows) == ["daily", "sessions", "transitions"]  # first seen first
    assert (c.user_days, c.active_user_days, c.sessions, c.dropoffs) == (8, 6, 12, 4)
    assert c.assigns == [6, 2, 4] and c.usage_time == pytest.approx(2160.0)
    # ratios of the sum are ratios of the totals
    assert c.drop_off_ratio == pytest.approx(a.drop_off_ratio)
    # the empty summary is the identity (generate starts from it)
    assert (SimSummary() + a).to_dict() == a.to_dict() == (a + SimSummary()).to_dict()
    assert a.rows == {"daily": 4, "sessions": 6}  # operands are not mutated


def test_summed_over_simulated_days_it_counts_every_session():
    logs = list(simulate(CFG, 0, 100, 2, LoggingPolicy(CFG)))
    total = SimSummary()
    for log in logs:
        total = total + SimSummary.of_day(log, {"sessions": len(log.sessions["row"])})
    assert total.user_days == 200
    assert total.sessions == sum(int(log.y_se.sum()) for log in logs) == total.rows["sessions"]
    assert sum(total.assigns) == total.sessions
    assert total.dropoffs == sum(int(log.sessions["y_sw"].sum()) for log in logs)
    assert total.active_user_days == sum(int(log.active.sum()) for log in logs)
    assert total.usage_time == pytest.approx(sum(log.y_wt.sum() for log in logs))


def test_to_dict_is_json_and_carries_the_ratios():
    d = SimSummary.of_day(_log(), {"daily": 4}).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["drop_off_ratio"] == pytest.approx(1 / 3)
    assert d["sessions_per_active_user_day"] == pytest.approx(2.0)
    assert d["assign_ratios"]["featured"] == pytest.approx(0.5)
    assert d["assigns"] == [3, 1, 2]


def test_format_by_hand():
    text = SimSummary.of_day(_log(), {"daily": 4, "sessions": 12_345}).format()
    lines = text.splitlines()
    assert lines[0].split() == ["dataset", "rows"]
    assert lines[1].split() == ["daily", "4"] and lines[2].split() == ["sessions", "12,345"]
    assert "user-days            4 (3 active)" in lines
    assert "sessions/user-day    2.00 (active days; 67% with >1 session)" in lines
    assert "drop-off ratio (PDR) 0.333" in lines
    assert "page assign ratios   featured 50.0%, explore 16.7%, following 33.3%" in lines
    assert "usage time/user-day  4.5 min" in lines  # 1,080 s over 4 user-days
