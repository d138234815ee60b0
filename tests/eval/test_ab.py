"""The simulated A/B in the papers' protocol: every arm runs in the simulator (learned arms on
small random models); a burn-in continues exactly where it stopped; CRN makes an arm against
itself and the shared A/A phase exact ties; the split-half A/A is not significant; LT follows
GLAN eq. 31 by hand; disjoint buckets are unpaired; any arm can be the reference; the report
has the papers' tables and the growth curves."""

from __future__ import annotations

import os
from dataclasses import asdict

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
    # eq. 31 over both days: each active day counts in its own and later days' 7-day windows
    assert (u["active_days"] <= u["lt_active"]).all()
    assert (u["lt_active"] <= 2 * u["active_days"]).all()
    assert (u["ever_active"] <= 2).all()


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
        ab_days=3,
        aa_days=2,
        burn_in_days=3,
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
    # the A/A phase: every (shared) bucket ran the control on the same users -> exact ties
    for arm, metrics in res.aa().items():
        assert metrics["usage_time"]["diff"] == 0.0 and metrics["dau"]["diff"] == 0.0, arm
    aa = res.aa_split()
    assert all(aa[m]["p_value"] > 0.05 for m in ("usage_time", "dau", "pdr", "watch_time"))
    # one timeline: 2 A/A + 3 A/B days per arm; the A/A days are the control's in every arm
    for arm in cfg.arms:
        assert len(res.daily[arm]["dau"]) == 5 and len(res.daily[arm]["lt"]) == 5
        np.testing.assert_array_equal(res.daily[arm]["dau"][:2], res.daily["logging"]["dau"][:2])
    assert res.growth()["oracle"]["dau"][:2] == [0.0, 0.0]
    # LT (eq. 31, T0 = first A/A day) is its own metric, no longer DAU rescaled
    lt, dau = comp["oracle"]["lt"]["rel_pct"], comp["oracle"]["dau"]["rel_pct"]
    assert lt != pytest.approx(dau, abs=1e-6)
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
    assert "## A/A check" in text and "exact tie by construction" in text
    for f in ("metric_bars.png", "daily.png", "page_assign.png", "growth.png", "ab_metrics.csv"):
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
    res = ABResult(ABConfig(arms=arms, users=400, ab_days=7, seeds=(0,)), units, {}, {})
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
    return ABResult(ABConfig(arms=arms, users=4, ab_days=1, seeds=(0,)), units, {}, {})


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


def test_lt_follows_glan_eq_31_by_hand():
    from glan_ray.eval.ab import lt_daily, lt_units

    # 2 users x 9 days; user 0 active days 0-8 except 3, user 1 only on day 7
    active = np.zeros((2, 9), dtype=bool)
    active[0] = [1, 1, 1, 0, 1, 1, 1, 1, 1]
    active[1, 7] = True
    # T = 8: window [2, 8] -> user 0: 6 active days, user 1: 1; both active since T0
    # T = 7: window [1, 7] -> 6 and 1; T = 6: window [0, 6] -> 6 and 0 (user 1 not yet active)
    np.testing.assert_allclose(lt_daily(active)[6:], [6 / 1, 7 / 2, 7 / 2])
    y, x = lt_units(active, 3)
    np.testing.assert_array_equal(y, [18, 2])
    np.testing.assert_array_equal(x, [3, 2])
    # early days: the window starts at T0 (max(T − 6, T0))
    assert lt_daily(active)[:3].tolist() == [1.0, 2.0, 3.0]


def test_a_burn_in_continues_exactly_where_it_stopped():
    from glan_ray.sim.baselines import LoggingPolicy
    from glan_ray.sim.engine import simulate

    cfg = SimConfig(seed=4, block_size=100)
    whole = [log.y_wt for log in simulate(cfg, 0, 100, 5, LoggingPolicy(cfg))]
    *_, last = simulate(cfg, 0, 100, 3, LoggingPolicy(cfg))
    rest = [log.y_wt for log in simulate(cfg, 0, 100, 2, LoggingPolicy(cfg), first_day=3,
                                         start=last.next_state)]  # fmt: skip
    for a, b in zip(whole[3:], rest, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="start: a state of 100 users for 50 users"):
        next(simulate(cfg, 0, 50, 1, LoggingPolicy(cfg), start=last.next_state))


