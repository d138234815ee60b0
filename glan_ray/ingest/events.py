"""The raw-event contract of ``glan-ray ingest`` and the checks of each event (docs/ingest.md).

One row per page visit, Parquet or CSV (a file or a directory; local, ``s3://`` or ``gs://``):

- ``user_id`` int64 (required): a string or float id column is a bad event class;
- ``ts`` (required): the visit's start in seconds since the Unix epoch (int or float) or an
  Arrow timestamp; day = the UTC day ``floor(ts / 86400)``, hour = seconds into it / 3600;
- ``page`` string (required): one of the spec's pages;
- ``dwell_s`` float ≥ 0 (required): seconds consumed on the page in this visit;
- ``views`` int ≥ 0 (optional; default 0): videos viewed in the visit;
- ``landing`` bool (optional): the visit the landing decision chose (a session's first visit);
- ``propensity`` float in (0, 1] (optional; default 1 / len(pages), with a warning): the logging
  policy's probability of the landing page;
- ``treatment`` int (optional): on every visit of a randomised user-day, 0 = control, k = page
  k − 1 forced (the ``rct`` dataset);
- the spec's profile fields (each ``ProfileSpec.source`` or name; or from ``--users``) and its
  context inputs (each ``input`` ContextSpec's name, read from a session's first visit).

``check_rows`` finds every bad event of a batch as a bit mask over ``EventChecks.checks``; the
check that needs a user's visits in order (two visits overlapping) runs after the grouping
(``sessionize.overlapping``).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from glan_ray import storage
from glan_ray.apps import AppSpec

REQUIRED: tuple[str, ...] = ("user_id", "ts", "page", "dwell_s")
"""Columns every event log has."""
OPTIONAL: tuple[str, ...] = ("views", "landing", "propensity", "treatment")
"""Columns an event log may have (see the module docstring for their defaults)."""
DAY_S = 86_400.0
REASON = "reason"
"""The column of a quarantined row that says why it was set aside."""
OVERLAP = "visit starts before the user's previous visit ended (timestamps out of order)"
"""The issue of a visit that overlaps an earlier one of its user (checked after grouping)."""


class BadEventsError(ValueError):
    """The events hold bad rows (or lack a column): the message lists every column, issue and
    row count; nothing was written."""


@dataclass(frozen=True)
class Check:
    """One class of bad event: the column it is about and what is wrong."""

    column: str
    """The event column (or the ``--users`` column) the check reads."""
    issue: str
    """What is wrong, in words (the report's and the quarantine ``reason``'s text)."""


@dataclass(frozen=True)
class EventChecks:
    """What the checks of one input need: the spec, which optional columns exist, the profile
    columns the events carry and the ``--users`` ids."""

    spec: AppSpec
    """The app the events are of."""
    columns: tuple[str, ...]
    """The event columns present."""
    profile_on_events: tuple[str, ...]
    """Profile source fields read from the events (the others come from ``--users``)."""
    known_users: np.ndarray | None = None
    """The ``--users`` table's user ids (sorted), or None without one."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """The spec's context inputs the events carry."""
        names = [str(c.name) for c in self.spec.features.context if c.quantity == "input"]
        return tuple(n for n in names if n in self.columns)

    @property
    def checks(self) -> list[Check]:
        """Every row check, in bit order."""
        pages = list(self.spec.pages)
        out = [Check("user_id", "is null"), Check("ts", "is null, NaN or infinite"),
               Check("page", f"unknown page (the spec's pages are {pages})"),
               Check("dwell_s", "is negative, NaN or null")]  # fmt: skip
        if "views" in self.columns:
            out.append(Check("views", "is negative or null"))
        if "propensity" in self.columns:
            out.append(Check("propensity", "is outside (0, 1] or NaN"))
        if "treatment" in self.columns:
            out.append(Check("treatment", f"unknown treatment (expected 0..{len(pages)}: 0 = "
                                          "control, k = page k-1)"))  # fmt: skip
        for p in self.spec.features.profile:
            col = p.source or p.name
            if col not in self.profile_on_events:
                continue
            if p.kind == "categorical":
                out.append(Check(col, f"profile value outside its cardinality "
                                      f"[0, {p.cardinality})"))  # fmt: skip
            else:
                out.append(Check(col, "profile value is null, NaN or infinite"))
        if self.known_users is not None:
            out.append(Check("user_id", "user not in the --users table"))
        out += [Check(n, "context input is null, NaN or infinite") for n in self.inputs]
        return out


def _num(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A numeric column as float64 with NaN for nulls."""
    return np.asarray(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def seconds(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """``ts`` as float seconds since the epoch (NaN for nulls), from numbers or timestamps."""
    if pa.types.is_timestamp(col.type):
        per_s = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[col.type.unit]
        return _num(pc.cast(col, pa.int64())) / per_s
    return _num(col)


def page_index(col: pa.ChunkedArray | pa.Array, pages: tuple[str, ...]) -> np.ndarray:
    """Each row's page as its action index (int64), -1 for an unknown page or a null."""
    idx = pc.index_in(pc.cast(col, pa.string()), value_set=pa.array(pages, pa.string()))
    return np.asarray(pc.fill_null(idx, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def type_problems(schema: pa.Schema, numeric: tuple[str, ...] = ()) -> list[Check]:
    """Columns of a type no row of which can be read (every row of the input is bad): the
    required ones, and the ``numeric`` ones (optional columns, profile fields, inputs)."""
    out = []
    want = {"user_id": (pa.types.is_integer, "an integer (int64)"),
            "ts": (lambda t: pa.types.is_integer(t) or pa.types.is_floating(t)
                   or pa.types.is_timestamp(t), "seconds since the epoch or a timestamp"),
            "page": (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
                     or pa.types.is_dictionary(t), "a string"),
            "dwell_s": (lambda t: pa.types.is_integer(t) or pa.types.is_floating(t),
                        "a number")}  # fmt: skip
    for name, (ok, expected) in want.items():
        i = schema.get_field_index(name)
        if i >= 0 and not ok(schema.field(i).type):
            what = "user id of the wrong type: " if name == "user_id" else ""
            out.append(Check(name, f"{what}has type {schema.field(i).type}, expected {expected}"))
    for name in numeric:
        i = schema.get_field_index(name)
        if i >= 0 and name not in want and not _numeric(schema.field(i).type):
            out.append(Check(name, f"has type {schema.field(i).type}, expected a number"))
    return out


def check_rows(batch: pa.Table, ec: EventChecks) -> np.ndarray:
    """A bit mask per row (int64): bit i set when ``ec.checks[i]`` finds the row bad."""
    spec = ec.spec
    tests: list[np.ndarray] = [
        np.asarray(batch.column("user_id").is_null().to_numpy(zero_copy_only=False)),
        ~np.isfinite(seconds(batch.column("ts"))),
        page_index(batch.column("page"), spec.pages) < 0,
        ~(_num(batch.column("dwell_s")) >= 0),
    ]
    if "views" in ec.columns:
        tests.append(~(_num(batch.column("views")) >= 0))
    if "propensity" in ec.columns:
        prop = _num(batch.column("propensity"))
        tests.append(~((prop > 0) & (prop <= 1)))
    if "treatment" in ec.columns:
        t = _num(batch.column("treatment"))
        tests.append(~np.isnan(t) & ~np.isin(t, np.arange(spec.n_pages + 1)))
    for p in spec.features.profile:
        col = p.source or p.name
        if col not in ec.profile_on_events:
            continue
        v = _num(batch.column(col))
        if p.kind == "categorical":
            tests.append(~np.isin(v, np.arange(p.cardinality or 0)))
        else:
            tests.append(~np.isfinite(v))
    if ec.known_users is not None:
        ids = np.asarray(pc.fill_null(batch.column("user_id"), 0).to_numpy(zero_copy_only=False))
        pos = np.clip(np.searchsorted(ec.known_users, ids), 0, max(len(ec.known_users) - 1, 0))
        tests.append(ec.known_users[pos] != ids if len(ec.known_users) else np.ones(len(ids), bool))
    tests += [~np.isfinite(_num(batch.column(n))) for n in ec.inputs]
    mask = np.zeros(batch.num_rows, dtype=np.int64)
    for bit, bad in enumerate(tests):
        mask |= bad.astype(np.int64) << bit
    return mask


def reasons(mask: np.ndarray, checks: list[Check]) -> pa.Array:
    """The ``reason`` text of each bad row: its failed checks, '; '-joined."""
    out = []
    for m in mask.tolist():
        out.append("; ".join(f"{c.column}: {c.issue}" for b, c in enumerate(checks) if m >> b & 1))
    return pa.array(out, pa.string())


def counts(mask: np.ndarray, n_checks: int) -> list[int]:
    """Rows failing each check."""
    return [int(np.count_nonzero(mask >> b & 1)) for b in range(n_checks)]


def write_quarantine(rows: pa.Table, reason: pa.Array, quarantine: str, prefix: str) -> None:
    """Bad rows and their ``reason`` as one Parquet file under directory ``quarantine``, named
    by a hash of the rows (a retried task writes the same file again, not a second one)."""
    if rows.num_rows == 0:
        return
    table = rows.append_column(REASON, reason)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    name = f"{prefix}-{hashlib.sha1(data).hexdigest()[:16]}.parquet"
    storage.write_bytes(storage.join(quarantine, name), data)


__all__ = ["OPTIONAL", "OVERLAP", "REASON", "REQUIRED", "BadEventsError", "Check",
           "EventChecks", "check_rows", "counts", "page_index", "reasons", "seconds",
           "type_problems", "write_quarantine"]  # fmt: skip
