"""The decision log's conversion (``data.decision_log``): the simulator's days written as a
decision log become the simulator's own datasets (value_true, which only the simulator knows,
left null), a log with an open session or inconsistent records is counted or refused naming the
event and field, and ``glan-ray logs-to-datasets`` writes datasets ``read_dataset`` validates."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pytest

from glan_ray.cli import main
from glan_ray.data import decision_log as dlog
from glan_ray.data.tables import day_tables
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate


@pytest.fixture(scope="module")
def days():
    cfg = SimConfig(seed=4, block_size=60)
    return list(simulate(cfg, 0, 60, 3, LoggingPolicy(cfg)))


def _records(days):
    return [r for log in days for r in dlog.from_day_log(log, "logging")]


def test_a_simulated_log_becomes_the_simulators_own_datasets(days):
    got = dlog.to_datasets(_records(days)).tables
    for name in ("sessions", "transitions", "trajectories", "daily"):
        want = pa.concat_tables([day_tables(log, rct=False)[name] for log in days])
        assert got[name].num_rows == want.num_rows > 0, name
        for col in want.column_names:
            if col in ("value_true", "reward_hrm"):
                assert got[name].column(col).null_count == got[name].num_rows, (name, col)
                continue
            x, y = want.column(col).to_pylist(), got[name].column(col).to_pylist()
            if x != y:  # only float rounding may differ (float64 sums of float32 values)
                np.testing.assert_allclose(
                    np.hstack([np.ravel(v) for v in y]).astype(float),
                    np.hstack([np.ravel(v) for v in x]).astype(float), rtol=1e-6,
                    err_msg=f"{name}.{col}",
                )  # fmt: skip


def test_an_open_session_is_counted_and_left_out(days):
    recs = _records(days[:1])
    last_end = max(i for i, r in enumerate(recs) if isinstance(r, dlog.SessionEndRecord))
    user = recs[last_end].user_id
    conv = dlog.to_datasets(recs[:last_end] + recs[last_end + 1 :])
    full = dlog.to_datasets(recs)
    assert conv.summary["open_entries"] == 1 and conv.summary["open_days"] == 1
    assert conv.tables["sessions"].num_rows == full.tables["sessions"].num_rows - 1
    assert conv.tables["daily"].num_rows == full.tables["daily"].num_rows - 1
    assert user not in conv.tables["daily"].column("user_id").to_pylist()


def test_inconsistent_records_name_the_event_and_field(days):
    recs = _records(days[:1])
    i = next(i for i, r in enumerate(recs) if isinstance(r, dlog.SessionEndRecord))
    bad = [*recs[:i], dataclasses.replace(recs[i], page=(recs[i].page + 1) % 3), *recs[i + 1 :]]
    with pytest.raises(dlog.DecisionLogError, match=r"end event .*field 'page'"):
        dlog.to_datasets(bad)
    uid = recs[i].user_id
    no_start = [r for r in recs if not (isinstance(r, dlog.DayStart) and r.user_id == uid)]
    with pytest.raises(dlog.DecisionLogError, match="no day start"):
        dlog.to_datasets(no_start)
    with pytest.raises(dlog.DecisionLogError, match=r"unknown field\(s\) \['pagee'\]"):
        dlog.from_dict({"endpoint": "entry", "pagee": 1})


def test_logs_to_datasets_writes_datasets_that_validate(days, tmp_path, ray_session, capsys):
    from glan_ray.apps import plpm_spec
    from glan_ray.data.read import dataset_spec, read_dataset

    log_dir = tmp_path / "log"
    dlog.write_log(str(log_dir), _records(days))
    dlog.write_log(str(log_dir), _records(days[:1]))  # a flush retried: day 0 again
    out = str(tmp_path / "ds")
    assert main(["logs-to-datasets", str(log_dir), "--out", out]) == 0
    assert '"duplicates_dropped": ' in capsys.readouterr().out
    n = sum(len(log.sessions["row"]) for log in days)
    assert read_dataset(out, "sessions").count() == n
    assert read_dataset(out, "daily").count() == 3 * 60
    with open(f"{out}/manifest.json") as f:  # it records the spec of the app that logged it
        assert json.load(f)["spec_fingerprint"] == plpm_spec().fingerprint()
    assert dataset_spec(out) == plpm_spec()
    assert main(["logs-to-datasets", str(log_dir), "--out", out]) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
