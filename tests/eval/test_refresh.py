"""Refresh during the A/B (``eval.refresh``, ``train.refresh``): segments merged give one
shard's single run (up to the order of float sums), a refreshing A/B whose callback changes
nothing is the plain A/B while its arm's days are written as datasets and the callback is
called between segments, the configuration is checked, and (heavy) a real refresh retrains
KLAN's CQL on its own logs."""

from __future__ import annotations

import numpy as np
import pytest

from glan_ray.eval.ab import ABConfig, run_ab, run_shard
from glan_ray.eval.refresh import merge_segments, segments


def test_segments_cover_the_days():
    assert segments(7, 3) == [3, 3, 1] and segments(4, 2) == [2, 2] and segments(2, 5) == [2]


def test_merged_segments_are_the_single_run():
    sim = {"block_size": 100}
    whole = run_shard("last_exit", None, sim, 0, 0, 100, 5)
    first = run_shard("last_exit", None, sim, 0, 0, 100, 2, keep_state=True)
    second = run_shard("last_exit", None, sim, 0, 0, 100, 3, start=first.pop("state"),
                       first_day=2)  # fmt: skip
    merged = merge_segments([first, second], window=5)
    for k, v in whole["units"].items():
        np.testing.assert_allclose(merged["units"][k], v, rtol=1e-12, err_msg=k)  # sum order
    for k, v in whole["daily"].items():
        np.testing.assert_allclose(merged["daily"][k], v, rtol=1e-12, err_msg=k)
    np.testing.assert_array_equal(merged["active"], whole["active"])
    assert merged["decisions"] == whole["decisions"]


@pytest.mark.parametrize(
    ("over", "match"),
    [({"refresh_every": 2}, "go together"), ({"refresh_arms": ("last_exit",)}, "go together"),
     ({"refresh_every": 2, "refresh_arms": ("klan",)}, "not built-in arms of this A/B"),
     ({"refresh_every": 2, "refresh_arms": ("last_exit",), "headline_days": 1},
      "headline_days must cover"),
     ({"refresh_every": -1}, "refresh_every")],
)  # fmt: skip
def test_refresh_config_is_checked(over, match):
    with pytest.raises(ValueError, match=match):
        ABConfig(arms=("logging", "last_exit"), ab_days=4, **{"headline_days": 4, **over})


def test_a_refresh_that_changes_nothing_is_the_plain_ab(ray_session, tmp_path):
    from glan_ray.data.read import read_dataset

    common = dict(arms=("logging", "last_exit"), users=200, ab_days=4, headline_days=4,
                  aa_days=1, burn_in_days=2, seeds=(0, 1), shard_users=100,
                  sim={"block_size": 100})  # fmt: skip
    plain = run_ab(ABConfig(**common))
    calls = []

    def refresh(arm: str, segment: int, models: str | None, data_dir: str) -> str | None:
        calls.append((arm, segment, read_dataset(data_dir, "sessions").count()))
        return models

    with pytest.raises(ValueError, match="refresh callback"):
        run_ab(ABConfig(**common, refresh_every=3, refresh_arms=("last_exit",)))
    res = run_ab(ABConfig(**common, refresh_every=3, refresh_arms=("last_exit",)), None,
                 refresh, str(tmp_path))  # fmt: skip
    for arm in common["arms"]:
        for k, v in plain.units[arm].items():
            np.testing.assert_allclose(res.units[arm][k], v, rtol=1e-12, err_msg=f"{arm}.{k}")
        for k, v in plain.daily[arm].items():
            np.testing.assert_allclose(res.daily[arm][k], v, rtol=1e-12, err_msg=f"{arm}.{k}")
    # one refresh (segments 3 + 1), on the 3 days of 2 seeds x 200 users it played so far
    assert [(a, s) for a, s, _ in calls] == [("last_exit", 0)]
    sessions = read_dataset(str(tmp_path / "last_exit" / "data"), "sessions").count()
    assert calls[0][2] > 0 and sessions > calls[0][2]  # the last segment's days came after


@pytest.mark.heavy
def test_klan_refreshes_its_cql_on_its_own_logs(ray_session, random_models, tmp_path):
    from glan_ray.train.refresh import RefreshTrainer

    cfg = ABConfig(arms=("logging", "klan"), users=100, ab_days=2, headline_days=2, aa_days=0,
                   burn_in_days=1, seeds=(0,), shard_users=100, models=random_models,
                   sim={"block_size": 100}, refresh_every=1, refresh_arms=("klan",))  # fmt: skip
    trainer = RefreshTrainer(str(tmp_path / "refresh"), cql_iterations=1, updates_per_iteration=5)
    res = run_ab(cfg, None, trainer, str(tmp_path / "refresh"))
    new = tmp_path / "refresh" / "klan" / "models-1"
    assert (new / "cql" / "model.pt").exists() and (new / "isp" / "model.pt").exists()
    assert res.value("klan", "usage_time") > 0


def test_a_refresh_trains_on_the_base_data_and_the_logs_together(tmp_path):
    """base_data: the union holds every parquet file of both (as links), and reads back as one
    dataset of both's rows."""
    import pyarrow.parquet as pq

    from glan_ray.data.tables import day_tables
    from glan_ray.sim.baselines import LoggingPolicy
    from glan_ray.sim.config import SimConfig
    from glan_ray.sim.engine import simulate
    from glan_ray.train.refresh import _union

    cfg = SimConfig(seed=1, block_size=50)
    rows = {}
    for tag, first_day in (("base", 0), ("logs", 5)):
        for log in simulate(cfg, 0, 50, 2, LoggingPolicy(cfg), first_day=first_day):
            t = day_tables(log, rct=False)["transitions"]
            part = tmp_path / tag / "transitions" / f"part-{log.day}"
            part.mkdir(parents=True)
            pq.write_table(t, part / "transitions-0000.parquet")
            rows[tag] = rows.get(tag, 0) + t.num_rows
    out = _union(str(tmp_path / "base"), str(tmp_path / "logs"), "transitions",
                 str(tmp_path / "union"))  # fmt: skip
    got = pq.ParquetDataset(f"{out}/transitions").read()
    assert got.num_rows == rows["base"] + rows["logs"] > 0
    assert sorted(set(got.column("day").to_pylist())) == [0, 1, 5, 6]
    alone = _union(str(tmp_path / "base"), None, "transitions", str(tmp_path / "alone"))
    assert pq.ParquetDataset(f"{alone}/transitions").read().num_rows == rows["base"]
    with pytest.raises(FileNotFoundError, match="no trajectories dataset"):
        _union(str(tmp_path / "base"), str(tmp_path / "logs"), "trajectories",
               str(tmp_path / "u2"))  # fmt: skip
