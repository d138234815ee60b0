"""The simulator's sessions written as raw events (sim.events, data.sim_events): visits back to
back in page_seq order, the landing visit, the per-session columns on every visit, and the
spacing of sessions that start too soon after the previous one, by hand."""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glan_ray.data.parts import write_part
from glan_ray.data.sim_events import export_run
from glan_ray.data.tables import day_tables
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate
from glan_ray.sim.events import (
    MONDAY,
    EventExport,
    LastEnds,
    daylog_sessions,
    epoch_day,
    session_events,
    table_sessions,
)

E = MONDAY * 86_400.0


def _cols(**over):
    """Two sessions of user 7 on day 0 at 01:00 and 01:01:12, and one of user 9."""
    cols = {
        "user_id": np.array([7, 7, 9]),
        "day": np.array([0, 0, 0]),
        "session_idx": np.array([0, 1, 0]),
        "hour": np.array([1.0, 1.02, 5.0]),
        "propensity": np.array([0.5, 0.25, 1.0]),
        "page_seq": np.array([[1, 0, -1], [2, -1, -1], [0, 2, 1]]),
        "dur": np.array([[30.0, 100.0, 0.0], [0.0, 0.0, 12.0], [5.0, 6.0, 7.0]]),
        "views": np.array([[1, 3, 0], [0, 0, 2], [0, 1, 0]]),
        "live_count": np.array([4, 0, 1]),
        "treatment": np.array([-1, -1, 2]),
    }
    return cols | over


def test_visits_follow_page_seq_back_to_back_and_a_too_early_session_is_delayed():
    events, shifts, s = session_events(_cols(), EventExport(gap_s=10.0))
    t = events.to_pydict()
    assert t["user_id"] == [7, 7, 7, 9, 9, 9]
    assert t["page"] == ["explore", "featured", "following", "featured", "following", "explore"]
    assert t["dwell_s"] == [100.0, 30.0, 12.0, 5.0, 7.0, 6.0]
    assert t["views"] == [3, 1, 2, 0, 0, 1]
    assert t["landing"] == [True, False, True, True, False, False]
    assert t["propensity"] == [0.5, 0.5, 0.25, 1.0, 1.0, 1.0]  # the landing's, on each visit
    assert t["live_count"] == [4, 4, 0, 1, 1, 1]
    assert t["treatment"] == [None, None, None, 2, 2, 2]  # -1: not a randomised user-day
    # user 7: 01:00 + 100 s of explore, then featured; session 1 at 01:01:12 (3672 s) starts
    # before session 0 ended (3730 s): delayed to 3730 + 10
    assert np.allclose(np.array(t["ts"]) - E, [3600, 3700, 3740, 18000, 18005, 18012])
    assert shifts.to_pydict() == {"user_id": [7], "day": [0], "session_idx": [1],
                                  "shift_s": [pytest.approx(68.0)],
                                  "next_day": [False]}  # fmt: skip
    assert (s.sessions, s.visits, s.shifted, s.pairs) == (3, 6, 1, 1)
    assert s.max_shift_s == pytest.approx(68.0)
    assert s.closer_than == {"0": 1, "10": 1, "60": 1, "300": 1, "1800": 1}


def test_the_last_end_carries_to_the_next_call_and_past_midnight():
    last = LastEnds()
    day0 = _cols(user_id=np.array([7]), day=np.array([0]), session_idx=np.array([0]),
                 hour=np.array([23.99]), propensity=np.array([1.0]),
                 page_seq=np.array([[0, -1, -1]]), dur=np.array([[100.0, 0, 0]]),
                 views=np.zeros((1, 3)), live_count=np.array([0]),
                 treatment=np.array([-1]))  # fmt: skip
    session_events(day0, EventExport(gap_s=60.0), last)
    end0 = 23.99 * 3600 + 100.0  # 86464 s: after midnight
    day1 = day0 | {"day": np.array([1]), "hour": np.array([0.01])}  # 00:00:36
    events, shifts, s = session_events(day1, EventExport(gap_s=60.0), last)
    assert events["ts"][0].as_py() - E == pytest.approx(end0 + 60.0)
    assert shifts["shift_s"][0].as_py() == pytest.approx(end0 + 60.0 - 86_400 - 36.0)
    assert s.closer_than["0"] == 1 and s.shifted_to_next_day == 0
    # a session delayed past midnight is counted and flagged
    late = day0 | {"user_id": np.array([7, 7]), "day": np.array([2, 2]),
                   "session_idx": np.array([0, 1]), "hour": np.array([23.9, 23.95]),
                   "propensity": np.ones(2), "page_seq": np.array([[0, -1, -1]] * 2),
                   "dur": np.array([[900.0, 0, 0]] * 2), "views": np.zeros((2, 3)),
                   "live_count": np.zeros(2, int), "treatment": np.array([-1, -1])}  # fmt: skip
    _, shifts, s = session_events(late, EventExport(gap_s=60.0), last)
    assert s.shifted_to_next_day == 1 and shifts["next_day"].to_pylist() == [True]


