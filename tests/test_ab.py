"""The simulated A/B: every arm runs in the simulator (learned arms on small random models), CRN
makes an arm against itself an exact tie, the A/A split is not significant, the report is
written with every arm."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pyarrow as pa
import pytest
import torch

from glan_ray.data.features import SPECS, Normalizer, as_columns, feature_dims
from glan_ray.data.tables import day_tables
from glan_ray.eval.ab import ABConfig, run_ab, run_shard
from glan_ray.models.cql import QNetConfig, QNetwork
from glan_ray.models.dt import DecisionTransformer, DTConfig
from glan_ray.policy.registry import ARMS, make_arm
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate
from glan_ray.sim.policies import LoggingPolicy
from glan_ray.train.checkpoint import save_checkpoint
from glan_ray.train.tasks import build_model, model_config


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> str:
    """Randomly initialised exports of every model the learned arms load."""
    out = str(tmp_path_factory.mktemp("models"))
    cfg = SimConfig(seed=3, block_size=100)
    tables: dict[str, list[pa.Table]] = {}
    for log in simulate(cfg, 0, 100, 2, LoggingPolicy(cfg), rct=True):
        for name, t in day_tables(log, rct=True).items():
            tables.setdefault(name, []).append(t)
    torch.manual_seed(0)
    small = {"d": 4, "n_experts": 2, "expert_hidden": 8, "tower_hidden": 8}
    for name in ("lrtg", "hrm", "isp", "am"):
        table = pa.concat_tables(tables[SPECS[name].dataset])
        cols = as_columns(table.slice(0, 200))
        over = {"d_model": 8, "n_layers": 1, "expert_hidden": 8} if name == "lrtg" else small
        mc = model_config(name, feature_dims(name, cols), over)
        feats = SPECS[name].build(cols)
        norm = Normalizer.fit([feats], SPECS[name].normalized)
        save_checkpoint(os.path.join(out, name), name, build_model(name, mc), mc, {}, norm)
    q = QNetwork(QNetConfig(hidden=(8,)))
    save_checkpoint(os.path.join(out, "cql"), "cql", q, dataclasses.asdict(q.cfg), {}, None)
    for name in ("dt", "dt_naive"):
        dt = DecisionTransformer(DTConfig(context_len=4, embed_dim=8, n_heads=2, n_layers=1))
        meta = dataclasses.asdict(dt.cfg)
        save_checkpoint(os.path.join(out, name), "dt", dt, meta, {}, None, {"rtg_scale": 3600.0})
    return out


@pytest.mark.parametrize("arm", list(ARMS))
def test_every_arm_runs_in_the_simulator(arm, models):
    r = run_shard(arm, models, {"block_size": 100}, seed=1, first=0, n=100, days=2)
    u = r["units"]
    assert u["sessions"].sum() > 0
    assign = sum(u[f"assign_{p}"] for p in ("featured", "explore", "following"))
    np.testing.assert_array_equal(assign, u["sessions"])  # every session got one page
    assert r["decisions"] == u["sessions"].sum()
    assert (u["lt_active"] <= u["active_days"]).all()


def test_unknown_arm_and_missing_models_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown arm 'gla'"):
        make_arm("gla", None, SimConfig())
    with pytest.raises(FileNotFoundError, match="dt"):
        make_arm("glan", str(tmp_path), SimConfig())


def test_ab_crn_ties_aa_is_not_significant_and_report_has_every_arm(ray_session, tmp_path):
    from glan_ray.eval.report import write_report

    cfg = ABConfig(
        arms=("logging", "last_exit", "always_featured", "oracle"),
        users=600,
        days=3,
        seeds=(0, 1),
        shard_users=300,
        sim={"block_size": 100},
    )
    res = run_ab(cfg)
    comp = res.comparisons()
    # control against itself: the same users, numbers and policy -> an exact tie
    assert comp["logging"]["usage_time"]["diff"] == 0.0
    assert comp["logging"]["usage_time"]["p_value"] == 1.0
    assert len(res.units["logging"]["usage"]) == 1200  # seeds x users, paired across arms
    aa = res.aa()
    assert all(aa[m]["p_value"] > 0.05 for m in ("usage_time", "dau", "pdr", "watch_time"))
    # the simulator's ordering: the oracle beats logging on usage, significantly
    assert comp["oracle"]["usage_time"]["rel_pct"] > 0
    assert comp["oracle"]["usage_time"]["p_value"] < 0.05
    up = res.uplift_captured()
    assert up["logging"] == 0.0 and up["oracle"] == 1.0
    res.save(str(tmp_path / "ab"))
    path = write_report(str(tmp_path))
    with open(path) as f:
        text = f.read()
    for arm in cfg.arms:
        assert f"| {arm} |" in text
    for f in ("metric_bars.png", "daily.png", "page_assign.png", "ab_metrics.csv"):
        assert os.path.getsize(tmp_path / f) > 0
