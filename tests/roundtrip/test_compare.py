"""The round trip's comparison (data.roundtrip) on hand-made tables: rows matched by key across
a day offset, the largest difference per column and per obs feature, the clean rows (delayed
sessions' user-days, the statistics before the warm-up), null and list columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from glan_ray.apps import plpm_spec
from glan_ray.data.roundtrip import (
    ColumnDiff,
    RoundTripReport,
    Tolerance,
    compare_table,
    format_report,
    row_keys,
)
from glan_ray.data.tables import day_tables
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate

SPEC = plpm_spec()
NONE = np.zeros(0, dtype=np.int64)


def _compare(name, a, b, *, day_offset=0, dirty_days=NONE, warmup_days=0):
    return compare_table(name, a, b, day_offset=day_offset, obs_features=SPEC.obs_features,
                         history_obs=frozenset(SPEC.group_features["statistics"]),
                         dirty_days=dirty_days, dirty_users=NONE, warmup_days=warmup_days,
                         tol=Tolerance())  # fmt: skip


def _by_name(d) -> dict[str, ColumnDiff]:
    return {c.column: c for c in d.columns}


def test_a_simulated_run_equals_itself_in_every_column_and_obs_feature():
    cfg = SimConfig(seed=1, block_size=20)
    logs = list(simulate(cfg, 0, 20, 2, LoggingPolicy(cfg), rct=True))
    tables = {n: pa.concat_tables([day_tables(lg, True)[n] for lg in logs])
              for n in ("daily", "sessions", "trajectories", "transitions", "rct")}  # fmt: skip
    diffs = [_compare(n, t, t) for n, t in tables.items()]
    report = RoundTripReport(diffs, Tolerance(), 0, 0, 0, 0)
    assert report.equal
    cols = _by_name(diffs[1])
    assert cols["obs[hour]"].compared == tables["sessions"].num_rows
    assert cols["dur[2]"].max_abs == 0.0 and cols["page_seq"].compared > 0
    assert cols["value_true"].note.startswith("not compared")  # raw events cannot give it
    traj = _by_name(diffs[2])
    assert traj["obs[live_count]"].compared == tables["sessions"].num_rows  # per step
    assert "| sessions | obs[hour] |" in format_report(report)


def _daily(days, users, y, stat) -> pa.Table:
    return pa.table({"user_id": np.array(users, np.int64), "day": np.array(days, np.int32),
                     "y_wt": np.array(y, np.float32), "usage_7d": np.array(stat, np.float32),
                     "value_true": pa.array([1.0] * len(days), pa.float32())})  # fmt: skip


def test_differences_rows_offsets_warmup_and_dirty_user_days():
    sim = _daily([0, 0, 1, 1], [1, 2, 1, 2], [10, 20, 30, 40], [1, 2, 3, 4])
    ing = _daily([100, 100, 101, 101, 101], [1, 2, 1, 2, 3], [10, 20.5, 30, 40, 9],
                 [9, 2, 3, 4, 0])  # fmt: skip
    ing = ing.set_column(4, "value_true", pa.nulls(5, pa.float32()))
    sim, ing = (t.rename_columns([*t.column_names[:4], "y_se"]) for t in (sim, ing))
    d = _compare("daily", sim, ing, day_offset=100, warmup_days=1)
    assert (d.matched, d.only_sim, d.only_ingested) == (4, 0, 1)
    cols = _by_name(d)
    assert cols["y_wt"].max_abs == 0.5 and cols["y_wt"].mismatched == 1
    # usage_7d differs on day 0 only: before the warm-up, so not a mismatch
    assert cols["usage_7d"].max_abs == 0.0 and cols["usage_7d"].max_abs_all == 8.0
    assert cols["usage_7d"].compared == 2 and cols["usage_7d"].note == "from day 1"
    assert cols["y_se"].note == "null in ingested" and cols["y_se"].compared == 0
    # user 2's day 0 holds a delayed session: left out of the clean rows
    dirty = row_keys(pa.table({"user_id": [2], "day": [0]}), ("user_id", "day"))
    d = _compare("daily", sim, ing, day_offset=100, dirty_days=dirty, warmup_days=1)
    assert d.clean == 3 and _by_name(d)["y_wt"].mismatched == 0
    assert _by_name(d)["y_wt"].max_abs_all == 0.5


def test_list_columns_compare_per_element_and_count_rows_of_another_length():
    def traj(rewards):
        return pa.table({"user_id": np.arange(len(rewards), dtype=np.int64),
                         "day": np.zeros(len(rewards), np.int32),
                         "reward": pa.array(rewards, pa.list_(pa.float32()))})  # fmt: skip

    d = _compare("trajectories", traj([[1, 2], [3], [4, 5]]), traj([[1, 2.25], [3, 0], [4, 5]]))
    cols = [c for c in d.columns if c.column == "reward"]
    length, values = cols
    assert length.mismatched == 1 and "1 row(s) differ in length, 1 of them clean" in length.note
    assert values.compared == 4 and values.max_abs == 0.25 and values.mismatched == 1
