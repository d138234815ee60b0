"""The Arrow schemas of every glan-ray dataset, and their validation.

This module is the single source of truth for column names and types (SPEC §2). The simulator
writes these schemas, the readers check them, the models read their inputs by these names.

Datasets
--------
``daily``        user × day: L-RTG inputs (x, t, 30-day sequence) and labels y_wt, y_se.
``sessions``     one row per session: HRM / KLAN-AM inputs (x, c, v, landing page k) and labels
                 T¹..T³ (``dur``), y_sw, usage time.
``trajectories`` user × day, one row with list columns: the DT learner's input.
``transitions``  one row per session: (s, a, r, s', done) for discrete CQL (KLAN-IIT).
``rct``          user × day under a randomised page treatment: KLAN-ISP's uplift data.

Derived (``DERIVED``; computed from the datasets above, not written by ``simulate``):

``transitions_hist`` ``transitions`` + the history features (``HIST_FEATURES``) before each
                 session and before the next: the ``klan_iit_hist`` arm's CQL input.

Validation rejects bad input as a whole with an error naming each offending column and how many
rows are affected; it never drops rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PAGES: tuple[str, ...] = ("featured", "explore", "following")
"""Landing pages; an action ``a`` is an index into this tuple."""
N_PAGES: int = len(PAGES)
N_TREATMENTS: int = N_PAGES + 1
"""RCT treatments: 0 = control (logging policy), k = always land on page k - 1."""
SEQ_LEN: int = 30
"""Days of behaviour sequence in the daily dataset (GLAN §5.1: the past 30 days)."""

OBS_FEATURES: tuple[str, ...] = (
    # user profile x
    "activity",
    "age",
    "region",
    "social_degree_log",
    # statistical features t
    "usage_7d",
    "usage_30d",
    "sessions_7d",
    "sessions_30d",
    "page_share_7d_featured",
    "page_share_7d_explore",
    "page_share_7d_following",
    "page_dur_14d_featured",
    "page_dur_14d_explore",
    "page_dur_14d_following",
    "last_exit_featured",
    "last_exit_explore",
    "last_exit_following",
    # real-time context c
    "hour",
    "hour_sin",
    "hour_cos",
    "weekend",
    "entries_today",
    "live_count",
    "today_dur_featured",
    "today_dur_explore",
    "today_dur_following",
    "today_usage",
    "prev_dropoff",
)
"""Names of the components of the RL observation vector ``obs`` (built by ``sim.observation``)."""
OBS_DIM: int = len(OBS_FEATURES)

HIST_FEATURES: tuple[str, ...] = (
    "drops_today",
    "drop_lag2",
    "drop_lag3",
    "first_drop",
    "first_landing_dur",
    "last_landing_dur",
    "last_landing_featured",
    "last_landing_explore",
    "last_landing_following",
    "exits_featured",
    "exits_explore",
    "exits_following",
    "resumes_today",
    "last_resumed",
    "resume_contrast",
    "binges_recent",
    "landings_featured",
    "landings_explore",
    "landings_following",
    "landing_dur_featured",
    "landing_dur_explore",
    "landing_dur_following",
)
"""Summaries of the day's earlier sessions that ``obs`` lacks (``data.history``): what the
premise diagnostics measure a sequence can add, and the extra inputs of the ``klan_iit_hist``
control arm (KLAN-IIT's CQL over ``obs`` + these)."""
HIST_DIM: int = len(HIST_FEATURES)


def _f32_list(n: int) -> pa.DataType:
    return pa.list_(pa.float32(), n)


KEYS = [
    pa.field("user_id", pa.int64(), False),
    pa.field("day", pa.int32(), False),
    pa.field("weekday", pa.int8(), False),
]
USER_FIELDS = [
    pa.field("age", pa.int8(), False),
    pa.field("region", pa.int8(), False),
    pa.field("activity", pa.int8(), False),
    pa.field("social_degree", pa.float32(), False),
]
STAT_FIELDS = [
    pa.field("usage_7d", pa.float32(), False),
    pa.field("usage_30d", pa.float32(), False),
    pa.field("sessions_7d", pa.float32(), False),
    pa.field("sessions_30d", pa.float32(), False),
    pa.field("page_dur_7d", _f32_list(N_PAGES), False),
    pa.field("page_dur_14d", _f32_list(N_PAGES), False),
    pa.field("page_entries_7d", _f32_list(N_PAGES), False),
    pa.field("page_entries_14d", _f32_list(N_PAGES), False),
]

DAILY = pa.schema(
    [
        *KEYS,
        *USER_FIELDS,
        *STAT_FIELDS,
        pa.field("seq_sessions", _f32_list(SEQ_LEN), False),
        pa.field("seq_usage", _f32_list(SEQ_LEN), False),
        pa.field("seq_dt", pa.list_(pa.int16(), SEQ_LEN), False),
        pa.field("is_active", pa.bool_(), False),
        pa.field("y_wt", pa.float32(), False),
        pa.field("y_se", pa.int16(), False),
    ]
)

SESSIONS = pa.schema(
    [
        *KEYS,
        pa.field("session_idx", pa.int16(), False),
        *USER_FIELDS,
        *STAT_FIELDS,
        # context c
        pa.field("hour", pa.float32(), False),
        pa.field("entries_today", pa.int16(), False),
        pa.field("live_count", pa.int16(), False),
        pa.field("today_dur", _f32_list(N_PAGES), False),
        # session features v
        pa.field("video_views", pa.list_(pa.int16(), N_PAGES), False),
        pa.field("page_seq", pa.list_(pa.int8()), True),  # null: not known (decision logs)
        pa.field("n_switches", pa.int8(), False),
        # landing page k and logging propensity
        pa.field("action", pa.int8(), False),
        pa.field("propensity", pa.float32(), False),
        # responses Y
        pa.field("dur", _f32_list(N_PAGES), False),
        pa.field("y_sw", pa.int8(), False),
        pa.field("usage_time", pa.float32(), False),
        pa.field("watch_time", pa.float32(), True),  # null: a deployment's client did not say
        pa.field("value_true", pa.float32(), True),  # null: only the simulator knows it
        pa.field("obs", _f32_list(OBS_DIM), False),
    ]
)

TRAJECTORIES = pa.schema(
    [
        *KEYS,
        *USER_FIELDS,
        pa.field("n_steps", pa.int16(), False),
        pa.field("obs", pa.list_(_f32_list(OBS_DIM)), False),
        pa.field("actions", pa.list_(pa.int8()), False),
        pa.field("hours", pa.list_(pa.float32()), False),
        pa.field("reward", pa.list_(pa.float32()), False),
        pa.field("reward_hrm", pa.list_(pa.float32()), True),
        pa.field("dropoff", pa.list_(pa.int8()), False),
        pa.field("propensity", pa.list_(pa.float32()), False),
        pa.field("value_true", pa.list_(pa.float32()), True),  # null: not the simulator's
        pa.field("y_wt", pa.float32(), False),
        pa.field("y_se", pa.int16(), False),
    ]
)

TRANSITIONS = pa.schema(
    [
        *KEYS,
        pa.field("session_idx", pa.int16(), False),
        pa.field("obs", _f32_list(OBS_DIM), False),
        pa.field("action", pa.int8(), False),
        pa.field("reward", pa.float32(), False),
        pa.field("next_obs", _f32_list(OBS_DIM), False),
        pa.field("done", pa.bool_(), False),
        pa.field("hour", pa.float32(), False),
        pa.field("entries_today", pa.int16(), False),
        pa.field("propensity", pa.float32(), False),
    ]
)

TRANSITIONS_HIST = pa.schema(
    [
        *TRANSITIONS,
        pa.field("hist", _f32_list(HIST_DIM), False),  # the day's sessions before this one
        pa.field("next_hist", _f32_list(HIST_DIM), False),  # ... before the next (incl. this)
    ]
)

RCT = pa.schema(
    [
        *KEYS,
        *USER_FIELDS,
        *STAT_FIELDS,
        pa.field("treatment", pa.int8(), False),
        pa.field("response", pa.float32(), False),
        pa.field("sessions", pa.int16(), False),
        pa.field("response_cf", _f32_list(N_TREATMENTS), False),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "daily": DAILY,
    "sessions": SESSIONS,
    "trajectories": TRAJECTORIES,
    "transitions": TRANSITIONS,
    "rct": RCT,
}
"""Every dataset by name; the order is the order ``simulate`` writes them in."""
DERIVED: dict[str, pa.Schema] = {"transitions_hist": TRANSITIONS_HIST}
"""Datasets computed from ``SCHEMAS``' datasets after ``simulate`` (``data.transitions_hist``)."""

RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "sessions": {"action": (0, N_PAGES - 1), "y_sw": (0, 1), "page_seq": (0, N_PAGES - 1)},
    "trajectories": {"actions": (0, N_PAGES - 1), "dropoff": (0, 1)},
    "transitions": {"action": (0, N_PAGES - 1)},
    "transitions_hist": {"action": (0, N_PAGES - 1)},
    "rct": {"treatment": (0, N_TREATMENTS - 1)},
}
"""Inclusive value ranges of the categorical columns (actions, treatments, binary labels)."""


class DatasetValidationError(ValueError):
    """Raised when input does not match a dataset's schema; names every offending column."""


@dataclass(frozen=True)
class Problem:
    """One validation finding: a column, what is wrong with it, and how many rows it affects."""

    column: str
    issue: str
    rows: int

    def __str__(self) -> str:
        rows = f" ({self.rows} rows)" if self.rows >= 0 else ""
        return f"column '{self.column}': {self.issue}{rows}"


def schema_for(name: str) -> pa.Schema:
    """The Arrow schema of dataset ``name``; a clear error for an unknown name."""
    known = {**SCHEMAS, **DERIVED}
    if name not in known:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(known)}")
    return known[name]


