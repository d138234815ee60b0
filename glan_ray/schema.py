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
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:  # glan_ray.apps does not import this module; the spec is only a type here
    from glan_ray.apps import AppSpec

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


# ---- schemas sized by an app specification (glan_ray.apps, docs/apps.md) ----

_SPEC_SCHEMAS: dict[str, dict[str, pa.Schema]] = {}
"""``_spec_schemas``' cache, by spec fingerprint."""


def _ordered(fields: list[pa.Field], base: list[pa.Field]) -> list[pa.Field]:
    """``fields`` with the names the simulator's schema has first, in its order, then the rest
    in their own order: the plpm spec gives exactly the simulator's columns."""
    order = {f.name: i for i, f in enumerate(base)}
    known = sorted((f for f in fields if f.name in order), key=lambda f: order[f.name])
    return known + [f for f in fields if f.name not in order]


def profile_fields(spec: AppSpec) -> list[pa.Field]:
    """The user columns of ``spec``: each profile feature's source field, int8 (int16 above 127
    categories) for a categorical, float32 for a numeric."""
    out = []
    for p in spec.features.profile:
        if p.kind == "categorical":
            t = pa.int16() if (p.cardinality or 0) > 127 else pa.int8()
        else:
            t = pa.float32()
        out.append(pa.field(p.source or p.name, t, False))
    return _ordered(out, USER_FIELDS)


def stat_windows(spec: AppSpec) -> dict[str, tuple[int, ...]]:
    """Day windows of each statistics column quantity: the simulator's (7/30-day usage and
    sessions, 7/14-day page consumption and landings) and any more the spec's features ask."""
    out: dict[str, list[int]] = {"usage": [7, 30], "sessions": [7, 30], "page_dur": [7, 14],
                                 "page_entries": [7, 14]}  # fmt: skip
    for st in spec.features.statistics:
        q = "page_entries" if st.quantity == "page_share" else st.quantity
        for w in st.windows:
            if q in out and w not in out[q]:
                out[q].append(w)
    return {q: tuple(ws) for q, ws in out.items()}


def stat_fields(spec: AppSpec) -> list[pa.Field]:
    """The statistics t columns of ``spec``: ``{quantity}_{w}d``, per page a fixed-size list."""
    n = spec.n_pages
    out = []
    for q, windows in stat_windows(spec).items():
        t = _f32_list(n) if q.startswith("page_") else pa.float32()
        out += [pa.field(f"{q}_{w}d", t, False) for w in windows]
    return _ordered(out, STAT_FIELDS)


def input_fields(spec: AppSpec) -> list[pa.Field]:
    """The context values the client sends (``input`` entries): int16 for a count, else
    float32."""
    return [pa.field(str(c.name), pa.int16() if c.unit == "count" else pa.float32(), False)
            for c in spec.features.context if c.quantity == "input"]  # fmt: skip


def _spec_schemas(spec: AppSpec) -> dict[str, pa.Schema]:
    key = spec.fingerprint()
    if key not in _SPEC_SCHEMAS:
        _SPEC_SCHEMAS[key] = _build_schemas(spec)
    return _SPEC_SCHEMAS[key]


def schemas_for(spec: AppSpec) -> dict[str, pa.Schema]:
    """Every dataset's schema (``SCHEMAS`` then ``DERIVED``) sized for ``spec``: its pages
    (lists of ``n_pages``, ``n_pages + 1`` treatments), its ``obs_dim``, its profile columns,
    statistics windows and context inputs. ``plpm_spec()`` gives exactly ``SCHEMAS`` and
    ``DERIVED``."""
    return dict(_spec_schemas(spec))


