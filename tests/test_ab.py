"""The simulated A/B: every arm runs in the simulator (learned arms on small random models), CRN
makes an arm against itself an exact tie, the A/A split is not significant, the report is
written with every arm."""

from __future__ import annotations

import os

import numpy as np
import pytest

from glan_ray.eval.ab import METRICS, ABConfig, ABResult, run_ab, run_shard
from glan_ray.policy.registry import ARMS, CONSTANT_ARMS, make_arm
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
        arms=("logging", "last_exit", "always_featured", "always_explore", "oracle"),
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
    best = res.best_constant()["usage_time"]
    assert best["arm"] in ("always_featured", "always_explore")
    assert best["value"] == max(res.value(a, "usage_time") for a in CONSTANT_ARMS if a in cfg.arms)
    assert res.personalization_uplift_captured()[best["arm"]] == 0.0
    assert f"| usage_time | higher | {best['arm']} |" in text
    for f in ("metric_bars.png", "daily.png", "page_assign.png", "ab_metrics.csv"):
        assert os.path.getsize(tmp_path / f) > 0


def test_direct_comparisons_pick_the_best_heuristic_and_match_compare():
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
    assert res.direct_pairs() == [("glan", "klan"), ("klan", "always_featured"),
                                  ("glan", "always_featured"), ("glan", "last_exit"),
                                  ("klan", "last_exit"), ("glan", "glan_no_hrm")]  # fmt: skip
    row = res.direct()[0]
    want = compare(units["glan"]["usage"], units["klan"]["usage"], units["glan"]["days"],
                   units["klan"]["days"], paired=True)  # fmt: skip
    assert row["usage_time"] == want.to_dict()
    assert row["usage_time"]["rel_pct"] > 0 and row["usage_time"]["p_value"] < 0.05


@pytest.mark.parametrize(
    ("arm", "page"),
    [("always_explore", "explore"), ("always_following", "following"), ("uniform", None)],
)
def test_model_free_baselines_build_without_models_and_land_where_they_say(arm, page):
    assert make_arm(arm, None, SimConfig()).name == arm
    assert arm in ABConfig().arms  # in the default A/B (the pipeline's presets run every arm)
    u = run_shard(arm, None, {"block_size": 100}, seed=3, first=0, n=100, days=2)["units"]
    sessions = u["sessions"].sum()
    share = {p: u[f"assign_{p}"].sum() / sessions for p in ("featured", "explore", "following")}
    if page is None:  # uniform: each page about a third of the sessions
        assert all(0.25 < s < 0.42 for s in share.values()), share
    else:
        assert share[page] == 1.0


# usage time and PDR per arm of a hand-made A/B: explore is the best constant page on usage,
# following on PDR (lower is better; featured has the highest PDR); uniform beats every constant
# page on usage but is not one
USAGE = {"logging": 100.0, "always_featured": 90.0, "always_explore": 120.0,
         "always_following": 110.0, "uniform": 130.0, "klan": 125.0, "glan": 135.0,
         "oracle": 140.0}  # fmt: skip
PDR = {"logging": 0.20, "always_featured": 0.30, "always_explore": 0.25, "always_following": 0.15,
       "uniform": 0.22, "klan": 0.18, "glan": 0.12, "oracle": 0.10}  # fmt: skip


def _hand_made(arms: tuple[str, ...]) -> ABResult:
    """Four users per arm, one day, 10 sessions each; usage spread 0.5/1/1.5/1 around the arm's
    mean (so paired differences have a spread), drop-offs = PDR × sessions."""
    spread = np.array([0.5, 1.0, 1.5, 1.0])
    units = {}
    for a in arms:
        u = {k: np.ones(4) for k in {x for pair in METRICS.values() for x in pair if x}}
        u["usage"] = USAGE[a] * spread
        u["sessions"] = np.full(4, 10.0)
        u["dropoffs"] = np.full(4, 10.0 * PDR[a])
        units[a] = u
    return ABResult(ABConfig(arms=arms, users=4, days=1, seeds=(0,)), units, {}, {})


