"""Visits → sessions for a block of whole users, vectorised (no per-row Python).

A session is a maximal run of a user's visits where each visit starts less than
``spec.session_gap_s`` after the previous visit ended (``ts + dwell_s``). Its landing page is
its first visit's page, its exit page its last visit's; it is a drop-off (y_sw = 1) when the
first visit's dwell is under ``spec.dropoff_s``; its usage time is the sum of its dwells. A
session belongs to the UTC day its first visit starts on; ``session_idx`` counts the user's
sessions of that day from 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from glan_ray.ingest.events import DAY_S


@dataclass(frozen=True)
class Visits:
    """A block's good visits sorted by (user, ts, dwell); V rows."""

    user_id: np.ndarray
    """(V,) int64."""
    t: np.ndarray
    """(V,) float64 start, seconds since the epoch."""
    page: np.ndarray
    """(V,) int64 page index in the spec's pages."""
    dwell: np.ndarray
    """(V,) float64 seconds on the page."""
    views: np.ndarray
    """(V,) int64 videos viewed."""


def visit_order(user_id: np.ndarray, t: np.ndarray, dwell: np.ndarray) -> np.ndarray:
    """The permutation that sorts visits by user, then start, then dwell."""
    return np.lexsort((dwell, t, user_id))


def overlapping(user_id: np.ndarray, t: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(V,) bool for visits sorted by (user, t): the visit starts before an earlier visit of its
    user ended. Without such visits, every visit starts after the previous one ended."""
    prev_end = pd.Series(end).groupby(user_id, sort=False).cummax().to_numpy()  # (V,)
    first = np.ones(len(t), dtype=bool)
    first[1:] = user_id[1:] != user_id[:-1]
    prev = np.empty_like(prev_end)
    prev[1:] = prev_end[:-1]
    return ~first & (t < np.where(first, -np.inf, prev))


@dataclass(frozen=True)
class Sessions:
    """A block's sessions in (user, start) order; S rows, P pages."""

    first: np.ndarray
    """(S,) index of the session's first visit."""
    n_visits: np.ndarray
    """(S,) visits in the session."""
    user_id: np.ndarray
    """(S,) int64."""
    day: np.ndarray
    """(S,) int64 UTC day of the first visit."""
    hour: np.ndarray
    """(S,) float64 hour of the day of the first visit, [0, 24)."""
    action: np.ndarray
    """(S,) int64 landing page."""
    exit_page: np.ndarray
    """(S,) int64 the last visit's page."""
    dur: np.ndarray
    """(S, P) float64 seconds per page."""
    views: np.ndarray
    """(S, P) int64 videos viewed per page."""
    y_sw: np.ndarray
    """(S,) bool drop-off: the landing visit's dwell under the threshold."""
    usage: np.ndarray
    """(S,) float64 the session's dwell summed."""
    session_idx: np.ndarray
    """(S,) int64 index among the user's sessions of the day."""
    day_start: np.ndarray
    """(S,) bool the first session of its user-day."""

    @property
    def day_end(self) -> np.ndarray:
        """(S,) bool the last session of its user-day."""
        out = np.ones(len(self.day_start), dtype=bool)
        out[:-1] = self.day_start[1:]
        return out


def sessionize(v: Visits, n_pages: int, gap_s: float, dropoff_s: float) -> Sessions:
    """Split sorted, non-overlapping visits into sessions and derive their features."""
    n = len(v.t)
    end = v.t + v.dwell
    new = np.ones(n, dtype=bool)
    new[1:] = (v.user_id[1:] != v.user_id[:-1]) | (v.t[1:] - end[:-1] >= gap_s)
    first = np.flatnonzero(new)  # (S,)
    n_visits = np.diff(np.append(first, n))
    sid = np.cumsum(new) - 1  # (V,) session of each visit
    s = len(first)
    last = first + n_visits - 1
    cell = sid * n_pages + v.page
    dur = np.bincount(cell, weights=v.dwell, minlength=s * n_pages).reshape(s, n_pages)
    views = np.bincount(cell, weights=v.views, minlength=s * n_pages).reshape(s, n_pages)
    t0 = v.t[first]
    day = np.floor(t0 / DAY_S).astype(np.int64)
    uid = v.user_id[first]
    day_start = np.ones(s, dtype=bool)
    day_start[1:] = (uid[1:] != uid[:-1]) | (day[1:] != day[:-1])
    starts = np.flatnonzero(day_start)
    session_idx = np.arange(s) - np.repeat(starts, np.diff(np.append(starts, s)))
    return Sessions(
        first=first, n_visits=n_visits, user_id=uid, day=day, hour=(t0 - day * DAY_S) / 3600.0,
        action=v.page[first], exit_page=v.page[last], dur=dur,
        views=np.rint(views).astype(np.int64), y_sw=v.dwell[first] < dropoff_s,
        usage=np.bincount(sid, weights=v.dwell, minlength=s), session_idx=session_idx,
        day_start=day_start,
    )  # fmt: skip


def day_context(s: Sessions) -> dict[str, np.ndarray]:
    """The real-time context of each session from the day's earlier sessions: ``today_dur``
    (S, P) consumption per page before it, ``prev_dropoff`` (S,) the day's previous session's
    drop-off (0 for the first), and ``last_exit`` (S,) the page the user last exited the app
    from (the previous session's exit, any day before; 0 for the user's first session)."""
    gid = np.cumsum(s.day_start)  # (S,) user-day of each session
    # summed in session order within the user-day, as the day accumulates (no differences of
    # block-wide sums: the first session's is exactly 0)
    cum = pd.DataFrame(s.dur).groupby(gid, sort=False).cumsum().to_numpy()  # (S, P) inclusive
    today_dur = np.zeros_like(s.dur)
    today_dur[1:] = cum[:-1]
    today_dur[s.day_start] = 0.0
    prev_drop = np.zeros(len(s.day), dtype=np.float64)
    prev_drop[1:] = s.y_sw[:-1]
    prev_drop[s.day_start] = 0.0
    user_first = np.ones(len(s.day), dtype=bool)
    user_first[1:] = s.user_id[1:] != s.user_id[:-1]
    last_exit = np.zeros(len(s.day), dtype=np.int64)
    last_exit[1:] = s.exit_page[:-1]
    last_exit[user_first] = 0
    return {"today_dur": today_dur, "prev_dropoff": prev_drop, "last_exit": last_exit}


__all__ = ["Sessions", "Visits", "day_context", "overlapping", "sessionize", "visit_order"]
