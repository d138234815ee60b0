"""Prediction-quality metrics by hand and against brute force / scipy: ranks, AUC, Spearman,
Qini curve and coefficient, AUUC."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st

from glan_ray.eval.metrics import _ranks, auc, auuc, qini_coefficient, qini_curve, spearman


def test_ranks_average_ties_by_hand_and_like_scipy():
    np.testing.assert_array_equal(_ranks(np.array([30, 10, 20, 20])), [4.0, 1.0, 2.5, 2.5])
    np.testing.assert_array_equal(_ranks(np.array([5.0, 5.0, 5.0])), [2.0, 2.0, 2.0])
    x = np.random.default_rng(0).integers(0, 10, 200)  # many ties
    np.testing.assert_array_equal(_ranks(x), st.rankdata(x))


def test_auc_by_hand_with_a_tie():
    # pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) lose, (0.8, *) win twice -> 3 / 4
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    # a tied pair counts one half: (0.4, 0.4) tie, (0.4, 0.1) win -> 1.5 / 2
    assert auc(np.array([0, 1, 0]), np.array([0.4, 0.4, 0.1])) == pytest.approx(0.75)
    assert auc(np.array([0, 1]), np.array([0.0, 1.0])) == 1.0
    assert auc(np.array([1, 0]), np.array([0.0, 1.0])) == 0.0


def test_auc_is_the_pairwise_win_rate():
    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.3
    s = np.round(rng.normal(size=300) + y, 1)  # rounded: ties between classes
    pos, neg = s[y], s[~y]
    wins = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc(y.astype(float), s) == pytest.approx(wins)


def test_auc_of_one_class_is_nan():
    assert np.isnan(auc(np.ones(4), np.arange(4.0)))
    assert np.isnan(auc(np.zeros(4), np.arange(4.0)))


def test_spearman_by_hand_and_like_scipy():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, a**3) == pytest.approx(1.0)  # any increasing map
    assert spearman(a, -a) == pytest.approx(-1.0)
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 5, 100), rng.integers(0, 5, 100)
    assert spearman(x, y) == pytest.approx(st.spearmanr(x, y).statistic)


def test_qini_curve_by_hand():
    # ranked by score: T(y=1), C(y=0), T(y=0), C(y=1)
    score = np.array([0.9, 0.7, 0.5, 0.1])
    treated = np.array([1, 0, 1, 0])
    response = np.array([1.0, 0.0, 0.0, 1.0])
    frac, q = qini_curve(score[::-1], treated[::-1], response[::-1])  # order of rows is free
    np.testing.assert_allclose(frac, [0.0, 0.25, 0.5, 0.75, 1.0])
    # top 1: R_T = 1, no control -> 1; top 2: 1 − 0·1/1; top 3: 1 − 0·2/1; all: 1 − 1·2/2
    np.testing.assert_allclose(q, [0.0, 1.0, 1.0, 1.0, 0.0])
    # area 0.75 above the random line (which ends at Q = 0), per treated user (2)
    assert qini_coefficient(score, treated, response) == pytest.approx(0.375)


def test_qini_curve_thins_to_n_points_and_keeps_both_ends():
    rng = np.random.default_rng(3)
    n = 1000
    frac, q = qini_curve(rng.random(n), rng.random(n) < 0.5, rng.random(n), n_points=11)
    assert len(frac) == len(q) == 12  # 0 plus 11 points
    assert frac[0] == 0.0 and q[0] == 0.0 and frac[-1] == 1.0
    assert (np.diff(frac) > 0).all()


def test_qini_coefficient_is_positive_for_a_score_that_finds_the_uplift():
    rng = np.random.default_rng(4)
    n = 4000
    uplift = rng.random(n)  # true individual effect of treatment
    treated = rng.random(n) < 0.5
    response = rng.normal(size=n) + 2 * uplift * treated
    good = qini_coefficient(uplift, treated, response)
    bad = qini_coefficient(-uplift, treated, response)
    assert good > 0 > bad


def test_auuc_by_hand():
    true = np.array([3.0, 0.0, -1.0, 2.0])
    # best order 3, 2, 0, -1: gains 3, 5, 5, 4 -> area 3.75; random: 0.5 · 4 = 2
    # this score ranks 3, 0, 2, -1: gains 3, 3, 5, 4 -> area 3.25 -> (3.25 − 2) / (3.75 − 2)
    score = np.array([4.0, 3.0, 1.0, 2.0])
    assert auuc(score, true) == pytest.approx(5 / 7)
    assert auuc(true, true) == pytest.approx(1.0)
    assert auuc(-true, true) == pytest.approx(-1.0)  # gains −1, −1, 1, 4: area 0.25


def test_auuc_without_headroom_is_nan():
    # every user has the same uplift: every order is the best and the random one
    assert np.isnan(auuc(np.array([0.3, 0.1, 0.2, 0.4]), np.ones(4)))
