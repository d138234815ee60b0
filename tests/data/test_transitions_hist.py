"""The ``transitions_hist`` dataset: its rows equal ``features_before_each`` by hand on a tiny
table; the features the simulator's history gives a policy at each entry equal the training
rows' (train/serve consistency); its parts are written next to ``transitions`` on Ray."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from glan_ray.data.history import LAST_EXIT_COLS, features_before_each, history_features
from glan_ray.data.parts import read_part
from glan_ray.data.tables import day_tables
from glan_ray.data.transitions_hist import exit_pages, with_history, write_transitions_hist
from glan_ray.schema import HIST_DIM, OBS_DIM, DatasetValidationError, schema_for
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate
from glan_ray.sim.interface import IntraDayHistory, Observation

# Two user-days: user 1 with 3 sessions, user 2 with 2 (its first exit page unknown).
USER = np.array([1, 1, 1, 2, 2])
IDX = np.array([0, 1, 2, 0, 1])
ACTION = np.array([0, 0, 1, 2, 0])
DUR = np.array([[700.0, 5, 0], [30, 0, 0], [0, 90, 0], [0, 0, 40], [900, 0, 0]])
Y_SW = np.array([0, 1, 0, 0, 1])
PAGE_SEQ = [[0, 1], [0], [1, 2, 0], None, [0]]
EXIT = np.array([1, 0, 0, -1, 0])
# The last exit page each session's observation shows (yesterday's for a first session).
LAST_EXIT = np.array([2, 1, 0, 0, 0])
OBS = np.zeros((5, OBS_DIM), np.float32)
OBS[np.arange(5), LAST_EXIT_COLS[0] + LAST_EXIT] = 1.0


def _sessions(order: np.ndarray) -> pa.Table:
    return pa.table({
        "user_id": pa.array(USER[order], pa.int64()),
        "day": pa.array(np.zeros(len(order)), pa.int32()),
        "session_idx": pa.array(IDX[order], pa.int16()),
        "action": pa.array(ACTION[order], pa.int8()),
        "dur": pa.array([list(DUR[i]) for i in order], pa.list_(pa.float32(), 3)),
        "y_sw": pa.array(Y_SW[order], pa.int8()),
        "page_seq": pa.array([PAGE_SEQ[i] for i in order], pa.list_(pa.int8())),
        "obs": pa.FixedSizeListArray.from_arrays(pa.array(OBS[order].ravel()), OBS_DIM),
    })  # fmt: skip


def _transitions(order: np.ndarray) -> pa.Table:
    n = len(order)
    obs = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(n * OBS_DIM, np.float32)), OBS_DIM)
    cols = {
        "user_id": pa.array(USER[order], pa.int64()),
        "day": pa.array(np.zeros(n), pa.int32()),
        "weekday": pa.array(np.zeros(n), pa.int8()),
        "session_idx": pa.array(IDX[order], pa.int16()),
        "obs": obs,
        "action": pa.array(ACTION[order], pa.int8()),
        "reward": pa.array(np.ones(n), pa.float32()),
        "next_obs": obs,
        "done": pa.array(IDX[order] == np.array([2, 2, 2, 1, 1])[order]),
        "hour": pa.array(np.full(n, 9.0), pa.float32()),
        "entries_today": pa.array(IDX[order], pa.int16()),
        "propensity": pa.array(np.ones(n), pa.float32()),
    }
    return pa.table(cols, schema=schema_for("transitions"))


def _hist(table: pa.Table, column: str) -> np.ndarray:
    return np.asarray(table.column(column).combine_chunks().flatten()).reshape(-1, HIST_DIM)


def test_exit_page_is_the_last_of_page_seq_and_minus_one_where_unknown():
    assert exit_pages(_sessions(np.arange(5)).column("page_seq")).tolist() == EXIT.tolist()
    sliced = pa.array(PAGE_SEQ, pa.list_(pa.int8())).slice(2, 3)
    assert exit_pages(sliced).tolist() == EXIT[2:].tolist()


def test_rows_equal_features_before_each_by_hand():
    # sessions shuffled and transitions in another order: the join is by key, not position
    order = np.array([3, 0, 4, 1, 2])
    out = with_history(_sessions(np.array([4, 2, 0, 3, 1])), _transitions(order))
    group = (USER - 1)[order]
    by_hand = features_before_each(IDX[order], group, ACTION[order], DUR[order], Y_SW[order],
                                   EXIT[order], OBS[order])  # fmt: skip
    np.testing.assert_array_equal(_hist(out, "hist"), by_hand)
    # next_hist of session t = the features before session t + 1 (after the last, when done)
    g = USER - 1
    a = np.full((2, 4), -1)
    a[g, IDX] = ACTION
    d = np.zeros((2, 4, 3))
    d[g, IDX] = DUR
    y = np.zeros((2, 4))
    y[g, IDX] = Y_SW
    e = np.full((2, 4), -1)
    e[g, IDX] = EXIT
    o = np.zeros((2, 4, OBS_DIM), np.float32)
    o[g, IDX] = OBS
    gi = g[order]
    nxt = history_features(IDX[order] + 1, a[gi], d[gi], y[gi], e[gi], o[gi])
    np.testing.assert_array_equal(_hist(out, "next_hist"), nxt)
    # by hand, user 1's third session: one drop (its second session), the last landing on
    # Featured, one Featured binge (700 s > 600 s) among the last three sessions
    third = _hist(out, "hist")[list(order).index(2)]
    assert third[0] == pytest.approx(1 / 5)  # drops_today
    assert third[6:9].tolist() == [1.0, 0.0, 0.0]  # last_landing_*
    # resumes: session 0 landed on Featured, yesterday's exit was Following (no); session 1
    # landed on Featured after exiting Explore (no): none, so no contrast either
    assert third[12] == 0.0 and third[13] == 0.0 and third[14] == 0.0
    assert third[15] == pytest.approx(1 / 5)  # binges_recent
    # user 2 after both sessions: the second landed on Featured, the page its observation said
    # it last exited (a resume, 900 s); the first on Following after Featured (a switch, 40 s)
    through = _hist(out, "next_hist")[list(order).index(4)]
    assert through[12] == pytest.approx(1 / 5)  # resumes_today
    assert through[13] == 1.0  # last_resumed
    assert through[14] == pytest.approx((np.log1p(900) - np.log1p(40)) / 7, rel=1e-5)
    np.testing.assert_array_equal(out.column("user_id").to_numpy(), USER[order])


def test_a_transition_without_its_session_is_refused():
    with pytest.raises(DatasetValidationError, match="1 rows have no session"):
        with_history(_sessions(np.array([0, 1, 3, 4])), _transitions(np.arange(5)))
    gap = _sessions(np.array([0, 2, 3, 4]))  # user 1 lacks session 1
    with pytest.raises(DatasetValidationError, match=r"'session_idx' must run 0\.\.n-1"):
        with_history(gap, _transitions(np.array([0, 2, 3, 4])))


class _Recorder(LoggingPolicy):
    """The logging policy, recording at each entry the history features a policy computes."""

    def __init__(self, cfg: SimConfig) -> None:
        super().__init__(cfg)
        self.seen: dict[tuple[int, int, int], np.ndarray] = {}
        self.day = -1

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        super().begin_day(day, features)
        self.day = day

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        r = obs.rows
        h = history_features(history.length[r], history.action[r], history.dur[r],
                             history.y_sw[r], history.exit_page[r], history.obs[r])  # fmt: skip
        for u, t, f in zip(obs.user_id, history.length[r], h, strict=True):
            self.seen[(self.day, int(u), int(t))] = f
        return super().probs(obs, history)


def test_simulator_history_gives_the_training_features():
    cfg = SimConfig(seed=5, block_size=60)
    policy = _Recorder(cfg)
    tables: dict[str, list[pa.Table]] = {}
    for log in simulate(cfg, 0, 60, 2, policy):
        for name, t in day_tables(log, rct=False).items():
            tables.setdefault(name, []).append(t)
    sessions, transitions = (pa.concat_tables(tables[n]) for n in ("sessions", "transitions"))
    out = with_history(sessions, transitions)
    keys = zip(out.column("day").to_pylist(), out.column("user_id").to_pylist(),
               out.column("session_idx").to_pylist(), strict=True)  # fmt: skip
    live = np.stack([policy.seen[k] for k in keys])
    assert len(live) > 100 and np.abs(live[:, 12]).sum() > 0  # some resumes
    np.testing.assert_allclose(_hist(out, "hist"), live, rtol=1e-6, atol=1e-6)


def test_written_next_to_transitions_part_by_part(ray_session, tmp_path):
    from glan_ray.data.generate import GenerateOptions, generate
    from glan_ray.data.read import read_dataset

    data = str(tmp_path / "data")
    generate(SimConfig(seed=4, block_size=50), GenerateOptions(users=100, days=2), data)
    out = write_transitions_hist(data)
    ds = read_dataset(data, "transitions_hist")
    assert ds.count() == read_dataset(data, "transitions").count()
    first = sorted((tmp_path / "data" / "transitions_hist").glob("*/*.parquet"))[0]
    assert read_part(str(first)).column_names[-2:] == ["hist", "next_hist"]
    assert write_transitions_hist(data) == out  # a rerun replaces it
