"""The ``transitions_hist`` dataset: ``transitions`` with the history features of each state.

The ``klan_iit_hist`` control arm is KLAN-IIT's CQL over obs ⊕ ``schema.HIST_FEATURES``. Its
training rows are the ``transitions`` rows plus two columns computed from the ``sessions`` of the
same user-day by the one implementation, ``data.history``:

- ``hist``: the features of the day's sessions before this one (the state s of the row);
- ``next_hist``: the features of the sessions up to and including this one, the state s' of
  session ``session_idx + 1``. On a ``done`` row (the day's last session) that is the day after
  its last session; the TD target ignores it.

A session's exit page is the last entry of its ``page_seq`` (-1 where ``page_seq`` is null, as in
decision-log data: ``history_features`` counts such a session as no exit and no resume), the
exit page the simulator's ``IntraDayHistory`` holds at inference.

``write_transitions_hist`` writes it next to ``transitions`` (``<data>/transitions_hist/``), one
Ray task per part pair (``data.parts``), so the learner streams it with Ray Data like any dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from glan_ray import storage
from glan_ray.data.history import day_arrays, history_features
from glan_ray.data.parts import matching_parts, read_part, write_part
from glan_ray.schema import HIST_DIM, N_PAGES, DatasetValidationError, conform, schema_for

logger = logging.getLogger(__name__)

NAME = "transitions_hist"
SESSION_COLUMNS = ["user_id", "day", "session_idx", "action", "dur", "y_sw", "page_seq", "obs"]
"""The ``sessions`` columns the history features read."""
KEYS = ["user_id", "day", "session_idx"]


def exit_pages(page_seq: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The page each session exited from: the last entry of ``page_seq`` (M,) int64, -1 where
    the list is null or empty (decision logs that did not record it)."""
    arr = page_seq.combine_chunks() if isinstance(page_seq, pa.ChunkedArray) else page_seq
    n = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    ends = arr.offsets.to_numpy()[1:].astype(np.int64)  # (M,) one past each list's last entry
    flat = arr.values.to_numpy(zero_copy_only=False).astype(np.int64)
    last = flat[np.clip(ends - 1, 0, max(len(flat) - 1, 0))] if len(flat) else np.zeros(len(n))
    return np.where(n > 0, last, -1).astype(np.int64)


def _user_days(sessions: pa.Table) -> np.ndarray:
    """Each session row's user-day number 0..G-1 (M,)."""
    keys = np.stack([sessions.column("user_id").to_numpy(),
                     sessions.column("day").to_numpy().astype(np.int64)], axis=1)  # fmt: skip
    _, group = np.unique(keys, axis=0, return_inverse=True)
    return group.reshape(-1).astype(np.int64)


