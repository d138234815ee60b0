"""Sessionization, the day context and the statistics of a block of visits, by hand (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from glan_ray import schema
from glan_ray.apps import plpm_spec
from glan_ray.ingest.sessionize import Visits, day_context, overlapping, sessionize
from glan_ray.ingest.tables import Block, build_tables, weekday

DAY = 86_400.0
D0 = 20_000  # a UTC day number (2024-10-04)


def _visits(rows: list[tuple[int, float, int, float, int]]) -> Visits:
    a = np.array(rows, dtype=np.float64)
    return Visits(user_id=a[:, 0].astype(np.int64), t=a[:, 1], page=a[:, 2].astype(np.int64),
                  dwell=a[:, 3], views=a[:, 4].astype(np.int64))  # fmt: skip


def test_a_gap_just_under_the_session_gap_continues_and_one_just_over_splits():
    gap = plpm_spec().session_gap_s  # 1800 s
    t0 = D0 * DAY + 8 * 3600.0
    e0 = t0 + 100.0
    e1 = e0 + gap - 0.5 + 50.0
    e2 = e1 + gap + 20.0
    v = _visits([
        (1, t0, 0, 100.0, 1),
        (1, e0 + gap - 0.5, 1, 50.0, 0),  # starts 1799.5 s after the last ended: same session
        (1, e1 + gap, 2, 20.0, 0),  # exactly the gap after: a new session
        (1, e2 + gap + 0.5, 0, 60.0, 2),  # 1800.5 s after: a new session
    ])  # fmt: skip
    s = sessionize(v, 3, gap, 40.0)
    assert s.n_visits.tolist() == [2, 1, 1]
    assert s.first.tolist() == [0, 2, 3]
    assert s.session_idx.tolist() == [0, 1, 2]
    assert s.hour[0] == pytest.approx(8.0)


def test_landing_exit_dropoff_durations_and_views():
    t0 = D0 * DAY
    v = _visits([(7, t0, 1, 30.0, 1), (7, t0 + 40, 0, 200.0, 5), (7, t0 + 250, 2, 10.0, 0),
                 (7, t0 + 300, 0, 5.0, 1)])  # fmt: skip
    s = sessionize(v, 3, 1800.0, 40.0)
    assert s.action.tolist() == [1]  # explore: the first visit's page
    assert s.exit_page.tolist() == [0]  # featured: the last visit's
    assert s.y_sw.tolist() == [True]  # the landing visit held 30 s < 40 s
    np.testing.assert_allclose(s.dur, [[205.0, 30.0, 10.0]])
    assert s.views.tolist() == [[6, 1, 0]]
    assert s.usage.tolist() == [245.0]
    # a landing visit of exactly tau is no drop-off
    v2 = _visits([(7, t0, 1, 40.0, 0), (7, t0 + 45, 1, 300.0, 0)])
    assert sessionize(v2, 3, 1800.0, 40.0).y_sw.tolist() == [False]


def test_day_context_counts_the_days_earlier_sessions_only():
    t0 = D0 * DAY + 3600.0
    v = _visits([
        (1, t0, 2, 10.0, 0),                 # day 0, session 0: following, a drop-off
        (1, t0 + 7200, 0, 100.0, 0),         # day 0, session 1: featured
        (1, t0 + DAY, 1, 50.0, 0),           # day 1, session 0
        (2, t0, 0, 60.0, 0),                 # user 2
    ])  # fmt: skip
    s = sessionize(v, 3, 1800.0, 40.0)
    ctx = day_context(s)
    np.testing.assert_array_equal(ctx["today_dur"], [[0, 0, 0], [0, 0, 10], [0, 0, 0], [0, 0, 0]])
    assert ctx["prev_dropoff"].tolist() == [0, 1, 0, 0]
    # the page last exited: none before a user's first session (0), then any day before
    assert ctx["last_exit"].tolist() == [0, 2, 0, 0]
    assert s.session_idx.tolist() == [0, 1, 0, 0]


def test_overlapping_visits_are_the_ones_starting_before_an_earlier_one_ended():
    v = _visits([(1, 0.0, 0, 100.0, 0), (1, 50.0, 0, 1000.0, 0), (1, 200.0, 0, 10.0, 0),
                 (1, 2000.0, 0, 1.0, 0), (2, 10.0, 0, 5.0, 0), (2, 15.0, 1, 5.0, 0)])  # fmt: skip
    bad = overlapping(v.user_id, v.t, v.t + v.dwell)
    # 50 < 100 (the first's end); 200 < 1050 (the second's); 15 == 15 is no overlap
    assert bad.tolist() == [False, True, True, False, False, False]


def _block(v: Visits, users: list[int]) -> Block:
    u = np.array(users, dtype=np.int64)
    return Block(
        visits=v,
        propensity=None,
        treatment=None,
        inputs={"live_count": np.zeros(len(v.t))},
        users=u,
        profile={
            "activity": np.zeros(len(u)),
            "age": np.ones(len(u)),
            "region": np.zeros(len(u)),
            "social_degree": np.full(len(u), 2.0),
        },
    )


def test_a_seven_day_statistic_and_the_sequences_by_hand():
    """User 1 uses the app on days 0, 3 and 8 of a 10-day input: on day 9, the 7-day window
    (days 2..8) holds days 3 and 8."""
    spec = plpm_spec()
    rows = [(1, (D0 + d) * DAY + 600.0, p, dur, 0)
            for d, p, dur in ((0, 0, 700.0), (3, 1, 140.0), (8, 2, 70.0))]  # fmt: skip
    rows.append((2, (D0 + 9) * DAY, 0, 5.0, 0))  # another user on the last day
    tables = build_tables(spec, _block(_visits(rows), [1, 2]), D0, 10)
    daily = tables["daily"].to_pylist()
    assert len(daily) == 2 * 10  # every user on every day of the input
    row = next(r for r in daily if r["user_id"] == 1 and r["day"] == D0 + 9)
    assert row["usage_7d"] == pytest.approx((140 + 70) / 7)
    assert row["sessions_7d"] == pytest.approx(2 / 7)
    assert row["usage_30d"] == pytest.approx((700 + 140 + 70) / 30)  # days before the input: 0
    assert row["page_dur_7d"] == pytest.approx([0, 140 / 7, 70 / 7])
    assert row["page_entries_14d"] == pytest.approx([1 / 14, 1 / 14, 1 / 14])
    assert row["seq_usage"][:9] == pytest.approx([70, 0, 0, 0, 0, 140, 0, 0, 700])
    assert row["seq_sessions"][9:] == [0.0] * 21
    assert row["weekday"] == weekday(np.array([D0 + 9]))[0]
    assert (row["is_active"], row["y_se"], row["y_wt"]) == (False, 0, 0.0)
    day8 = next(r for r in daily if r["user_id"] == 1 and r["day"] == D0 + 8)
    assert (day8["is_active"], day8["y_se"], day8["y_wt"]) == (True, 1, 70.0)
    # the session of day 8 sees the same statistics as its daily row, in obs too
    sess = [r for r in tables["sessions"].to_pylist() if r["user_id"] == 1]
    assert [r["day"] for r in sess] == [D0, D0 + 3, D0 + 8]
    names = spec.obs_features
    obs = sess[2]["obs"]
    assert obs[names.index("usage_7d")] == pytest.approx(140 / 7 / 3600)
    assert obs[names.index("page_share_7d_explore")] == pytest.approx(1.0)
    assert obs[names.index("last_exit_explore")] == 1.0  # day 3's session exited on explore
    assert sess[2]["y_sw"] == 0 and sess[2]["propensity"] == pytest.approx(1 / 3)


def test_tables_conform_line_up_and_have_the_simulators_order():
    spec = plpm_spec()
    rng = np.random.default_rng(0)
    rows = []
    for u in (3, 5, 9):
        t = (D0 + rng.integers(0, 3)) * DAY + 3600.0
        for _ in range(12):
            dwell = float(rng.exponential(60))
            rows.append((u, t, int(rng.integers(0, 3)), dwell, int(rng.integers(0, 3))))
            t += dwell + float(rng.choice([5.0, 4000.0, 30000.0]))
    v = _visits(sorted(rows))
    tables = build_tables(spec, _block(v, [3, 5, 9]), D0, 6)
    for name, table in tables.items():
        assert table.schema.equals(schema.SCHEMAS[name]), name
    sess, traj, trans = tables["sessions"], tables["trajectories"], tables["transitions"]
    keys = list(zip(sess.column("day").to_pylist(), sess.column("user_id").to_pylist(),
                    sess.column("session_idx").to_pylist(), strict=True))  # fmt: skip
    assert keys == sorted(keys)
    n = np.array(traj.column("n_steps").to_pylist())
    assert n.sum() == sess.num_rows == trans.num_rows
    for key in ("user_id", "day"):
        assert np.repeat(traj.column(key).to_numpy(), n).tolist() == sess.column(key).to_pylist()
    assert traj.column("y_se").to_pylist() == n.tolist()
    done = trans.column("done").to_pylist()
    assert sum(done) == traj.num_rows
    obs, nxt = trans.column("obs").to_pylist(), trans.column("next_obs").to_pylist()
    for i in range(len(done)):
        assert nxt[i] == (obs[i] if done[i] else obs[i + 1])
    assert sum(sess.column("usage_time").to_pylist()) == pytest.approx(sum(r[3] for r in rows))
