"""Schema round trips and validation errors: a bad column is named with its row count."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glan_ray import schema
from glan_ray.data.tables import day_tables
from glan_ray.schema import DatasetValidationError
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.engine import simulate


@pytest.fixture(scope="module")
def tables(sim_cfg) -> dict[str, pa.Table]:
    log = next(simulate(sim_cfg, 0, 300, 1, LoggingPolicy(sim_cfg), rct=True))
    return day_tables(log, rct=True)


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def test_every_dataset_matches_its_schema(tables):
    assert set(tables) == set(schema.SCHEMAS)
    for name, table in tables.items():
        assert table.schema.equals(schema.SCHEMAS[name]), name
        assert table.num_rows > 0
        assert schema.conform(table, name).equals(table)


def test_trajectories_and_transitions_agree_with_sessions(tables):
    sessions, traj, trans = tables["sessions"], tables["trajectories"], tables["transitions"]
    assert sum(traj.column("n_steps").to_pylist()) == sessions.num_rows == trans.num_rows
    # Each trajectory's lists have n_steps elements and its obs are the sessions' obs.
    first = traj.slice(0, 1).to_pylist()[0]
    for key in ("obs", "actions", "hours", "reward", "dropoff", "propensity", "value_true"):
        assert len(first[key]) == first["n_steps"]
    mine = sessions.filter(pa.compute.equal(sessions.column("user_id"), first["user_id"]))
    np.testing.assert_allclose(np.array(first["obs"]), np.stack(mine.column("obs").to_pylist()))
    # next_obs is the next session's obs within the day; done marks the last one.
    done = trans.column("done").to_numpy(zero_copy_only=False)
    obs = np.stack(trans.column("obs").to_pylist())
    nxt = np.stack(trans.column("next_obs").to_pylist())
    np.testing.assert_array_equal(nxt[:-1][~done[:-1]], obs[1:][~done[:-1]])
    assert done.sum() == traj.num_rows


def test_parquet_round_trip_is_lossless(tables, tmp_path):
    for name, table in tables.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path)
        back = pq.read_table(path)
        assert back.equals(table), name


def test_missing_column_is_named(tables):
    bad = tables["sessions"].drop(["y_sw"])
    with pytest.raises(DatasetValidationError, match=r"column 'y_sw': missing"):
        schema.conform(bad, "sessions")


def test_wrong_type_is_named(tables):
    t = tables["daily"]
    bad = _replace(t, "y_wt", pa.array(["x"] * t.num_rows))
    with pytest.raises(DatasetValidationError, match=r"column 'y_wt': has type string"):
        schema.conform(bad, "daily")


def test_nan_label_is_named_with_row_count(tables):
    t = tables["sessions"]
    usage = t.column("usage_time").to_numpy().copy()
    usage[[1, 4, 9]] = np.nan
    bad = _replace(t, "usage_time", pa.array(usage, pa.float32()))
    with pytest.raises(DatasetValidationError, match=r"'usage_time': has NaN .* \(3 rows\)"):
        schema.conform(bad, "sessions")


def test_out_of_range_action_is_named_with_row_count(tables):
    t = tables["transitions"]
    action = t.column("action").to_numpy().astype(np.int64)
    action[:7] = 3
    bad = _replace(t, "action", pa.array(action))
    with pytest.raises(
        DatasetValidationError, match=r"'action': has values outside \[0, 2\] \(7 rows\)"
    ):
        schema.conform(bad, "transitions")


def test_nested_list_values_are_checked_per_row(tables):
    t = tables["trajectories"]
    actions = t.column("actions").to_pylist()
    actions[0][0] = 5
    actions[2][-1] = -1
    bad = _replace(t, "actions", pa.array(actions, pa.list_(pa.int8())))
    with pytest.raises(DatasetValidationError, match=r"'actions': .* \(2 rows\)"):
        schema.conform(bad, "trajectories")


def test_compatible_types_are_cast_and_extra_columns_kept(tables):
    t = tables["transitions"]
    wide = _replace(t, "action", pa.array(t.column("action").to_numpy().astype(np.int64)))
    wide = wide.append_column("note", pa.array(["keep"] * t.num_rows))
    out = schema.conform(wide, "transitions")
    assert out.schema.field("action").type == pa.int8()
    assert out.column("note").to_pylist() == ["keep"] * t.num_rows
    assert out.num_rows == t.num_rows


def test_unknown_dataset_name_is_an_error():
    with pytest.raises(ValueError, match="unknown dataset 'session'"):
        schema.schema_for("session")


def test_obs_features_match_obs_width(tables):
    obs = np.stack(tables["sessions"].column("obs").to_pylist())
    assert obs.shape[1] == schema.OBS_DIM == len(schema.OBS_FEATURES)
    assert np.isfinite(obs).all()


def test_the_plpm_spec_sizes_exactly_the_simulators_schemas():
    from glan_ray.apps import plpm_spec

    got = schema.schemas_for(plpm_spec())
    assert list(got) == [*schema.SCHEMAS, *schema.DERIVED]
    for name, expected in {**schema.SCHEMAS, **schema.DERIVED}.items():
        assert got[name].equals(expected, check_metadata=True), name
    assert schema.ranges_for(plpm_spec()) == schema.RANGES


def test_a_four_page_spec_sizes_lists_treatments_obs_and_its_own_columns(tables):
    from glan_ray.apps import AppSpec, plpm_spec

    d = plpm_spec().to_dict()
    profile = [*d["features"]["profile"], {"name": "city", "kind": "categorical",
                                           "cardinality": 300}]  # fmt: skip
    stats = [*d["features"]["statistics"], {"quantity": "usage", "windows": [3]}]
    spec = AppSpec.from_dict({**d, "pages": [*d["pages"], "mall"],
                              "features": {**d["features"], "profile": profile,
                                           "statistics": stats}})  # fmt: skip
    s = schema.schemas_for(spec)
    assert s["sessions"].field("dur").type == pa.list_(pa.float32(), 4)
    assert s["sessions"].field("obs").type == pa.list_(pa.float32(), spec.obs_dim)
    assert s["rct"].field("response_cf").type == pa.list_(pa.float32(), 5)
    assert s["daily"].field("city").type == pa.int16()  # more than 127 categories
    assert s["daily"].field("usage_3d").type == pa.float32()
    assert schema.ranges_for(spec)["rct"]["treatment"] == (0, 4)
    # a 3-page table is not the 4-page app's: the error names the column
    with pytest.raises(DatasetValidationError, match=r"column 'dur': has type"):
        schema.conform(tables["sessions"], "sessions", spec=spec)
