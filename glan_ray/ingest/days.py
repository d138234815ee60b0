"""Per user-day totals of a block's sessions, and the statistics t and sequences read from them.

Every user of the block gets every day of the input's day range (a day without a session is a
day of 0 usage, 0 sessions). A statistic of day d over a w-day window is the mean of the daily
totals over days d−w … d−1: the window ends yesterday, and days before the input's first day
count as 0 (SPEC §2; ``apps.quantities.STATISTICS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glan_ray.ingest.sessionize import Sessions


@dataclass(frozen=True)
class DayGrid:
    """Daily totals of U users over D days, with ``pad`` days of zeros before the first."""

    users: np.ndarray
    """(U,) the block's user ids, sorted."""
    first_day: int
    """The input's first UTC day (day index 0 of the grid)."""
    pad: int
    """Zero days before day 0: the longest window or sequence."""
    usage: np.ndarray
    """(U, pad + D) usage time (s) per day."""
    sessions: np.ndarray
    """(U, pad + D) sessions per day."""
    page_dur: np.ndarray
    """(U, pad + D, P) consumption (s) per page per day."""
    page_entries: np.ndarray
    """(U, pad + D, P) landings per page per day."""

    @property
    def n_days(self) -> int:
        return self.usage.shape[1] - self.pad


def day_grid(s: Sessions, users: np.ndarray, first_day: int, n_days: int, n_pages: int,
             pad: int) -> DayGrid:  # fmt: skip
    """Sum the sessions ``s`` into their users' days."""
    u = np.searchsorted(users, s.user_id)  # (S,)
    d = s.day - first_day + pad  # (S,)
    width = pad + n_days
    cell = u * width + d  # (S,)
    size = len(users) * width

    def total(w: np.ndarray) -> np.ndarray:
        return np.bincount(cell, weights=w, minlength=size).reshape(len(users), width)

    page_cell = cell * n_pages + s.action
    entries = np.bincount(page_cell, minlength=size * n_pages).astype(np.float64)
    page_dur = np.stack([total(s.dur[:, p]) for p in range(n_pages)], axis=2)  # (U, W, P)
    return DayGrid(users=users, first_day=first_day, pad=pad, usage=total(s.usage),
                   sessions=np.bincount(cell, minlength=size).reshape(len(users), width
                                                                       ).astype(np.float64),
                   page_dur=page_dur,
                   page_entries=entries.reshape(len(users), width, n_pages))  # fmt: skip


def _window(c: np.ndarray, ui: np.ndarray, col: np.ndarray, w: int) -> np.ndarray:
    """Mean of the days ``col - w … col - 1`` per row, (R,) or (R, P), from ``c``, the totals
    summed along the days with a leading 0 (a window of days without sessions is exactly 0)."""
    return (c[ui, col] - c[ui, col - w]) / w


def _cumulative(x: np.ndarray) -> np.ndarray:
    """(U, 1 + W, ...) sums of the first k days of ``x`` (U, W, ...)."""
    zero = np.zeros((x.shape[0], 1, *x.shape[2:]))
    return np.concatenate([zero, np.cumsum(x, axis=1)], axis=1)


def stats_at(g: DayGrid, windows: dict[str, tuple[int, ...]], ui: np.ndarray, di: np.ndarray
             ) -> dict[str, np.ndarray]:  # fmt: skip
    """The statistics columns ``{quantity}_{w}d`` at the start of day ``di`` (grid index) of
    user ``ui`` (index into ``g.users``), float32: (R,) or (R, P) per page."""
    col = di + g.pad
    src = {"usage": g.usage, "sessions": g.sessions, "page_dur": g.page_dur,
           "page_entries": g.page_entries}  # fmt: skip
    out = {}
    for q, ws in windows.items():
        c = _cumulative(src[q])
        out.update({f"{q}_{w}d": _window(c, ui, col, w).astype(np.float32) for w in ws})
    return out


def sequence(x: np.ndarray, g: DayGrid, ui: np.ndarray, di: np.ndarray, n: int) -> np.ndarray:
    """(R, n) float32: ``x`` on the n days before day ``di``, index 0 = yesterday."""
    idx = (di + g.pad - 1)[:, None] - np.arange(n)[None, :]  # (R, n)
    return x[ui[:, None], idx].astype(np.float32)


__all__ = ["DayGrid", "day_grid", "sequence", "stats_at"]
