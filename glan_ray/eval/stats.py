"""A/B statistics over users: ratio-of-sums metrics, relative differences, 95% CIs, p-values.

Every metric is a ratio of per-unit sums R = ΣY / ΣX (a plain mean has X = 1; PDR has Y = drop-
offs and X = sessions; LT has Y = active days in the last week and X = ever active). Its standard
error comes from the delta method: the linearised values L_u = (Y_u − R·X_u) / X̄ have mean 0 and
Var(R̂) ≈ Var(L)/n. Arms that ran the same users with common random numbers are compared paired
(the variance of L_arm − L_control per user); disjoint populations (the A/A split) unpaired
(Welch). The relative difference (R_a − R_c)/R_c carries the CI of the difference scaled by R_c.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as st


@dataclass(frozen=True)
class Comparison:
    """An arm against control on one metric."""

    control: float
    arm: float
    diff: float
    rel_pct: float
    ci_low_pct: float
    ci_high_pct: float
    p_value: float
    n: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def ratio(y: np.ndarray, x: np.ndarray | None = None) -> float:
    x = np.ones_like(y, dtype=float) if x is None else x
    return float(np.sum(y) / np.sum(x)) if np.sum(x) else float("nan")


def linearized(y: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
    """Per-unit linearisation of R = ΣY/ΣX (delta method): mean 0, Var(R̂) ≈ Var(L)/n."""
    y = np.asarray(y, dtype=float)
    x = np.ones_like(y) if x is None else np.asarray(x, dtype=float)
    xbar = x.mean()
    if xbar == 0:
        return np.zeros_like(y)
    return (y - ratio(y, x) * x) / xbar


def compare(
    y_arm: np.ndarray,
    y_ctl: np.ndarray,
    x_arm: np.ndarray | None = None,
    x_ctl: np.ndarray | None = None,
    paired: bool = True,
    level: float = 0.95,
    pre: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None] | None = None,
) -> Comparison:
    """Arm vs control on R = ΣY/ΣX: relative difference in %, its CI, and a two-sided p-value.

    ``pre`` = (y_pre_arm, y_pre_ctl, x_pre_arm, x_pre_ctl): the same units' sums over a period
    before the treatment (the A/A phase), for an unpaired comparison adjusted by CUPED (Deng et
    al. 2013) on the linearised values: diff − θ·(R_pre,arm − R_pre,ctl) with the pooled
    within-arm θ = cov(L, P) / var(P), and the variance of L − θ·P. It removes the buckets'
    pre-existing imbalance and most of the between-user variance.
    """
    r_a, r_c = ratio(y_arm, x_arm), ratio(y_ctl, x_ctl)
    l_a, l_c = linearized(y_arm, x_arm), linearized(y_ctl, x_ctl)
    shift = 0.0
    if pre is not None:
        if paired:
            raise ValueError("pre: CUPED adjusts unpaired comparisons only")
        yp_a, yp_c, xp_a, xp_c = pre
        p_a, p_c = linearized(yp_a, xp_a), linearized(yp_c, xp_c)
        if len(p_a) != len(l_a) or len(p_c) != len(l_c):
            raise ValueError("pre: the pre-period sums must cover the same units")
        var_p = float(np.sum(p_a**2) + np.sum(p_c**2))  # linearised values have mean 0
        theta = float(np.sum(l_a * p_a) + np.sum(l_c * p_c)) / var_p if var_p else 0.0
        shift = theta * (ratio(yp_a, xp_a) - ratio(yp_c, xp_c))
        l_a, l_c = l_a - theta * p_a, l_c - theta * p_c
    if paired:
        if len(l_a) != len(l_c):
            raise ValueError(f"paired comparison needs equal units; got {len(l_a)}, {len(l_c)}")
        n = len(l_a)
        se = float(np.std(l_a - l_c, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        df: float = n - 1
    else:
        n = len(l_a) + len(l_c)
        va, vc = np.var(l_a, ddof=1) / len(l_a), np.var(l_c, ddof=1) / len(l_c)
        se = float(np.sqrt(va + vc))
        df = (va + vc) ** 2 / (va**2 / (len(l_a) - 1) + vc**2 / (len(l_c) - 1)) if se else 1.0
    diff = r_a - r_c - shift
    if se > 0:
        p = float(2 * st.t.sf(abs(diff) / se, df))
        half = float(st.t.ppf(0.5 + level / 2, df) * se)
    else:
        p, half = (1.0 if diff == 0 else 0.0), 0.0
    scale = 100.0 / r_c if r_c else float("nan")
    return Comparison(
        control=r_c,
        arm=r_a,
        diff=diff,
        rel_pct=diff * scale,
        ci_low_pct=(diff - half) * scale,
        ci_high_pct=(diff + half) * scale,
        p_value=p,
        n=n,
    )


def uplift_captured(arm: float, base: float, oracle: float) -> float:
    """(arm − base) / (oracle − base): the share of the oracle's gain over ``base`` an arm
    recovers (``base`` = logging: uplift captured; = the best constant page: personalization
    uplift captured). Holds for either metric direction: the sign follows the oracle's."""
    gap = oracle - base
    return float((arm - base) / gap) if gap else float("nan")
