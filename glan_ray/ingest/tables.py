"""A block of whole users' visits → the rows of every dataset, sized by the app spec.

Rows follow the simulator's order: ``daily`` and ``trajectories`` by (day, user), ``sessions``
and ``transitions`` by (day, user, session), so a part's sessions are its trajectories' steps
in order (what ``label_hrm`` checks). The labels are the simulator's (``data.tables``):

- daily: every user of the block on every day of the input's range; ``y_wt`` the day's usage
  time, ``y_se`` its sessions, ``is_active`` whether it has one; the 30-day sequences end
  yesterday (index 0);
- sessions: landing page ``action`` and its ``propensity`` (the first visit's), per-page ``dur``
  and ``video_views``, ``page_seq`` (every visit's page), ``n_switches`` (visits − 1), ``y_sw``,
  ``usage_time``; ``watch_time`` and ``value_true`` null;
- transitions: ``reward`` the session's usage time, ``next_obs`` the next session's ``obs`` of
  the same user-day, ``done`` on the day's last session (``next_obs`` = its own ``obs``);
- trajectories: one row per user-day with a session, the sessions' lists; ``reward_hrm`` and
  ``value_true`` null;
- rct: the user-days whose first visit has a treatment; ``response`` the day's usage time and
  ``response_cf`` that same observed response in every slot (a log has no counterfactuals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from glan_ray import schema
from glan_ray.apps import AppSpec
from glan_ray.apps.observation import build_obs
from glan_ray.ingest.days import DayGrid, day_grid, sequence, stats_at
from glan_ray.ingest.sessionize import Sessions, Visits, day_context, sessionize
from glan_ray.schema import SEQ_LEN


@dataclass(frozen=True)
class Block:
    """A block's good visits (sorted by user, ts, dwell) and what goes with them."""

    visits: Visits
    """The visits."""
    propensity: np.ndarray | None
    """(V,) float64 logged propensity of each visit, None: not logged (1 / pages)."""
    treatment: np.ndarray | None
    """(V,) float64 RCT treatment (NaN: not randomised), None: no treatment column."""
    inputs: dict[str, np.ndarray]
    """Context input name -> (V,) values (missing inputs are 0)."""
    users: np.ndarray
    """(U,) the block's user ids, sorted."""
    profile: dict[str, np.ndarray]
    """Profile source field -> (U,) each user's value."""


def weekday(day: np.ndarray) -> np.ndarray:
    """Day of the week of a UTC day number, 0 = Monday (1970-01-01 was a Thursday)."""
    return (day + 3) % 7


def _table(name: str, spec: AppSpec, cols: dict[str, np.ndarray | pa.Array]) -> pa.Table:
    sch = schema.schema_for(name, spec)
    table = pa.Table.from_arrays([schema.arrow_column(f, cols[f.name]) for f in sch], schema=sch)
    return schema.conform(table, name, spec=spec)


def _lists(values: np.ndarray, offsets: np.ndarray, value_type: pa.DataType) -> pa.ListArray:
    inner = (pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()).cast(value_type.value_type),
                                               values.shape[1])
             if values.ndim == 2 else pa.array(values).cast(value_type))  # fmt: skip
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), inner)


def _keys(user_id: np.ndarray, day: np.ndarray) -> dict[str, np.ndarray]:
    return {"user_id": user_id, "day": day, "weekday": weekday(day)}


def build_tables(spec: AppSpec, b: Block, first_day: int, n_days: int) -> dict[str, pa.Table]:
    """Every dataset's rows for block ``b`` (``rct`` only with a treatment column), conformed
    to ``spec``'s schemas; the input's days are ``first_day`` … ``first_day + n_days − 1``."""
    v, n = b.visits, spec.n_pages
    s = sessionize(v, n, spec.session_gap_s, spec.dropoff_s)
    windows = schema.stat_windows(spec)
    pad = max(SEQ_LEN, *(w for ws in windows.values() for w in ws))
    grid = day_grid(s, b.users, first_day, n_days, n, pad)
    order = np.lexsort((s.session_idx, s.user_id, s.day))  # (S,) the simulator's row order
    out = {"sessions": _sessions(spec, b, s, grid, windows, order)}
    sess = out["sessions"]
    out["transitions"] = _transitions(spec, sess)
    out["trajectories"] = _trajectories(spec, b, sess)
    out["daily"] = _daily(spec, b, grid, windows)
    if b.treatment is not None:
        out["rct"] = _rct(spec, b, s, grid, windows)
    return {k: out[k] for k in schema.SCHEMAS if k in out}


