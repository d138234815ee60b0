"""The users' profile fields x: from the events (each user's first visit) or a ``--users`` table.

A ``--users`` table (Parquet or CSV, keyed by ``user_id``) is small next to the events (one row
per user): it is read whole and handed to every ingest task, which looks its users up by id.
Its bad rows are reported like bad events (column, issue, row count) and refuse the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from glan_ray.apps import AppSpec
from glan_ray.ingest.events import BadEventsError, Check, type_problems
from glan_ray.schema import Problem


def profile_columns(spec: AppSpec) -> tuple[str, ...]:
    """The source field of every profile feature of ``spec``, in spec order."""
    return tuple(p.source or p.name for p in spec.features.profile)


@dataclass(frozen=True)
class UserTable:
    """A ``--users`` table, sorted by user id."""

    user_id: np.ndarray
    """(U,) int64 sorted user ids."""
    values: dict[str, np.ndarray]
    """Profile source field -> (U,) values."""

    def lookup(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Each field's values for ``ids`` (all of them in the table: checked per event)."""
        pos = np.searchsorted(self.user_id, ids)
        return {k: v[pos] for k, v in self.values.items()}


def format_report(problems: list[Problem], what: str) -> str:
    """The report of bad rows, one line per column and issue."""
    lines = "\n  ".join(str(p) for p in problems)
    return f"{what}:\n  {lines}"


def user_table(table: pa.Table, spec: AppSpec, fields: tuple[str, ...], where: str) -> UserTable:
    """Check a ``--users`` table (``fields``: the profile fields it must give) and sort it;
    ``BadEventsError`` naming each bad column, the issue and the row count."""
    n = table.num_rows
    problems = [Problem(f"--users {c}", "missing", n) for c in ("user_id", *fields)
                if c not in table.column_names]  # fmt: skip
    problems += [Problem(f"--users {c.column}", c.issue, n)
                 for c in type_problems(table.schema, fields)]  # fmt: skip
    if problems:
        raise BadEventsError(format_report(problems, f"the users table {where} is invalid"))
    ids = pc.fill_null(table.column("user_id"), 0).to_numpy()
    nulls = table.column("user_id").null_count
    if nulls:
        problems.append(Problem("--users user_id", "is null", nulls))
    dup = n - len(np.unique(ids))
    if dup:
        problems.append(Problem("--users user_id", "repeats a user id", dup))
    values = {}
    for p in spec.features.profile:
        col = p.source or p.name
        if col not in fields:
            continue
        v = pc.cast(table.column(col), pa.float64()).to_numpy(zero_copy_only=False)
        v = np.asarray(v, dtype=np.float64)
        if p.kind == "categorical":
            bad = ~np.isin(v, np.arange(p.cardinality or 0))
            check = Check(col, f"profile value outside its cardinality [0, {p.cardinality})")
        else:
            bad = ~np.isfinite(v)
            check = Check(col, "profile value is null, NaN or infinite")
        if bad.any():
            problems.append(Problem(f"--users {check.column}", check.issue, int(bad.sum())))
        values[col] = v
    if problems:
        raise BadEventsError(format_report(problems, f"the users table {where} is invalid"))
    order = np.argsort(ids, kind="stable")
    return UserTable(ids[order].astype(np.int64), {k: v[order] for k, v in values.items()})


__all__ = ["UserTable", "format_report", "profile_columns", "user_table"]