def _build_schemas(spec: AppSpec) -> dict[str, pa.Schema]:
    n, obs = spec.n_pages, _f32_list(spec.obs_dim)
    user, stats = profile_fields(spec), stat_fields(spec)
    labels = [DAILY.field(k) for k in ("seq_sessions", "seq_usage", "seq_dt", "is_active",
                                       "y_wt", "y_se")]  # fmt: skip
    daily = pa.schema([*KEYS, *user, *stats, *labels])
    sessions = pa.schema([
        *KEYS, SESSIONS.field("session_idx"), *user, *stats,
        SESSIONS.field("hour"), SESSIONS.field("entries_today"), *input_fields(spec),
        pa.field("today_dur", _f32_list(n), False),
        pa.field("video_views", pa.list_(pa.int16(), n), False),
        *(SESSIONS.field(k) for k in ("page_seq", "n_switches", "action", "propensity")),
        pa.field("dur", _f32_list(n), False),
        *(SESSIONS.field(k) for k in ("y_sw", "usage_time", "watch_time", "value_true")),
        pa.field("obs", obs, False),
    ])  # fmt: skip
    traj = [f for f in TRAJECTORIES if f.name not in {u.name for u in USER_FIELDS}]
    trajectories = pa.schema([*traj[: len(KEYS)], *user, *(
        pa.field("obs", pa.list_(obs), False) if f.name == "obs" else f
        for f in traj[len(KEYS):])])  # fmt: skip
    transitions = pa.schema([pa.field(f.name, obs, False) if f.name in ("obs", "next_obs") else f
                             for f in TRANSITIONS])  # fmt: skip
    rct = pa.schema([*KEYS, *user, *stats, RCT.field("treatment"), RCT.field("response"),
                     RCT.field("sessions"),
                     pa.field("response_cf", _f32_list(n + 1), False)])  # fmt: skip
    hist = [TRANSITIONS_HIST.field("hist"), TRANSITIONS_HIST.field("next_hist")]
    return {"daily": daily, "sessions": sessions, "trajectories": trajectories,
            "transitions": transitions, "rct": rct,
            "transitions_hist": pa.schema([*transitions, *hist])}  # fmt: skip


def ranges_for(spec: AppSpec) -> dict[str, dict[str, tuple[int, int]]]:
    """``RANGES`` for ``spec``'s pages and treatments (``plpm_spec()`` gives ``RANGES``)."""
    a = (0, spec.n_pages - 1)
    return {
        "sessions": {"action": a, "y_sw": (0, 1), "page_seq": a},
        "trajectories": {"actions": a, "dropoff": (0, 1)},
        "transitions": {"action": a},
        "transitions_hist": {"action": a},
        "rct": {"treatment": (0, spec.n_pages)},
    }


def arrow_column(field: pa.Field, values: np.ndarray | pa.Array) -> pa.Array:
    """``values`` as the Arrow column of ``field``: an (R, n) array becomes a fixed-size list
    of n; an Arrow array is taken as it is. Used by every writer of the datasets (the
    simulator's ``data.tables``, ``ingest``)."""
    if isinstance(values, pa.Array):
        return values
    t = field.type
    if pa.types.is_fixed_size_list(t):
        flat = np.ascontiguousarray(values).ravel()  # (R * n,)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=t.value_type), t.list_size)
    return pa.array(values, type=t)


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


def schema_for(name: str, spec: AppSpec | None = None) -> pa.Schema:
    """The Arrow schema of dataset ``name`` (sized for ``spec``; None: the simulator's app); a
    clear error for an unknown name."""
    known = {**SCHEMAS, **DERIVED} if spec is None else _spec_schemas(spec)
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


def schema_problems(schema: pa.Schema, name: str, spec: AppSpec | None = None) -> list[Problem]:
    """Missing columns and incompatible types of ``schema`` against dataset ``name``.

    Types are compatible when they have the same kind (int, float, bool, list of the same size
    and kind): such input is cast to the canonical type on read. Extra columns are allowed.
    """
    expected = schema_for(name, spec)
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


def value_problems(table: pa.Table, name: str, spec: AppSpec | None = None) -> list[Problem]:
    """Nulls in non-nullable columns, NaN/inf in float columns, categorical values out of range
    (``spec``: the app the dataset is sized for; None: the simulator's)."""
    problems = []
    ranges = RANGES if spec is None else ranges_for(spec)
    for field in schema_for(name, spec):
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
        lo_hi = ranges.get(name, {}).get(field.name)
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


def conform(table: pa.Table, name: str, where: str = "", spec: AppSpec | None = None) -> pa.Table:
    """Validate ``table`` against dataset ``name`` and return it in the canonical schema.

    Raises ``DatasetValidationError`` naming every bad column and its row count; no row is
    dropped, and columns beyond the schema are kept after the canonical ones. Compatible types
    (e.g. int64 for an int8 column) are cast safely, which fails loudly on overflow rather than
    wrapping. ``spec``: the app the dataset is sized for (None: the simulator's).
    """
    expected = schema_for(name, spec)
    raise_if(schema_problems(table.schema, name, spec), name, where)
    raise_if(value_problems(table, name, spec), name, where)
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