def test_unsorted_sessions_are_refused_and_the_epoch_day_has_the_start_weekday():
    cols = _cols(user_id=np.array([9, 7, 7]))
    with pytest.raises(ValueError, match="sorted by user_id, day, session_idx"):
        session_events(cols, EventExport())
    with pytest.raises(ValueError, match="session_idx: 1 session"):
        session_events(_cols(session_idx=np.array([0, 2, 0])), EventExport())
    assert datetime.date(1970, 1, 1) + datetime.timedelta(days=epoch_day(0)) == datetime.date(
        2026, 1, 5)  # fmt: skip
    assert (datetime.date(1970, 1, 1) + datetime.timedelta(days=epoch_day(5))).weekday() == 5
    with pytest.raises(ValueError, match="gap_s"):
        EventExport(gap_s=0.0)


@pytest.fixture(scope="module")
def rct_days():
    cfg = SimConfig(seed=3, block_size=40)
    return list(simulate(cfg, 0, 40, 2, LoggingPolicy(cfg), rct=True))


def test_a_daylog_and_its_written_sessions_give_the_same_events(rct_days):
    tables = {n: pa.concat_tables([day_tables(log, True)[n] for log in rct_days])
              for n in ("sessions", "rct")}  # fmt: skip
    opts = EventExport(gap_s=1.0)
    a, _, sa = session_events(table_sessions(tables["sessions"], tables["rct"]), opts)
    last = LastEnds()
    b = pa.concat_tables([session_events(daylog_sessions(log), opts, last)[0] for log in rct_days])
    keys = [("user_id", "ascending"), ("ts", "ascending")]
    a, b = a.sort_by(keys), b.sort_by(keys)
    switches = int(tables["sessions"]["n_switches"].to_numpy().astype(int).sum())
    assert a.num_rows == b.num_rows == sa.visits == switches + sa.sessions
    for c in ("user_id", "page", "views", "landing", "live_count", "treatment"):
        assert a[c].to_pylist() == b[c].to_pylist(), c
    # the datasets store hour and dur as float32
    assert np.allclose(a["ts"].to_numpy(), b["ts"].to_numpy(), atol=0.01, rtol=0)
    assert np.allclose(a["dwell_s"].to_numpy(), b["dwell_s"].to_numpy(), rtol=1e-6)


def test_export_run_writes_events_users_and_shifts(rct_days, tmp_path):
    data = tmp_path / "data"
    for name in ("daily", "sessions", "rct"):
        for i, log in enumerate(rct_days):
            path = data / name / f"part-{i:05d}-00000" / "x.parquet"
            write_part(day_tables(log, True)[name], str(path))
    out = tmp_path / "events"
    s = export_run(str(data), str(out), EventExport(gap_s=1.0))
    events = pq.read_table(out / "events")
    assert events.num_rows == s.visits
    assert s.sessions == sum(len(lg.sessions["row"]) for lg in rct_days)
    assert events["treatment"].null_count == 0  # an RCT run randomises every user-day
    users = pq.read_table(out / "users.parquet")
    assert users.column_names == ["user_id", "age", "region", "activity", "social_degree"]
    assert users["user_id"].to_pylist() == list(range(40))
    assert pq.read_table(out / "shifts.parquet").num_rows == s.shifted
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_run(str(data), str(out), EventExport(gap_s=1.0))
