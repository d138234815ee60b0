"""History features: what the day's earlier sessions say that the observation ``obs`` does not.

``obs`` carries the day's totals (consumption per page, entries, usage) and the last session's
drop-off and exit page. A sequence carries more: which page each session landed on and how long
it held, the exit pages session after session, how the user fared when the app resumed the page
they had just left, what happened at the first session and some sessions ago. ``history_features``
summarises that in ``schema.HIST_FEATURES`` (with each page's landings today and how long
they held); it is the one implementation used by the premise
diagnostics (``glan_ray.diagnose``), by the ``klan_iit_hist`` control arm at inference (from the
simulator's ``IntraDayHistory``) and by its training data (``with_history``, from the
``sessions`` dataset).

Every input is a per-user-day array padded to S sessions, of which the first ``length`` are the
completed sessions before the decision being made.
"""

from __future__ import annotations

import numpy as np

from glan_ray.schema import HIST_DIM, N_PAGES, OBS_FEATURES

LAST_EXIT_COLS = [
    OBS_FEATURES.index(f"last_exit_{p}") for p in ("featured", "explore", "following")
]
"""Columns of ``obs`` holding the last-exit page one-hot."""

BINGE_S = 600.0
"""A Featured landing longer than this (s) counts as a binge (``binges_recent``)."""
DUR_LOG_SCALE = 7.0
"""Landing durations enter as log1p(seconds) / 7 (log1p of 1,100 s is 7)."""
COUNT_SCALE = 5.0
"""Counts of sessions enter divided by 5."""