def test_burn_in_makes_existing_users_and_is_shared_by_every_arm(ray_session):
    common = dict(users=200, ab_days=2, aa_days=1, seeds=(0,), shard_users=200,
                  sim={"block_size": 100})  # fmt: skip
    fresh = run_ab(ABConfig(arms=("logging", "always_explore"), burn_in_days=0, **common))
    burned = run_ab(ABConfig(arms=("logging", "always_explore"), burn_in_days=4, **common))
    # a burn-in under the same control changes what the A/B sees (real history, later days)
    assert burned.value("logging", "usage_time") != fresh.value("logging", "usage_time")
    # ... and a burn-in under another arm changes it again
    other = run_ab(ABConfig(arms=("logging", "always_explore"), burn_in_days=4,
                            burn_in_arm="always_following", **common))  # fmt: skip
    assert other.value("logging", "usage_time") != burned.value("logging", "usage_time")
    assert other.summary()["protocol"]["burn_in_arm"] == "always_following"


def test_disjoint_buckets_have_their_own_users_and_are_compared_unpaired(ray_session):
    cfg = ABConfig(arms=("logging", "last_exit"), users=200, ab_days=2, aa_days=2,
                   burn_in_days=2, seeds=(0,), shard_users=200, buckets="disjoint",
                   sim={"block_size": 100})  # fmt: skip
    res = run_ab(cfg)
    aa = res.aa()["last_exit"]["usage_time"]
    assert aa["diff"] != 0.0 and aa["n"] == 400  # other users under the same policy; unpaired
    assert res.comparisons()["last_exit"]["usage_time"]["n"] == 400
    assert not res.config.paired and res.adjusted  # CUPED by the A/A phase
    raw = ABResult(ABConfig(**{**asdict(cfg), "cuped": False}), res.units, res.daily,
                   res.latency_ms, res.aa_units)  # fmt: skip
    assert not raw.adjusted
    a, b = (r.comparisons()["last_exit"]["usage_time"] for r in (res, raw))
    assert a["arm"] == b["arm"] and a["diff"] != b["diff"]  # same values, adjusted difference


def test_any_arm_is_a_reference_and_the_papers_tables_are_printed():
    from glan_ray.eval.report import markdown

    arms = ("logging", "klan", "klan_isp", "klan_iit", "glan", "glan_no_lrtg", "glan_no_hrm")
    usage = {"logging": 100.0, "klan": 110.0, "klan_isp": 104.0, "klan_iit": 102.0,
             "glan": 120.0, "glan_no_lrtg": 111.0, "glan_no_hrm": 119.9}  # fmt: skip
    rng = np.random.default_rng(1)
    base = rng.gamma(2.0, 500.0, 300)
    units = {}
    for a in arms:
        u = {k: np.ones(300) for k in {x for pair in METRICS.values() for x in pair if x}}
        u["usage"] = base * usage[a] / 100 * rng.uniform(0.99, 1.01, 300)
        units[a] = u
    res = ABResult(ABConfig(arms=arms, users=300, ab_days=1, seeds=(0,)), units, {},
                   dict.fromkeys(arms, 1.0))  # fmt: skip
    vs = res.vs()
    assert set(vs) == {"logging", "klan", "glan"}
    assert vs["klan"]["glan"]["usage_time"]["rel_pct"] == pytest.approx(100 * 10 / 110, rel=0.02)
    assert vs["klan"]["klan"]["usage_time"]["diff"] == 0.0
    text = markdown(res.summary(), [])
    for title in ("GLAN Table 1: GLAN vs KLAN", "GLAN Table 2", "GLAN Table 3",
                  "KLAN Table 1", "KLAN Table 2"):  # fmt: skip
        assert f"### {title}" in text, title
    table2 = text.split("### GLAN Table 2")[1].split("###")[0]
    # w/o L-RTG is significantly below GLAN (bold); w/o HRM is within 0.1% of it (not bold)
    assert "| w/o L-RTG | **" in table2 and "| w/o HRM | +" in table2
    assert "| KLAN-IIT | KLAN-ISP | KLAN |" in text
    assert "| Latency | +0.0% (1.000 ms vs 1.000 ms) |" in text


def test_klan_isp_lands_each_user_on_one_page_a_day(random_models):
    u = run_shard("klan_isp", random_models, {"block_size": 100}, seed=2, first=0, n=100,
                  days=1)["units"]  # fmt: skip
    most = np.max([u[f"assign_{p}"] for p in ("featured", "explore", "following")], axis=0)
    np.testing.assert_array_equal(most, u["sessions"])  # static scores: one page per user-day
    assert make_arm("klan_iit", random_models, SimConfig()).name == "klan_iit"
