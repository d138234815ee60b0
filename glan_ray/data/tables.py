"""Turn a simulated ``DayLog`` into the Arrow tables of the five datasets (schema.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from glan_ray import schema
from glan_ray.schema import SEQ_LEN
from glan_ray.sim.engine import DayLog, user_features


def _fixed(x: np.ndarray, dtype: pa.DataType) -> pa.Array:
    """(R, n) numpy → fixed_size_list<dtype>[n]."""
    return pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(x).ravel(), type=dtype), x.shape[1]
    )


def _table(name: str, cols: dict[str, np.ndarray | pa.Array]) -> pa.Table:
    sch = schema.schema_for(name)
    return pa.Table.from_arrays([schema.arrow_column(f, cols[f.name]) for f in sch], schema=sch)


def _keys(log: DayLog, rows: np.ndarray | slice) -> dict[str, np.ndarray]:
    ids = log.users.user_id[rows]
    return {
        "user_id": ids,
        "day": np.full(len(ids), log.day, dtype=np.int32),
        "weekday": np.full(len(ids), log.weekday, dtype=np.int8),
    }


def _user_and_stats(log: DayLog, rows: np.ndarray | slice) -> dict[str, np.ndarray]:
    return {**user_features(log.users, rows), **{k: v[rows] for k, v in log.stats.items()}}


def daily_table(log: DayLog) -> pa.Table:
    n = len(log.users)
    return _table(
        "daily",
        {
            **_keys(log, slice(None)),
            **_user_and_stats(log, slice(None)),
            "seq_sessions": log.seq_sessions,
            "seq_usage": log.seq_usage,
            "seq_dt": np.broadcast_to(np.arange(1, SEQ_LEN + 1, dtype=np.int16), (n, SEQ_LEN)),
            "is_active": log.active,
            "y_wt": log.y_wt,
            "y_se": log.y_se,
        },
    )


def sessions_table(log: DayLog) -> pa.Table:
    s = log.sessions
    if not s:
        return schema.schema_for("sessions").empty_table()
    rows = s["row"]
    seq_len = s["seq_len"]
    flat = s["page_seq"][np.arange(3)[None, :] < seq_len[:, None]]  # row-major: in order
    offsets = np.concatenate([[0], np.cumsum(seq_len)]).astype(np.int32)
    page_seq = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.int8()))
    return _table(
        "sessions",
        {
            **_keys(log, rows),
            "session_idx": s["session_idx"],
            **_user_and_stats(log, rows),
            "hour": s["hour"],
            "entries_today": s["entries_today"],
            "live_count": s["live_count"],
            "today_dur": s["today_dur"],
            "video_views": s["views"],
            "page_seq": page_seq,
            "n_switches": seq_len - 1,
            "action": s["action"],
            "propensity": s["propensity"],
            "dur": s["dur"],
            "y_sw": s["y_sw"],
            "usage_time": s["usage"],
            "watch_time": s["watch"],
            "value_true": s["value_true"],
            "obs": s["obs"],
        },
    )


def _lists(values: np.ndarray, offsets: pa.Array, dtype: pa.DataType) -> pa.Array:
    inner = _fixed(values, dtype) if values.ndim == 2 else pa.array(values, type=dtype)
    return pa.ListArray.from_arrays(offsets, inner)


def trajectories_table(log: DayLog) -> pa.Table:
    s = log.sessions
    if not s:
        return schema.schema_for("trajectories").empty_table()
    users, counts = np.unique(s["row"], return_counts=True)  # sessions are sorted by row, t
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    null_rewards = pa.nulls(len(users), type=pa.list_(pa.float32()))
    return _table(
        "trajectories",
        {
            **_keys(log, users),
            **user_features(log.users, users),
            "n_steps": counts,
            "obs": _lists(s["obs"], offsets, pa.float32()),
            "actions": _lists(s["action"], offsets, pa.int8()),
            "hours": _lists(s["hour"], offsets, pa.float32()),
            "reward": _lists(s["usage"], offsets, pa.float32()),
            "reward_hrm": null_rewards,
            "dropoff": _lists(s["y_sw"].astype(np.int8), offsets, pa.int8()),
            "propensity": _lists(s["propensity"], offsets, pa.float32()),
            "value_true": _lists(s["value_true"], offsets, pa.float32()),
            "y_wt": log.y_wt[users],
            "y_se": log.y_se[users],
        },
    )


def transitions_table(log: DayLog) -> pa.Table:
    s = log.sessions
    if not s:
        return schema.schema_for("transitions").empty_table()
    rows = s["row"]
    done = np.append(rows[1:] != rows[:-1], True)  # last session of the user's day
    nxt = np.minimum(np.arange(len(rows)) + 1, len(rows) - 1)
    next_obs = np.where(done[:, None], s["obs"], s["obs"][nxt])
    return _table(
        "transitions",
        {
            **_keys(log, rows),
            "session_idx": s["session_idx"],
            "obs": s["obs"],
            "action": s["action"],
            "reward": s["usage"],
            "next_obs": next_obs,
            "done": done,
            "hour": s["hour"],
            "entries_today": s["entries_today"],
            "propensity": s["propensity"],
        },
    )


def rct_table(log: DayLog) -> pa.Table:
    if log.treatment is None or log.response_cf is None:
        raise ValueError("rct_table needs a DayLog simulated in RCT mode")
    return _table(
        "rct",
        {
            **_keys(log, slice(None)),
            **_user_and_stats(log, slice(None)),
            "treatment": log.treatment,
            "response": log.y_wt,
            "sessions": log.y_se,
            "response_cf": log.response_cf,
        },
    )


BUILDERS = {
    "daily": daily_table,
    "sessions": sessions_table,
    "trajectories": trajectories_table,
    "transitions": transitions_table,
    "rct": rct_table,
}


def day_tables(log: DayLog, rct: bool) -> dict[str, pa.Table]:
    """All dataset tables of one simulated day (``rct`` only in RCT mode)."""
    names = [n for n in BUILDERS if rct or n != "rct"]
    return {n: BUILDERS[n](log) for n in names}