def test_best_constant_personalization_uplift_and_head_to_heads_vs_best_constant():
    res = _hand_made(tuple(USAGE))
    best = res.best_constant()
    assert best["usage_time"] == {"arm": "always_explore", "value": pytest.approx(120.0)}
    assert best["pdr"] == {"arm": "always_following", "value": pytest.approx(0.15)}
    assert "assign_ratio_featured" not in best  # a policy description, no better direction
    pers = res.personalization_uplift_captured("usage_time")
    # (arm − 120) / (140 − 120)
    assert pers["glan"] == pytest.approx(0.75) and pers["klan"] == pytest.approx(0.25)
    assert pers["always_explore"] == 0.0 and pers["oracle"] == 1.0
    assert pers["logging"] == pytest.approx(-1.0)
    assert res.uplift_captured("usage_time")["glan"] == pytest.approx(0.875)  # (135−100)/(140−100)
    # GLAN vs KLAN, KLAN and GLAN vs the best constant page, then vs the best heuristic (uniform)
    assert res.direct_pairs() == [("glan", "klan"), ("klan", "always_explore"),
                                  ("glan", "always_explore"), ("glan", "uniform"),
                                  ("klan", "uniform")]  # fmt: skip
    rel = {(r["arm"], r["vs"]): r["usage_time"]["rel_pct"] for r in res.direct()}
    assert rel[("klan", "always_explore")] == pytest.approx(100 * 5 / 120)
    assert rel[("glan", "always_explore")] == pytest.approx(100 * 15 / 120)
    s = res.summary()
    assert s["best_constant"]["usage_time"]["arm"] == "always_explore"
    assert s["personalization_uplift_captured_usage_time"]["glan"] == pytest.approx(0.75)
    assert set(s["personalization_uplift_captured_dau"]) == set(USAGE)  # a tie on DAU: NaN


def test_head_to_heads_vs_best_constant_are_skipped_without_the_arms():
    # a model-free A/B: no KLAN or GLAN, so no head-to-head at all
    assert _hand_made(("logging", "always_featured", "uniform", "oracle")).direct_pairs() == []
    # KLAN and one constant page, which is also the best heuristic: one pair, not two
    res = _hand_made(("logging", "always_following", "klan"))
    assert res.direct_pairs() == [("klan", "always_following")]
    assert res.personalization_uplift_captured() == {}  # no oracle
    # no constant page: no best constant, GLAN vs KLAN only
    res = _hand_made(("logging", "klan", "glan", "oracle"))
    assert res.best_constant() == {} and res.personalization_uplift_captured() == {}
    assert res.direct_pairs() == [("glan", "klan")]
    assert not set(CONSTANT_ARMS) & {b for _, b in res.direct_pairs()}


def test_report_shows_best_constant_and_personalization_uplift(tmp_path):
    import csv

    from glan_ray.eval.report import markdown, write_csv

    summary = _hand_made(tuple(USAGE)).summary()
    text = markdown(summary, [])
    assert "| uplift captured (usage) | personalization uplift captured (usage) |" in text
    glan = next(line for line in text.splitlines() if line.startswith("| glan |"))
    assert glan.endswith("| 0.88 | 0.75 | nan |")  # uplift, personalization uplift, latency
    assert "| usage_time | higher | always_explore | 120 |" in text
    assert "| pdr | lower | always_following | 0.15 |" in text
    assert "| klan | always_explore (best constant) |" in text
    assert "| glan | uniform |" in text
    write_csv(summary, str(tmp_path / "ab_metrics.csv"))
    with open(tmp_path / "ab_metrics.csv") as f:
        rows = {(r["arm"], r["metric"]): r for r in csv.DictReader(f)}
    r = rows[("glan", "usage_time")]
    assert r["best_constant_arm"] == "always_explore" and float(r["best_constant"]) == 120.0
    assert float(r["uplift_captured"]) == pytest.approx(0.875)
    assert float(r["personalization_uplift_captured"]) == pytest.approx(0.75)
    r = rows[("glan", "pdr")]
    assert r["best_constant_arm"] == "always_following"
    assert r["uplift_captured"] == r["personalization_uplift_captured"] == ""
    # an older ab.json without the new keys still renders
    old = {k: v for k, v in summary.items() if "personalization" not in k and k != "best_constant"}
    assert "Best constant page" not in markdown(old, []) and "Best constant page" in text
