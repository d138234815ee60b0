"""TransitionsPreLearner: one transitions row per session -> the discrete-CQL train batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from ray.rllib.core.columns import Columns

from glan_ray.rllib.cql.cql import DiscreteCQLConfig
from glan_ray.rllib.cql.prelearner import ENTRIES, HOUR, TransitionsPreLearner, _matrix
from glan_ray.rllib.offline import obs_space
from glan_ray.schema import OBS_DIM, DatasetValidationError

PREFIX = "default_policy/"


def _pre(**training) -> TransitionsPreLearner:
    cfg = DiscreteCQLConfig().offline_data(input_="/data/transitions").training(**training)
    return TransitionsPreLearner(config=cfg, spaces=(obs_space(), None))


def _flat(t: pa.Table, name: str) -> np.ndarray:
    return np.array(t.column(name).to_pylist(), dtype=np.float32)


def test_matrix_reshapes_fixed_size_lists_over_chunks():
    rows = [[float(i * OBS_DIM + j) for j in range(OBS_DIM)] for i in range(3)]
    typ = pa.list_(pa.float32(), OBS_DIM)
    col = pa.chunked_array([pa.array(rows[:2], typ), pa.array(rows[2:], typ)])
    m = _matrix(col)
    assert m.shape == (3, OBS_DIM) and m.dtype == np.float32
    np.testing.assert_array_equal(m, np.arange(3 * OBS_DIM).reshape(3, OBS_DIM))


def test_batch_columns_shapes_and_values(transitions):
    n = transitions.num_rows
    out = _pre(reward_scale=0.5)(transitions)
    keys = [Columns.OBS, Columns.ACTIONS, Columns.REWARDS, Columns.NEXT_OBS, Columns.TERMINATEDS,
            HOUR, ENTRIES]  # fmt: skip
    assert set(out) == {PREFIX + k for k in keys}
    b = {k: out[PREFIX + k] for k in keys}
    assert b[Columns.OBS].shape == b[Columns.NEXT_OBS].shape == (n, OBS_DIM)
    np.testing.assert_array_equal(b[Columns.OBS], _flat(transitions, "obs"))
    np.testing.assert_array_equal(b[Columns.NEXT_OBS], _flat(transitions, "next_obs"))
    assert b[Columns.ACTIONS].dtype == np.int64 and b[ENTRIES].dtype == np.int64
    np.testing.assert_array_equal(b[Columns.ACTIONS], transitions.column("action").to_numpy())
    # rewards in seconds, times reward_scale
    reward = transitions.column("reward").to_numpy()
    np.testing.assert_allclose(b[Columns.REWARDS], 0.5 * reward, rtol=1e-6)
    assert b[Columns.REWARDS].dtype == np.float32
    # terminateds: 1.0 on the last session of each user-day, as float for the TD target
    done = np.array(transitions.column("done").to_pylist())
    np.testing.assert_array_equal(b[Columns.TERMINATEDS], done.astype(np.float32))
    assert 0 < b[Columns.TERMINATEDS].sum() < n
    np.testing.assert_array_equal(b[HOUR], transitions.column("hour").to_numpy())
    np.testing.assert_array_equal(b[ENTRIES], transitions.column("entries_today").to_numpy())


def test_default_reward_scale_is_minutes(transitions):
    out = _pre()(transitions.slice(0, 10))
    np.testing.assert_allclose(
        out[PREFIX + Columns.REWARDS], transitions.column("reward").to_numpy()[:10] / 60, rtol=1e-6
    )


def test_next_obs_is_the_users_next_session_within_the_day(transitions):
    """The dataset's invariant the TD target relies on, read back through the pre-learner."""
    b = _pre()(transitions)
    obs, nxt = b[PREFIX + Columns.OBS], b[PREFIX + Columns.NEXT_OBS]
    done = b[PREFIX + Columns.TERMINATEDS].astype(bool)
    cont = np.flatnonzero(~done)
    np.testing.assert_array_equal(nxt[cont], obs[cont + 1])
    same_user = transitions.column("user_id").to_numpy()
    assert (same_user[cont] == same_user[cont + 1]).all()


def test_bad_rows_fail_with_the_column_name(transitions):
    a = transitions.column("action").to_numpy().astype(np.int8)
    a[0] = 3  # not a page
    bad = transitions.set_column(transitions.schema.get_field_index("action"), "action",
                                 pa.array(a, pa.int8()))  # fmt: skip
    with pytest.raises(
        DatasetValidationError, match=r"column 'action': has values outside \[0, 2\] \(1 rows\)"
    ):
        _pre()(bad)
    with pytest.raises(DatasetValidationError, match="column 'entries_today': missing"):
        _pre()(transitions.drop_columns(["entries_today"]))


def test_history_states_are_obs_then_the_history_features(rl_tables):
    from glan_ray.data.transitions_hist import with_history
    from glan_ray.rllib.cql.prelearner import TransitionsHistPreLearner
    from glan_ray.schema import HIST_DIM

    table = with_history(rl_tables["sessions"], rl_tables["transitions"])
    cfg = DiscreteCQLConfig().offline_data(input_="/d/transitions_hist").training(history=True)
    assert cfg.prelearner_class is TransitionsHistPreLearner
    assert cfg.observation_space.shape == (OBS_DIM + HIST_DIM,)
    out = cfg.prelearner_class(config=cfg, spaces=(cfg.observation_space, None))(table)
    obs, nxt = out[PREFIX + Columns.OBS], out[PREFIX + Columns.NEXT_OBS]
    assert obs.shape == nxt.shape == (table.num_rows, OBS_DIM + HIST_DIM)
    np.testing.assert_array_equal(obs[:, :OBS_DIM], _flat(table, "obs"))
    np.testing.assert_array_equal(obs[:, OBS_DIM:], _flat(table, "hist"))
    np.testing.assert_array_equal(nxt[:, OBS_DIM:], _flat(table, "next_hist"))
    # the plain transitions lack the history columns: refused naming them
    with pytest.raises(DatasetValidationError, match="column 'hist': missing"):
        cfg.prelearner_class(config=cfg, spaces=(None, None))(rl_tables["transitions"])
    back = cfg.training(history=False)
    assert back.prelearner_class is TransitionsPreLearner
    assert back.observation_space.shape == (OBS_DIM,)


def test_history_set_without_training_is_refused():
    cfg = DiscreteCQLConfig().offline_data(input_="/d/transitions_hist")
    cfg.history = True  # the observation space still has OBS_DIM
    with pytest.raises(ValueError, match=r"set history through training\(history=...\)"):
        cfg.validate()
