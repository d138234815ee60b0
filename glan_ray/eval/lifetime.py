"""LT, GLAN eq. 31: users' activity over days -> the lifetime metric's sums (the A/B's ``lt``)."""

from __future__ import annotations

import numpy as np

LT_WINDOW = 7
"""Days of DAU summed in LT's numerator (GLAN eq. 31: i from max(T − 6, T0) to T)."""


def lt_units(active: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """GLAN eq. 31 per user over the last ``window`` days of ``active`` (N, D), T0 = its day 0.

    Returns (y, x), (N,) each: y_u = Σ_T (days u was active in [max(T − 6, 0), T]) and
    x_u = Σ_T 1[u active at least once in [0, T]], T over the window; ΣY/ΣX pools the window's
    daily LTs.
    """
    seven, ever = _lt_parts(active)
    return seven[:, -window:].sum(1).astype(float), ever[:, -window:].sum(1).astype(float)


def lt_daily(active: np.ndarray) -> np.ndarray:
    """GLAN eq. 31 on every day T of ``active`` (N, D) with T0 = day 0: (D,)."""
    seven, ever = _lt_parts(active)
    return seven.sum(0) / np.maximum(ever.sum(0), 1)


def _lt_parts(active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) active days in [T − 6, T] and (N, D) ever active in [0, T], per user and day T."""
    c = np.cumsum(active, axis=1)  # (N, D)
    before = np.pad(c, ((0, 0), (LT_WINDOW, 0)))[:, : c.shape[1]]  # c[:, T − 7], 0 before day 0
    return c - before, c > 0


__all__ = ["LT_WINDOW", "lt_daily", "lt_units"]