def _kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
        size = t.list_size if pa.types.is_fixed_size_list(t) else None
        return f"list[{size}]<{_kind(t.value_type)}>"
    return str(t)


def schema_problems(schema: pa.Schema, name: str) -> list[Problem]:
    """Missing columns and incompatible types of ``schema`` against dataset ``name``.

    Types are compatible when they have the same kind (int, float, bool, list of the same size
    and kind): such input is cast to the canonical type on read. Extra columns are allowed.
    """
    expected = schema_for(name)
    problems = []
    for field in expected:
        idx = schema.get_field_index(field.name)
        if idx < 0:
            problems.append(Problem(field.name, "missing", -1))
            continue
        got = schema.field(idx).type
        if _kind(got) != _kind(field.type):
            problems.append(Problem(field.name, f"has type {got}, expected {field.type}", -1))
    return problems


def _flat(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    while pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        arr = arr.flatten()
    return arr


def _rows_where(col: pa.ChunkedArray, flat_mask_fn) -> int:
    """Number of rows of ``col`` for which any flattened element satisfies the mask."""
    arr = col.combine_chunks()
    if not (pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type)):
        return int(np.count_nonzero(flat_mask_fn(arr)))
    # Map flattened elements back to their rows through the list offsets (one or two levels).
    row_of = np.arange(len(arr))
    while pa.types.is_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
        row_of = np.repeat(row_of, lengths)
        arr = arr.flatten()
    mask = flat_mask_fn(arr)
    return int(np.unique(row_of[mask]).size)


