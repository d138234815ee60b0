"""The simulator's days written as raw page-visit events (docs/ingest.md, "Round trip").

One row per page visit, in the raw-event contract ``glan-ray ingest`` reads: a session's visits
follow its ``page_seq`` back to back from the session's start (``day`` and ``hour``), each for
the page's consumption ``dur`` (its dwell), with the page's videos viewed; the first visit is
the landing decision (``landing``); every visit carries the session's landing ``propensity``,
its ``live_count`` (a context input) and, on a randomised user-day, its ``treatment``. The profile
goes to a separate users table (``users_table``, ingest's ``--users``).

The simulator has no clock inside a day beyond each entry's hour: a session takes no time, so a
user's next entry can start before the previous session's pages were consumed (3.7% of
consecutive sessions in the default world overlap, 27% start less than 1800 s after the
previous one ended). Ingest would merge those (or refuse overlapping visits), so ``EventExport
.gap_s`` spaces them: a session that starts less than ``gap_s`` after the user's previous one
ended is delayed to exactly that, and its hour moves with it (``ExportSummary`` counts them;
``shifts`` lists them). Ingest them with a spec whose ``session_gap_s`` is ``gap_s``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from glan_ray.sim.engine import DayLog

DAY_S = 86_400.0
MONDAY = (datetime.date(2026, 1, 5) - datetime.date(1970, 1, 1)).days
"""The UTC day (days since 1970-01-01) of Monday 2026-01-05: simulated day 0 of a world whose
``start_weekday`` is 0 (Monday) lands on it, so the events' UTC weekdays are the simulator's."""
SESSION_COLUMNS = frozenset({"user_id", "day", "session_idx", "hour", "propensity", "page_seq",
                             "dur", "views"})  # fmt: skip
"""The columns ``session_events`` reads itself; any other is carried onto every visit."""
CLOSE_S = (0.0, 60.0, 300.0, 1800.0)
"""Thresholds (s) at which ``ExportSummary.closer_than`` counts sessions before spacing."""


def epoch_day(start_weekday: int) -> int:
    """The UTC day of simulated day 0 for a world starting on ``start_weekday`` (0 = Monday)."""
    if not 0 <= start_weekday <= 6:
        raise ValueError(f"start_weekday must be in [0, 6], got {start_weekday}")
    return MONDAY + start_weekday


@dataclass(frozen=True)
class EventExport:
    """How simulated sessions become raw events."""

    pages: tuple[str, ...] = ("featured", "explore", "following")
    """Page names in action order (the spec's ``pages``): action ``a`` is ``pages[a]``."""
    epoch_day: int = MONDAY
    """UTC day of simulated day 0: visit ``ts`` = (epoch_day + day) · 86400 + hour · 3600 + …"""
    gap_s: float = 1800.0
    """The session gap the events will be ingested with (the spec's ``session_gap_s``): a
    session starting less than this after the user's previous session ended is delayed to
    start exactly this long after it."""

    def __post_init__(self) -> None:
        if len(self.pages) < 2:
            raise ValueError(f"EventExport.pages: at least 2 pages; got {list(self.pages)}")
        if not 0 < self.gap_s <= DAY_S:
            raise ValueError(f"EventExport.gap_s must be in (0, 86400]; got {self.gap_s}")


@dataclass
class ExportSummary:
    """What an export wrote and how much spacing the sessions needed."""

    sessions: int = 0
    """Sessions exported."""
    visits: int = 0
    """Event rows (page visits) written."""
    shifted: int = 0
    """Sessions delayed because they started less than ``gap_s`` after the previous ended."""
    max_shift_s: float = 0.0
    """The largest delay (s)."""
    shifted_to_next_day: int = 0
    """Delayed sessions whose new start falls on the next UTC day (ingest dates them there)."""
    cross_midnight: int = 0
    """Sessions whose last visit ends after the midnight following their start."""
    closer_than: dict[str, int] = field(default_factory=dict)
    """Before spacing: sessions starting less than ``s`` seconds after the same user's previous
    session ended, by threshold ``s`` (``CLOSE_S`` and ``gap_s``); "0" counts overlaps."""
    pairs: int = 0
    """Sessions that have a previous session of the same user (the base of ``closer_than``)."""

    def add(self, other: ExportSummary) -> None:
        for name in ("sessions", "visits", "shifted", "shifted_to_next_day", "cross_midnight",
                     "pairs"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_shift_s = max(self.max_shift_s, other.max_shift_s)
        for k, v in other.closer_than.items():
            self.closer_than[k] = self.closer_than.get(k, 0) + v


class LastEnds:
    """Each user's last session end (ts), carried from one chunk of days to the next."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.ends = np.zeros(0)

    def get(self, user_id: np.ndarray) -> np.ndarray:
        """(B,) the last end of each user, -inf for a user never seen."""
        pos = np.searchsorted(self.ids, user_id).clip(0, max(len(self.ids) - 1, 0))
        hit = (self.ids[pos] == user_id) if len(self.ids) else np.zeros(len(user_id), bool)
        return np.where(hit, self.ends[pos] if len(self.ids) else 0.0, -np.inf)

    def put(self, user_id: np.ndarray, end: np.ndarray) -> None:
        """Set the last end of each user in ``user_id`` (distinct ids)."""
        ids = np.concatenate([user_id, self.ids])
        ends = np.concatenate([end, self.ends])
        self.ids, first = np.unique(ids, return_index=True)  # the new value comes first
        self.ends = ends[first]


def visit_starts(start: np.ndarray, dwell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each visit's start (M, P) and the session's end (M,) for sessions starting at ``start``
    (M,) with visits of ``dwell`` (M, P; 0 past the last visit), chained one addition at a time:
    a visit starts exactly where ingest computes the previous one ended (ts + dwell_s)."""
    ts = np.empty_like(dwell)
    end = start.astype(np.float64)
    for j in range(dwell.shape[1]):
        ts[:, j] = end
        end = end + dwell[:, j]
    return ts, end


def at_least(end: np.ndarray, gap_s: float) -> np.ndarray:
    """The first float t >= end + gap_s with t − end >= gap_s in float arithmetic, as ingest
    tests a session break (the rounded sum can fall short by an ulp)."""
    t = end + gap_s
    for _ in range(4):
        short = t - end < gap_s
        if not short.any():
            break
        t = np.where(short, np.nextafter(t, np.inf), t)
    return t


def _spaced_starts(
    user_id: np.ndarray, day: np.ndarray, idx: np.ndarray, start: np.ndarray, dwell: np.ndarray,
    gap_s: float, last: LastEnds,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Starts (M,) after spacing and the gap to the previous end before it (M,; inf: none).

    Sessions are sorted by (user, day, session index); a day's k-th sessions are done together
    (k = 0 reads the carried end of the user's previous day), so the loop runs over session
    indices, not sessions.
    """
    new = start.copy()
    before = np.full(len(start), np.inf)
    for d in np.unique(day):
        rows = np.flatnonzero(day == d)
        for k in range(int(idx[rows].max()) + 1):
            r = rows[idx[rows] == k]
            # k > 0: the same user's session k - 1 is the row before
            prev_end = last.get(user_id[r]) if k == 0 else visit_starts(new[r - 1], dwell[r - 1])[1]
            before[r] = start[r] - prev_end
            soon = start[r] - prev_end < gap_s  # false for a user's first session (-inf)
            new[r[soon]] = np.maximum(start[r[soon]], at_least(prev_end[soon], gap_s))
        ends = visit_starts(new[rows], dwell[rows])[1]
        lastk = np.append(user_id[rows][1:] != user_id[rows][:-1], True)
        last.put(user_id[rows][lastk], ends[lastk])
    return new, before


def session_events(
    cols: Mapping[str, np.ndarray], opts: EventExport, last: LastEnds | None = None
) -> tuple[pa.Table, pa.Table, ExportSummary]:
    """Events of M sessions (sorted by user_id, day, session_idx): (events, shifts, summary).

    ``cols``: user_id, day, session_idx, hour, propensity (M,); page_seq (M, P) page indices in
    visit order padded with -1; dur, views (M, P) per page. Every other column (M,) is a value
    of the session that each of its visits carries (a context input such as live_count, the
    treatment): as an integer or float column of its own dtype; ``treatment`` < 0 means "not a
    randomised user-day" and is written as null.
    ``last`` carries each user's last session end across calls (chunks of days in order).
    ``shifts`` lists the delayed sessions (user_id, day, session_idx, shift_s, next_day: the
    delay moved it past midnight).
    """
    last = last if last is not None else LastEnds()
    user_id = np.asarray(cols["user_id"], dtype=np.int64)
    day = np.asarray(cols["day"], dtype=np.int64)
    idx = np.asarray(cols["session_idx"], dtype=np.int64)
    m = len(user_id)
    key = np.lexsort((idx, day, user_id))
    if m and not np.array_equal(key, np.arange(m)):
        raise ValueError("session_events: sessions must be sorted by user_id, day, session_idx")
    new_day = np.ones(m, dtype=bool)
    new_day[1:] = (user_id[1:] != user_id[:-1]) | (day[1:] != day[:-1])
    starts = np.flatnonzero(new_day)
    gaps = idx != np.arange(m) - np.repeat(starts, np.diff(np.append(starts, m)))
    if gaps.any():
        raise ValueError(f"session_idx: {int(gaps.sum())} session(s) whose index is not their "
                         "rank in the user-day (expected 0, 1, ... per user-day)")  # fmt: skip
    page_seq = np.asarray(cols["page_seq"], dtype=np.int64)  # (M, P)
    dur = np.asarray(cols["dur"], dtype=np.float64)  # (M, P)
    visited = page_seq >= 0  # (M, P): visit j of the session exists
    seq = np.where(visited, page_seq, 0)
    dwell = np.where(visited, np.take_along_axis(dur, seq, 1), 0.0)  # (M, P) in visit order
    hour = np.asarray(cols["hour"], dtype=np.float64)
    start = (opts.epoch_day + day) * DAY_S + hour * 3600.0
    new, before = _spaced_starts(user_id, day, idx, start, dwell, opts.gap_s, last)
    ts, end = visit_starts(new, dwell)  # (M, P), (M,)
    shift = new - start
    moved = shift > 0
    next_day = new >= (opts.epoch_day + day + 1) * DAY_S  # delayed past midnight
    summary = ExportSummary(
        sessions=m, visits=int(visited.sum()), shifted=int(moved.sum()),
        max_shift_s=float(shift.max()) if m else 0.0,
        shifted_to_next_day=int((moved & next_day).sum()),
        cross_midnight=int((end > (np.floor(new / DAY_S) + 1) * DAY_S).sum()),
        closer_than={f"{s:g}": int((before < s).sum()) for s in sorted({*CLOSE_S, opts.gap_s})},
        pairs=int(np.isfinite(before).sum()),
    )  # fmt: skip
    flat = visited.ravel()  # row-major: sessions in order, each session's visits in order
    srow = np.repeat(np.arange(m), visited.shape[1])[flat]
    page = seq.ravel()[flat]
    views = np.take_along_axis(np.asarray(cols["views"], dtype=np.int64), seq, 1).ravel()[flat]
    first = np.zeros_like(visited)
    first[:, 0] = True
    landing = first.ravel()[flat]
    prop = np.asarray(cols["propensity"], dtype=np.float64)[srow]
    out = {
        "user_id": pa.array(user_id[srow]),
        "ts": pa.array(ts.ravel()[flat]),
        "page": pa.DictionaryArray.from_arrays(pa.array(page.astype(np.int32)),
                                               pa.array(list(opts.pages))).cast(pa.string()),
        "dwell_s": pa.array(dwell.ravel()[flat]),
        "views": pa.array(views),
        "landing": pa.array(landing),
        "propensity": pa.array(prop),  # the session's landing decision's, on each visit
    }  # fmt: skip
    for name in sorted(cols.keys() - SESSION_COLUMNS):
        values = np.asarray(cols[name])[srow]
        if name == "treatment":
            out[name] = pa.array(values.astype(np.int64), mask=values < 0)
        else:
            out[name] = pa.array(values)
    shifts = pa.table({"user_id": user_id[moved], "day": day[moved].astype(np.int32),
                       "session_idx": idx[moved].astype(np.int16), "shift_s": shift[moved],
                       "next_day": next_day[moved]})  # fmt: skip
    return pa.table(out), shifts, summary


def daylog_sessions(log: DayLog) -> dict[str, np.ndarray]:
    """The session columns of a simulated ``DayLog`` for ``session_events`` (treatment on an RCT
    day only)."""
    s = log.sessions
    if not s:
        return {}
    rows = s["row"]
    out = {
        "user_id": log.users.user_id[rows],
        "day": np.full(len(rows), log.day),
        "session_idx": s["session_idx"],
        "hour": s["hour"],
        "live_count": s["live_count"],
        "propensity": s["propensity"],
        "page_seq": s["page_seq"],
        "dur": s["dur"],
        "views": s["views"],
    }
    if log.treatment is not None:
        out["treatment"] = log.treatment[rows]
    return out


def table_sessions(sessions: pa.Table, rct: pa.Table | None = None) -> dict[str, np.ndarray]:
    """The session columns of a ``sessions`` dataset table (``schema.SESSIONS``), sorted, with
    each session's treatment from the ``rct`` table of the same user-days when given."""
    order = np.lexsort([sessions[c].to_numpy() for c in ("session_idx", "day", "user_id")])
    t = sessions.take(pa.array(order))
    n_pages = t.schema.field("dur").type.list_size
    seq_col = t["page_seq"].combine_chunks()
    if seq_col.null_count:
        raise ValueError(f"sessions.page_seq: {seq_col.null_count} null row(s); raw events need "
                         "each session's visit order (a decision log's is unknown)")  # fmt: skip
    lengths = seq_col.value_lengths().to_numpy()
    page_seq = np.full((len(t), n_pages), -1, dtype=np.int64)
    page_seq[np.arange(n_pages)[None, :] < lengths[:, None]] = seq_col.flatten().to_numpy()

    def fixed(name: str) -> np.ndarray:
        return t[name].combine_chunks().flatten().to_numpy().reshape(len(t), n_pages)

    out = {c: t[c].to_numpy() for c in ("user_id", "day", "session_idx", "hour", "live_count",
                                         "propensity")}  # fmt: skip
    out |= {"page_seq": page_seq, "dur": fixed("dur"), "views": fixed("video_views")}
    if rct is not None:
        out["treatment"] = _lookup(rct, out["user_id"], out["day"], "treatment")
    return out


def _lookup(table: pa.Table, user_id: np.ndarray, day: np.ndarray, column: str) -> np.ndarray:
    """``table[column]`` at each (user_id, day); a missing user-day is an error naming it."""
    key = table["user_id"].to_numpy().astype(np.int64) * 100_000 + table["day"].to_numpy()
    want = user_id.astype(np.int64) * 100_000 + day
    order = np.argsort(key)
    pos = np.searchsorted(key, want, sorter=order).clip(0, max(len(key) - 1, 0))
    hit = key[order[pos]] == want if len(key) else np.zeros(len(want), bool)
    if not hit.all():
        raise ValueError(f"rct: no row for {int((~hit).sum())} session(s)' user-day, e.g. "
                         f"user {user_id[~hit][0]} day {day[~hit][0]}")  # fmt: skip
    return table[column].to_numpy()[order[pos]]


def users_table(profile: Mapping[str, np.ndarray]) -> pa.Table:
    """The users table keyed by ``user_id`` (ingest's ``--users``): one row per distinct user,
    the first value each profile column has for it."""
    ids, first = np.unique(np.asarray(profile["user_id"], dtype=np.int64), return_index=True)
    return pa.table({"user_id": ids, **{k: np.asarray(v)[first] for k, v in profile.items()
                                        if k != "user_id"}})  # fmt: skip


__all__ = ["MONDAY", "EventExport", "ExportSummary", "LastEnds", "daylog_sessions", "epoch_day",
           "session_events", "table_sessions", "users_table"]  # fmt: skip