def _at(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """x[b, idx[b]] for (B, S) x, with idx clipped into range (callers mask the invalid)."""
    return np.take_along_axis(x, np.clip(idx, 0, x.shape[1] - 1)[:, None], axis=1)[:, 0]


def history_features(
    length: np.ndarray,
    action: np.ndarray,
    dur: np.ndarray,
    y_sw: np.ndarray,
    exit_page: np.ndarray,
    obs: np.ndarray,
) -> np.ndarray:
    """History features (B, HIST_DIM) float32 in ``schema.HIST_FEATURES`` order.

    ``length`` (B,) completed sessions today; ``action`` (B, S) landing pages; ``dur`` (B, S, 3)
    consumption per page (s); ``y_sw`` (B, S) drop-off flags; ``exit_page`` (B, S) the page each
    session exited from (-1 where unknown: that session counts as no exit); ``obs`` (B, S,
    OBS_DIM) the observation at each session's entry, whose last-exit one-hot says which page a
    landing would *resume* (for the first session, yesterday's last exit).
    Entries at or after ``length`` are ignored, whatever they hold.
    """
    length = np.asarray(length, dtype=np.int64)
    b, s = np.shape(action)
    valid = np.arange(s)[None, :] < length[:, None]  # (B, S)
    act = np.where(valid, np.asarray(action, dtype=np.int64), 0)  # (B, S)
    drop = np.where(valid, np.asarray(y_sw, dtype=np.float64), 0.0)  # (B, S)
    exit_ = np.where(valid, np.asarray(exit_page, dtype=np.int64), -1)  # (B, S)
    land = np.take_along_axis(np.asarray(dur, dtype=np.float64), act[:, :, None], axis=2)[:, :, 0]
    land_log = np.where(valid, np.log1p(np.maximum(land, 0.0)) / DUR_LOG_SCALE, 0.0)  # (B, S)
    has = length >= 1
    last = length - 1

    def lag(x: np.ndarray, k: int) -> np.ndarray:
        """x at the session k before the decision (0 where the day has fewer)."""
        return np.where(length >= k, _at(x, length - k), 0.0)

    last_page = np.zeros((b, N_PAGES))
    last_page[np.flatnonzero(has), act[has, last[has]]] = 1.0
    exits = np.stack([(exit_ == p).sum(1) for p in range(N_PAGES)], axis=1) / COUNT_SCALE
    # A resume: a landing on the page the user last exited from when the session began.
    onehot = np.asarray(obs)[:, :s, LAST_EXIT_COLS]  # (B, S, 3)
    prev_exit = np.where(onehot.max(2) > 0.5, onehot.argmax(2), -1)  # (B, S)
    resume = valid & (act == prev_exit)
    other = valid & (prev_exit >= 0) & ~resume
    n_res, n_oth = resume.sum(1), other.sum(1)
    mean_res = (land_log * resume).sum(1) / np.maximum(n_res, 1)
    mean_oth = (land_log * other).sum(1) / np.maximum(n_oth, 1)
    contrast = np.where((n_res > 0) & (n_oth > 0), mean_res - mean_oth, 0.0)
    # per page: landings today and their mean log duration (obs has only the day's consumption
    # per page, navigation included, and no landing counts)
    landings = np.stack([(valid & (act == p)).sum(1) for p in range(N_PAGES)], axis=1)  # (B, 3)
    page_mean = np.stack(
        [(land_log * (valid & (act == p))).sum(1) for p in range(N_PAGES)], axis=1
    ) / np.maximum(landings, 1)  # (B, 3)
    recent = valid & (np.arange(s)[None, :] >= (length - 3)[:, None])
    binges = (recent & (act == 0) & (land > BINGE_S)).sum(1)
    cols = [
        drop.sum(1) / COUNT_SCALE,
        lag(drop, 2),
        lag(drop, 3),
        np.where(has, drop[:, 0], 0.0),
        np.where(has, land_log[:, 0], 0.0),
        np.where(has, _at(land_log, last), 0.0),
        *last_page.T,
        *exits.T,
        n_res / COUNT_SCALE,
        np.where(has, _at(resume.astype(np.float64), last), 0.0),
        contrast,
        binges / COUNT_SCALE,
        *(landings / COUNT_SCALE).T,
        *page_mean.T,
    ]
    out = np.stack([np.asarray(c, dtype=np.float32) for c in cols], axis=1)
    assert out.shape == (b, HIST_DIM), out.shape
    return out


def day_arrays(
    session_idx: np.ndarray,
    group: np.ndarray,
    action: np.ndarray,
    dur: np.ndarray,
    y_sw: np.ndarray,
    exit_page: np.ndarray,
    obs: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Padded per-user-day arrays from flat session rows.

    ``group`` (M,) numbers each row's user-day 0..G-1; ``session_idx`` (M,) its index within the
    day (0, 1, ... without gaps, as the ``sessions`` dataset has them). Returns (``row_day``,
    ``action`` (G, S), ``dur`` (G, S, 3), ``y_sw`` (G, S), ``exit_page`` (G, S), ``n`` (G,),
    ``obs`` (G, S, OBS_DIM)) with S the longest day, -1 / 0 padding; ``row_day`` is
    ``group`` as int64.
    """
    g = np.asarray(group, dtype=np.int64)
    t = np.asarray(session_idx, dtype=np.int64)
    n_days = int(g.max()) + 1 if g.size else 0
    s = int(t.max()) + 1 if t.size else 1
    a = np.full((n_days, s), -1, dtype=np.int64)
    d = np.zeros((n_days, s, N_PAGES))
    y = np.zeros((n_days, s))
    e = np.full((n_days, s), -1, dtype=np.int64)
    a[g, t] = action
    d[g, t] = dur
    y[g, t] = y_sw
    e[g, t] = exit_page
    n = np.bincount(g, minlength=n_days)
    o = np.zeros((n_days, s, np.shape(obs)[1]), dtype=np.float32)
    o[g, t] = obs
    return g, a, d, y, e, n, o


def features_before_each(
    session_idx: np.ndarray,
    group: np.ndarray,
    action: np.ndarray,
    dur: np.ndarray,
    y_sw: np.ndarray,
    exit_page: np.ndarray,
    obs: np.ndarray,
) -> np.ndarray:
    """History features (M, HIST_DIM) of each session row: the day's sessions before it.

    The same arguments as ``day_arrays`` (``obs`` (M, OBS_DIM): each session's observation);
    row i sees the ``session_idx[i]`` sessions of its day that came before it.
    """
    g, a, d, y, e, _, o = day_arrays(session_idx, group, action, dur, y_sw, exit_page, obs)
    t = np.asarray(session_idx, dtype=np.int64)
    return history_features(t, a[g], d[g], y[g], e[g], o[g])


__all__ = [
    "BINGE_S",
    "LAST_EXIT_COLS",
    "day_arrays",
    "features_before_each",
    "history_features",
]