def value_problems(table: pa.Table, name: str) -> list[Problem]:
    """Nulls in non-nullable columns, NaN/inf in float columns, categorical values out of range."""
    problems = []
    for field in schema_for(name):
        if field.name not in table.column_names:
            continue
        col = table.column(field.name)
        if not field.nullable:
            nulls = _rows_where(col, lambda a: a.is_null().to_numpy(zero_copy_only=False))
            if nulls:
                problems.append(Problem(field.name, "has null values", nulls))
        base = _flat(col).type
        if pa.types.is_floating(base):
            # a null (allowed in a nullable column, counted above otherwise) is not a NaN
            bad = _rows_where(
                col, lambda a: ~np.isfinite(a.fill_null(0.0).to_numpy(zero_copy_only=False))
            )
            if bad:
                problems.append(Problem(field.name, "has NaN or infinite values", bad))
        lo_hi = RANGES.get(name, {}).get(field.name)
        if lo_hi is not None:
            lo, hi = lo_hi

            def out_of_range(a: pa.Array, lo: int = lo, hi: int = hi) -> np.ndarray:
                v = a.fill_null(lo).to_numpy(zero_copy_only=False)
                return (v < lo) | (v > hi)

            bad = _rows_where(col, out_of_range)
            if bad:
                problems.append(Problem(field.name, f"has values outside [{lo}, {hi}]", bad))
    return problems


def raise_if(problems: list[Problem], name: str, where: str = "") -> None:
    """Raise one ``DatasetValidationError`` listing every problem, or return if none."""
    if problems:
        lines = "\n  ".join(str(p) for p in problems)
        src = f" in {where}" if where else ""
        raise DatasetValidationError(f"dataset '{name}'{src} is invalid:\n  {lines}")


def conform(table: pa.Table, name: str, where: str = "") -> pa.Table:
    """Validate ``table`` against dataset ``name`` and return it in the canonical schema.

    Raises ``DatasetValidationError`` naming every bad column and its row count; no row is
    dropped, and columns beyond the schema are kept after the canonical ones. Compatible types
    (e.g. int64 for an int8 column) are cast safely, which fails loudly on overflow rather than
    wrapping.
    """
    expected = schema_for(name)
    raise_if(schema_problems(table.schema, name), name, where)
    raise_if(value_problems(table, name), name, where)
    columns = []
    for field in expected:
        col = table.column(field.name)
        if col.type != field.type:
            try:
                col = col.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise DatasetValidationError(
                    f"dataset '{name}': column '{field.name}' cannot be cast from {col.type} "
                    f"to {field.type}: {e}"
                ) from e
        columns.append(col)
    # Columns beyond the schema are kept, after the canonical ones: nothing is dropped.
    extra = [f for f in table.schema if expected.get_field_index(f.name) < 0]
    fields = [*expected, *extra]
    columns += [table.column(f.name) for f in extra]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
