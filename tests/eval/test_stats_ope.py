"""A/B statistics on hand-made samples and OPE estimators on a tiny bandit with exact values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from glan_ray.eval.ope import (
    FQEConfig,
    dr,
    fqe,
    fqe_value,
    ips,
    per_decision_dr,
    per_decision_is,
    snips,
)
from glan_ray.eval.stats import compare, linearized, ratio, uplift_captured

# --- statistics --------------------------------------------------------------------------


def test_paired_comparison_matches_a_paired_t_test_by_hand():
    ctl = np.array([10.0, 12.0, 9.0, 11.0, 13.0])
    arm = ctl + np.array([1.0, 2.0, 0.0, 1.0, 1.0])
    c = compare(arm, ctl, paired=True)
    d = arm - ctl  # mean 1.0, sd sqrt(0.5)
    se = np.sqrt(0.5) / np.sqrt(5)
    assert c.diff == pytest.approx(1.0)
    assert c.rel_pct == pytest.approx(100 * 1.0 / 11.0)
    assert c.p_value == pytest.approx(st.ttest_rel(arm, ctl).pvalue)
    half = st.t.ppf(0.975, 4) * se
    assert c.ci_low_pct == pytest.approx(100 * (1 - half) / 11.0)
    assert c.ci_high_pct == pytest.approx(100 * (1 + half) / 11.0)
    assert d.mean() == pytest.approx(1.0)


def test_unpaired_comparison_matches_welch():
    rng = np.random.default_rng(0)
    a, b = rng.normal(5.0, 1.0, 40), rng.normal(5.5, 2.0, 60)
    c = compare(a, b, paired=False)
    assert c.p_value == pytest.approx(st.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)


def test_ratio_metric_linearization():
    y, x = np.array([1.0, 0.0, 2.0, 1.0]), np.array([2.0, 1.0, 4.0, 1.0])
    assert ratio(y, x) == pytest.approx(0.5)
    lin = linearized(y, x)
    assert lin.sum() == pytest.approx(0.0)
    assert lin.tolist() == pytest.approx([0.0, -0.25, 0.0, 0.25])  # (y - 0.5 x) / 2


def test_aa_on_identical_distributions_is_rarely_significant():
    rng = np.random.default_rng(1)
    p = [compare(rng.exponential(1, 500), rng.exponential(1, 500), paired=False).p_value
         for _ in range(200)]  # fmt: skip
    assert 0.02 < np.mean(np.array(p) < 0.05) < 0.09  # ≈ 5% false positives
    assert uplift_captured(12.0, 10.0, 14.0) == pytest.approx(0.5)


def test_uplift_captured_against_the_best_constant_page_by_hand():
    # personalization uplift captured: best constant 120, oracle 140, arm 135 -> 15 / 20
    assert uplift_captured(135.0, 120.0, 140.0) == pytest.approx(0.75)
    # lower is better (PDR): best constant 0.15, oracle 0.10, arm 0.12 -> -0.03 / -0.05
    assert uplift_captured(0.12, 0.15, 0.10) == pytest.approx(0.6)
    assert np.isnan(uplift_captured(1.0, 2.0, 2.0))  # no headroom


# --- OPE on a tiny bandit ----------------------------------------------------------------

P_X = np.array([0.3, 0.7])
MU = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])  # logging policy μ(a|x)
PI = np.array([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1]])  # target policy π(a|x)
R = np.array([[1.0, 0.0, 2.0], [0.5, 3.0, 1.0]])  # deterministic reward r(x, a)
TRUE_V = float((P_X[:, None] * PI * R).sum())


def _logs(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.choice(2, n, p=P_X)
    u = rng.random(n)
    a = (u[:, None] > np.cumsum(MU[x], 1)).sum(1)
    return x, a, R[x, a], MU[x, a], PI[x]


def test_ips_and_dr_are_unbiased_on_the_exact_bandit():
    # the estimators' expectation, computed exactly by weighting every (x, a) by p(x)·μ(a|x)
    xs, as_ = np.meshgrid([0, 1], [0, 1, 2], indexing="ij")
    xs, as_ = xs.ravel(), as_.ravel()
    weight = P_X[xs] * MU[xs, as_]
    w = PI[xs, as_] / MU[xs, as_]
    assert np.sum(weight * w * R[xs, as_]) == pytest.approx(TRUE_V)
    q_bad = np.zeros((6, 3)) + 0.7  # a wrong reward model: DR is still unbiased
    dr_terms = (PI[xs] * q_bad).sum(1) + w * (R[xs, as_] - q_bad[np.arange(6), as_])
    assert np.sum(weight * dr_terms) == pytest.approx(TRUE_V)
    # and on samples, within 4 standard errors
    x, a, r, prop, pi = _logs(200_000, 0)
    est = ips(r, a, prop, pi)
    se = np.std(pi[np.arange(len(a)), a] / prop * r) / np.sqrt(len(a))
    assert abs(est - TRUE_V) < 4 * se
    assert abs(snips(r, a, prop, pi) - TRUE_V) < 0.02
    # perfect reward model: the correction term vanishes, only the context sampling remains
    assert dr(r, a, prop, pi, R[x]) == pytest.approx(np.mean((pi * R[x]).sum(1)))
    assert abs(dr(r, a, prop, pi, np.full((len(a), 3), 0.7)) - TRUE_V) < 0.02


def test_per_decision_estimators_on_two_step_episodes():
    # episodes of 2 steps with the same bandit at each step; value = 2 * TRUE_V (γ = 1)
    x, a, r, prop, pi = _logs(100_000, 1)
    episode = np.repeat(np.arange(50_000), 2)
    t = np.tile([0, 1], 50_000)
    assert abs(per_decision_is(r, a, prop, pi, episode, t) - 2 * TRUE_V) < 0.05
    assert abs(per_decision_dr(r, a, prop, pi, R[x], episode, t) - 2 * TRUE_V) < 0.02
    with pytest.raises(ValueError, match="propensit"):
        ips(r, a, np.zeros_like(prop), pi)


def test_fqe_recovers_the_bandit_value():
    x, a, r, _prop, pi = _logs(5_000, 2)
    obs = np.eye(2, dtype=np.float32)[x]
    done = np.ones(len(a))
    cfg = FQEConfig(iterations=3, steps_per_iteration=300, hidden=(16,))
    q = fqe(obs, a, r, obs, done, pi, cfg=cfg)
    assert fqe_value(q, obs, pi) == pytest.approx(TRUE_V, abs=0.05)


def test_cuped_removes_a_pre_existing_bucket_imbalance():
    from glan_ray.eval.stats import compare

    rng = np.random.default_rng(7)
    base_c = rng.gamma(2.0, 500.0, 2000)
    base_a = rng.gamma(2.0, 500.0, 2000) * 1.05  # the arm's bucket is 5% heavier to begin with
    days = np.full(2000, 7.0)

    def period(base):
        return base * rng.uniform(0.9, 1.1, base.size)

    pre_a, pre_c, post_a, post_c = period(base_a), period(base_c), period(base_a), period(base_c)
    raw = compare(post_a, post_c, days, days, paired=False)
    adj = compare(post_a, post_c, days, days, paired=False, pre=(pre_a, pre_c, days, days))
    assert raw.p_value < 0.05 and raw.rel_pct > 2  # the imbalance reads as an effect
    assert abs(adj.rel_pct) < 1 and adj.p_value > 0.05  # no treatment: CUPED finds none
    assert adj.ci_high_pct - adj.ci_low_pct < 0.3 * (raw.ci_high_pct - raw.ci_low_pct)
    # by hand: θ pooled over both arms on the linearised values, shift θ·(pre_a − pre_c)
    la, lc = post_a / 7 - post_a.mean() / 7, post_c / 7 - post_c.mean() / 7
    pa, pc = pre_a / 7 - pre_a.mean() / 7, pre_c / 7 - pre_c.mean() / 7
    theta = (la @ pa + lc @ pc) / (pa @ pa + pc @ pc)
    want = post_a.mean() / 7 - post_c.mean() / 7 - theta * (pre_a.mean() / 7 - pre_c.mean() / 7)
    assert adj.diff == pytest.approx(want)
    with pytest.raises(ValueError, match="unpaired comparisons only"):
        compare(post_a, post_c, days, days, paired=True, pre=(pre_a, pre_c, days, days))
