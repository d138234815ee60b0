"""The simulated A/B: every arm runs in the simulator (learned arms on small random models), CRN
makes an arm against itself an exact tie, the A/A split is not significant, the report is
written with every arm."""

from __future__ import annotations

import os

import numpy as np
import pytest

from glan_ray.eval.ab import ABConfig, run_ab, run_shard
from glan_ray.policy.registry import ARMS, make_arm
from glan_ray.sim.config import SimConfig


@pytest.mark.parametrize("arm", list(ARMS))
def test_every_arm_runs_in_the_simulator(arm, random_models):
    r = run_shard(arm, random_models, {"block_size": 100}, seed=1, first=0, n=100, days=2)
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


def test_arm_options_reach_the_glan_policy_and_are_checked(random_models):
    from glan_ray.policy.glan import GlanPolicy
    from glan_ray.sim.engine import simulate

    cfg = SimConfig(block_size=100)
    with pytest.raises(ValueError, match=r"'last_exit'.*target_gain.*valid: none"):
        make_arm("last_exit", random_models, cfg, {"target_gain": 2.0})
    with pytest.raises(ValueError, match=r"unknown option.*gain"):
        make_arm("glan", random_models, cfg, {"gain": 2.0})
    with pytest.raises(ValueError, match="target_gain must be > 0"):
        make_arm("glan", random_models, cfg, {"target_gain": 0.0})
    # the export carries no target_gain -> 1; an option overrides it; R̂₁ scales with it
    default = make_arm("glan_no_lrtg", random_models, cfg)
    double = make_arm("glan_no_lrtg", random_models, cfg, {"target_gain": 2.0})
    assert isinstance(double, GlanPolicy) and double.target_gain == 2.0
    assert default.target_gain == 1.0
    for p in (default, double):  # one simulated day each; R̂₁ stays set after the day
        for _ in simulate(cfg, 0, 100, 1, p):
            pass
    np.testing.assert_allclose(double._r1, 2.0 * default._r1)
    assert (default._r1 > 0).any()


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


def test_direct_comparisons_pick_the_best_heuristic_and_match_compare():
    from glan_ray.eval.ab import METRICS, ABResult
    from glan_ray.eval.stats import compare

    rng = np.random.default_rng(0)
    arms = ("logging", "always_featured", "last_exit", "klan", "glan", "glan_no_hrm")
    base = rng.gamma(2.0, 500.0, 400)
    lift = {"logging": 1.0, "always_featured": 0.9, "last_exit": 1.1, "klan": 1.2, "glan": 1.25,
            "glan_no_hrm": 1.15}  # fmt: skip
    units = {}
    for a in arms:
        u = {k: np.ones(400) for k in {x for pair in METRICS.values() for x in pair if x}}
        u["usage"] = base * lift[a] * rng.uniform(0.95, 1.05, 400)
        u["days"] = np.full(400, 7.0)
        units[a] = u
    res = ABResult(ABConfig(arms=arms, users=400, days=7, seeds=(0,)), units, {}, {})
    assert res.direct_pairs() == [("glan", "klan"), ("glan", "last_exit"), ("klan", "last_exit"),
                                  ("glan", "glan_no_hrm")]  # fmt: skip
    row = res.direct()[0]
    want = compare(units["glan"]["usage"], units["klan"]["usage"], units["glan"]["days"],
                   units["klan"]["days"], paired=True)  # fmt: skip
    assert row["usage_time"] == want.to_dict()
    assert row["usage_time"]["rel_pct"] > 0 and row["usage_time"]["p_value"] < 0.05