def _sessions(spec: AppSpec, b: Block, s: Sessions, grid: DayGrid,
              windows: dict[str, tuple[int, ...]], order: np.ndarray) -> pa.Table:  # fmt: skip
    """The sessions table, rows in ``order`` (computed in ``s``'s user order: the day context
    runs along each user's sessions)."""
    ui = np.searchsorted(b.users, s.user_id)
    di = s.day - grid.first_day
    stats = stats_at(grid, windows, ui, di)
    profile = {k: x[ui] for k, x in b.profile.items()}
    inputs = {k: x[s.first] for k, x in b.inputs.items()}
    ctx = day_context(s)
    obs = build_obs(spec, {**profile, **stats, **inputs, **ctx, "hour": s.hour,
                           "weekday": weekday(s.day), "entries_today": s.session_idx})  # fmt: skip
    prop = (b.propensity[s.first] if b.propensity is not None
            else np.full(len(s.first), 1.0 / spec.n_pages))  # fmt: skip
    offsets = np.append(s.first, len(b.visits.t))
    page_seq = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)),
                                        pa.array(b.visits.page.astype(np.int8)))  # fmt: skip
    null = pa.nulls(len(s.first), pa.float32())
    cols: dict[str, np.ndarray | pa.Array] = {
        **_keys(s.user_id, s.day), "session_idx": s.session_idx, **profile, **stats,
        "hour": s.hour, "entries_today": s.session_idx, **inputs,
        "today_dur": ctx["today_dur"], "video_views": s.views, "page_seq": page_seq,
        "n_switches": s.n_visits - 1, "action": s.action, "propensity": prop, "dur": s.dur,
        "y_sw": s.y_sw, "usage_time": s.usage, "watch_time": null, "value_true": null,
        "obs": obs,
    }  # fmt: skip
    take = pa.array(order)
    return _table("sessions", spec, {
        k: (v if k in ("watch_time", "value_true") else v.take(take)) if isinstance(v, pa.Array)
        else v[order] for k, v in cols.items()})  # fmt: skip


def _np(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type):
        return col.flatten().to_numpy().reshape(len(col), col.type.list_size)
    return col.to_numpy(zero_copy_only=False)


def _day_starts(sess: pa.Table) -> np.ndarray:
    return np.flatnonzero(_np(sess, "session_idx") == 0)


def _transitions(spec: AppSpec, sess: pa.Table) -> pa.Table:
    obs = _np(sess, "obs")
    r = len(obs)
    done = np.ones(r, dtype=bool)
    done[:-1] = _np(sess, "session_idx")[1:] == 0  # the next row starts another user-day
    nxt = np.minimum(np.arange(r) + 1, max(r - 1, 0))
    next_obs = np.where(done[:, None], obs, obs[nxt])
    cols = {k: sess.column(k) for k in ("user_id", "day", "weekday", "session_idx", "action",
                                        "hour", "entries_today", "propensity")}  # fmt: skip
    return _table("transitions", spec, {**cols, "obs": obs, "reward": _np(sess, "usage_time"),
                                        "next_obs": next_obs, "done": done})  # fmt: skip


def _trajectories(spec: AppSpec, b: Block, sess: pa.Table) -> pa.Table:
    starts = _day_starts(sess)
    r = sess.num_rows
    counts = np.diff(np.append(starts, r))
    offsets = np.append(starts, r)
    usage = _np(sess, "usage_time").astype(np.float64)
    sch = schema.schema_for("trajectories", spec)
    uid = _np(sess, "user_id")[starts]
    ui = np.searchsorted(b.users, uid)

    def lists(col: str, name: str) -> pa.ListArray:
        return _lists(_np(sess, col), offsets, sch.field(name).type.value_type)

    y_wt = np.add.reduceat(usage, starts) if r else np.zeros(0)
    null = pa.nulls(len(starts), pa.list_(pa.float32()))
    return _table("trajectories", spec, {
        **_keys(uid, _np(sess, "day")[starts]), **{k: x[ui] for k, x in b.profile.items()},
        "n_steps": counts, "obs": lists("obs", "obs"), "actions": lists("action", "actions"),
        "hours": lists("hour", "hours"), "reward": lists("usage_time", "reward"),
        "reward_hrm": null, "dropoff": lists("y_sw", "dropoff"),
        "propensity": lists("propensity", "propensity"), "value_true": null,
        "y_wt": y_wt, "y_se": counts,
    })  # fmt: skip


def _daily(spec: AppSpec, b: Block, g: DayGrid, windows: dict[str, tuple[int, ...]]) -> pa.Table:
    u, d = len(b.users), g.n_days
    di = np.repeat(np.arange(d), u)  # (U·D,) day-major: the simulator's order
    ui = np.tile(np.arange(u), d)
    day = g.first_day + di
    col = di + g.pad
    y_se = g.sessions[ui, col]
    return _table("daily", spec, {
        **_keys(b.users[ui], day), **{k: x[ui] for k, x in b.profile.items()},
        **stats_at(g, windows, ui, di),
        "seq_sessions": sequence(g.sessions, g, ui, di, SEQ_LEN),
        "seq_usage": sequence(g.usage, g, ui, di, SEQ_LEN),
        "seq_dt": np.broadcast_to(np.arange(1, SEQ_LEN + 1, dtype=np.int16), (len(ui), SEQ_LEN)),
        "is_active": y_se > 0, "y_wt": g.usage[ui, col], "y_se": y_se,
    })  # fmt: skip


def _rct(spec: AppSpec, b: Block, s: Sessions, g: DayGrid,
         windows: dict[str, tuple[int, ...]]) -> pa.Table:  # fmt: skip
    assert b.treatment is not None
    starts = np.flatnonzero(s.day_start)
    treat = b.treatment[s.first[starts]]
    keep = starts[~np.isnan(treat)]
    order = np.lexsort((s.user_id[keep], s.day[keep]))
    keep = keep[order]
    ui = np.searchsorted(b.users, s.user_id[keep])
    di = s.day[keep] - g.first_day
    response = g.usage[ui, di + g.pad]
    return _table("rct", spec, {
        **_keys(s.user_id[keep], s.day[keep]), **{k: x[ui] for k, x in b.profile.items()},
        **stats_at(g, windows, ui, di), "treatment": b.treatment[s.first[keep]],
        "response": response, "sessions": g.sessions[ui, di + g.pad],
        "response_cf": np.repeat(response[:, None], spec.n_pages + 1, axis=1),
    })  # fmt: skip


__all__ = ["Block", "build_tables", "weekday"]
