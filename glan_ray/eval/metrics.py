"""Prediction-quality metrics (numpy, no dependencies): AUC, rank correlation, uplift curves."""

from __future__ import annotations

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing their mean rank."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    sorted_x = x[order]
    _, start, counts = np.unique(sorted_x, return_index=True, return_counts=True)
    for s, c in zip(start, counts, strict=True):
        if c > 1:
            ranks[order[s : s + c]] = s + (c + 1) / 2.0
    return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the Mann–Whitney statistic; NaN when only one class is present."""
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _ranks(scores)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation."""
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def qini_curve(
    uplift_score: np.ndarray, treated: np.ndarray, response: np.ndarray, n_points: int = 101
) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve: incremental response when targeting the top fraction by predicted uplift.

    Q(φ) = R_T(φ) − R_C(φ)·N_T(φ)/N_C(φ) over the top-φ users (treated vs control among
    them). Returns (fractions, Q).
    """
    order = np.argsort(-np.asarray(uplift_score), kind="mergesort")
    t = np.asarray(treated, dtype=bool)[order]
    y = np.asarray(response, dtype=float)[order]
    n_t, n_c = np.cumsum(t), np.cumsum(~t)
    r_t, r_c = np.cumsum(y * t), np.cumsum(y * ~t)
    q = r_t - np.divide(r_c * n_t, n_c, out=np.zeros(len(y)), where=n_c > 0)
    idx = np.unique(np.linspace(0, len(y) - 1, n_points).astype(int))
    frac = (idx + 1) / len(y)
    return np.concatenate([[0.0], frac]), np.concatenate([[0.0], q[idx]])


def qini_coefficient(uplift_score: np.ndarray, treated: np.ndarray, response: np.ndarray) -> float:
    """Area between the Qini curve and the random-targeting line, per treated user."""
    frac, q = qini_curve(uplift_score, treated, response)
    random = frac * q[-1]
    area = np.trapezoid(q - random, frac)
    return float(area / max(np.sum(treated), 1))


def auuc(uplift_score: np.ndarray, true_uplift: np.ndarray, n_points: int = 101) -> float:
    """Area under the cumulative true-uplift curve when ranking by predicted uplift,
    normalised so that random ranking scores 0 and the perfect ranking scores 1.

    Needs the true individual uplift, which the simulator knows (``response_cf``)."""

    def area(order: np.ndarray) -> float:
        gain = np.cumsum(np.asarray(true_uplift)[order])
        idx = np.unique(np.linspace(0, len(gain) - 1, n_points).astype(int))
        frac = np.concatenate([[0.0], (idx + 1) / len(gain)])
        return float(np.trapezoid(np.concatenate([[0.0], gain[idx]]), frac))

    model = area(np.argsort(-np.asarray(uplift_score), kind="mergesort"))
    best = area(np.argsort(-np.asarray(true_uplift), kind="mergesort"))
    rand = 0.5 * float(np.sum(true_uplift))
    return (model - rand) / (best - rand) if best != rand else float("nan")