def session_history(sessions: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(before, through) (M, HIST_DIM) float32 for every session row: the history features of
    the day's sessions before it, and of those up to and including it.

    ``session_idx`` must run 0..n-1 within each user-day (``DatasetValidationError`` otherwise).
    """
    t = sessions.column("session_idx").to_numpy().astype(np.int64)  # (M,)
    if not len(t):
        empty = np.zeros((0, HIST_DIM), np.float32)
        return empty, empty
    group = _user_days(sessions)
    count = np.bincount(group)
    last = np.full(len(count), -1, np.int64)
    np.maximum.at(last, group, t)
    if (t.min() < 0) or not np.array_equal(last + 1, count):
        raise DatasetValidationError(
            "dataset 'sessions': column 'session_idx' must run 0..n-1 within each user-day "
            f"({int(np.sum(last + 1 != count))} user-days do not)"
        )
    dur = np.asarray(pc.list_flatten(sessions.column("dur")).to_numpy(), np.float64)
    obs = np.asarray(pc.list_flatten(sessions.column("obs")).to_numpy(), np.float32)
    g, a, d, y, e, _, o = day_arrays(
        t,
        group,
        sessions.column("action").to_numpy().astype(np.int64),
        dur.reshape(-1, N_PAGES),  # (M, 3)
        sessions.column("y_sw").to_numpy().astype(np.float64),
        exit_pages(sessions.column("page_seq")),
        obs.reshape(len(t), -1),  # (M, OBS_DIM)
    )
    # one more padded session so "through" the last session reads zeros, not out of range
    o = np.concatenate([o, np.zeros_like(o[:, :1])], axis=1)
    before = history_features(t, a[g], d[g], y[g], e[g], o[g])  # (M, HIST_DIM)
    through = history_features(t + 1, a[g], d[g], y[g], e[g], o[g])  # (M, HIST_DIM)
    return before, through


def _fixed(x: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.astype(np.float32).ravel()), HIST_DIM)


def with_history(sessions: pa.Table, transitions: pa.Table, where: str = "") -> pa.Table:
    """``transitions`` (validated) + ``hist`` and ``next_hist`` from the same user-days'
    ``sessions`` (at least ``SESSION_COLUMNS``), joined on user_id, day, session_idx; rows in
    ``transitions``' order. A transition without its session is refused, with the count."""
    trans = conform(transitions, "transitions", where=where)
    if not trans.num_rows:
        return schema_for(NAME).empty_table()
    before, through = session_history(sessions)
    idx = pa.table({"user_id": sessions.column("user_id").cast(pa.int64()),
                    "day": sessions.column("day").cast(pa.int32()),
                    "session_idx": sessions.column("session_idx").cast(pa.int16()),
                    "_s": pa.array(np.arange(sessions.num_rows))})  # fmt: skip
    left = trans.select(KEYS).append_column("_t", pa.array(np.arange(trans.num_rows)))
    joined = left.join(idx, KEYS, join_type="left outer").sort_by("_t")
    row = joined.column("_s")
    if row.null_count:
        raise DatasetValidationError(
            f"dataset 'transitions'{' in ' + where if where else ''}: {row.null_count} rows "
            "have no session of the same user_id, day, session_idx in 'sessions'"
        )
    s = row.to_numpy()
    out = trans.append_column("hist", _fixed(before[s])).append_column(
        "next_hist", _fixed(through[s])
    )
    return conform(out, NAME, where=where)


def history_part(sessions_file: str, transitions_file: str, out_file: str) -> int:
    """Write one ``transitions_hist`` part from a part pair; returns its rows."""
    try:
        sessions = read_part(sessions_file, SESSION_COLUMNS)
    except (KeyError, pa.ArrowInvalid) as e:
        msg = f"{sessions_file}: needs columns {SESSION_COLUMNS}: {e}"
        raise DatasetValidationError(msg) from e
    table = with_history(sessions, read_part(transitions_file), where=transitions_file)
    write_part(table, out_file)
    return table.num_rows


def write_transitions_hist(data: str, progress: Callable[[int, int], None] | None = None) -> str:
    """(Re)write ``<data>/transitions_hist`` from ``<data>/sessions`` and ``<data>/transitions``,
    one Ray task per part; returns its directory. Any previous copy is removed first, so the
    dataset always matches the current transitions."""
    import ray

    parts = matching_parts(data, "sessions", "transitions")
    out = storage.join(data, NAME)
    storage.rmtree(out)
    task = ray.remote(num_cpus=0.5)(history_part)
    pending = [task.remote(sess, trans, storage.join(out, part, f"{NAME}.parquet"))
               for part, sess, trans in parts]  # fmt: skip
    rows, done = 0, 0
    while pending:
        ready, pending = ray.wait(pending)
        rows += sum(ray.get(ready))
        done += len(ready)
        if progress:
            progress(done, len(parts))
    logger.info("transitions_hist: %d rows in %d parts under %s", rows, len(parts), out)
    return out


__all__ = ["exit_pages", "history_part", "session_history", "with_history",
           "write_transitions_hist"]  # fmt: skip
