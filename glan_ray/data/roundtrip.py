"""The round trip's comparison: a simulated run's datasets against the datasets ``glan-ray
ingest`` built from its raw events (``glan-ray sim-events``; docs/ingest.md, "Round trip").

Rows are matched by their keys (user-day; user-day-session for ``sessions`` and
``transitions``), with the ingested days mapped back to simulated days (``day_offset``, the
export's ``epoch_day``). Per column the largest absolute difference is taken over the matched
rows, element by element (a fixed-size list per component, ``obs`` and ``next_obs`` per
feature, list columns per element where both rows have the same length), twice:

- over every matched row (``max_abs_all``);
- over the *clean* rows (``max_abs``), those the comparison expects to be equal: not a user-day
  with a session the export delayed (its hour moved), not a user with a session delayed past
  midnight (its day moved), and for the statistics t (windowed history, ``seq_*``, the
  ``obs`` statistic features) not a day before ``warmup_days``: the simulator starts every user
  with a synthetic 30-day history that no event records.

A column is equal when every clean element is within ``atol + rtol·|simulated|`` (float32 sums
taken in another order). Columns only one side has, columns null on one side and the columns raw
events cannot give (``UNKNOWN``: ``value_true``, ``watch_time``, ``response_cf``) are listed, not
compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from glan_ray import storage
from glan_ray.apps.spec import AppSpec

KEYS: dict[str, tuple[str, ...]] = {
    "daily": ("user_id", "day"),
    "sessions": ("user_id", "day", "session_idx"),
    "trajectories": ("user_id", "day"),
    "transitions": ("user_id", "day", "session_idx"),
    "rct": ("user_id", "day"),
}
"""Each dataset's row key."""
HISTORY = frozenset({"usage_7d", "usage_30d", "sessions_7d", "sessions_30d", "page_dur_7d",
                     "page_dur_14d", "page_entries_7d", "page_entries_14d", "seq_sessions",
                     "seq_usage"})  # fmt: skip
"""Columns that are the user's history before the day (compared from ``warmup_days`` on)."""
UNKNOWN: dict[str, str] = {
    "value_true": "the oracle's value: only the simulator knows it",
    "watch_time": "raw events carry dwell, not watch time",
    "response_cf": "counterfactual responses: only the simulator has them",
}
"""Columns raw events cannot give, with why: listed, not compared."""


@dataclass(frozen=True)
class Tolerance:
    """When two values are equal: |sim − ingested| ≤ atol + rtol·|sim|."""

    atol: float = 1e-4
    """Absolute tolerance."""
    rtol: float = 1e-5
    """Relative tolerance (float32 keeps about 7 digits)."""


@dataclass
class ColumnDiff:
    """One column's (or one ``obs`` feature's) comparison."""

    column: str
    """The column, ``obs[feature]`` for an observation component."""
    compared: int = 0
    """Clean elements compared."""
    max_abs: float | None = None
    """Largest |sim − ingested| over the clean elements (None: nothing compared)."""
    max_abs_all: float | None = None
    """Largest |sim − ingested| over every matched element."""
    mismatched: int = 0
    """Clean elements beyond the tolerance."""
    note: str = ""
    """Why a column is not compared or what was left out."""

    @property
    def equal(self) -> bool:
        return self.compared > 0 and self.mismatched == 0


@dataclass
class DatasetDiff:
    """One dataset's comparison."""

    name: str
    """The dataset."""
    sim_rows: int
    """Rows the simulator wrote."""
    ingested_rows: int
    """Rows ingest wrote."""
    matched: int
    """Rows with the same key on both sides."""
    clean: int
    """Matched rows outside the delayed sessions' user-days and users."""
    only_sim: int
    """Simulator rows without an ingested row of the same key."""
    only_ingested: int
    """Ingested rows without a simulated row of the same key."""
    columns_only_sim: list[str] = field(default_factory=list)
    """Columns the simulator writes and ingest does not."""
    columns_only_ingested: list[str] = field(default_factory=list)
    """Columns ingest writes and the simulator does not."""
    columns: list[ColumnDiff] = field(default_factory=list)
    """The compared columns."""


def read_table(path: str) -> pa.Table:
    """Every Parquet file under ``path`` (a dataset directory, parts included) as one table."""
    fs, inner = storage.filesystem(path)
    return pads.dataset(inner, format="parquet", filesystem=fs).to_table()


def row_keys(table: pa.Table, keys: tuple[str, ...], day_offset: int = 0) -> np.ndarray:
    """(R,) int64 key of each row: user_id << 32 | day << 8 | session_idx."""
    out = table["user_id"].to_numpy().astype(np.int64) << 32
    out |= (table["day"].to_numpy().astype(np.int64) - day_offset) << 8
    if "session_idx" in keys:
        out |= table["session_idx"].to_numpy().astype(np.int64)
    return out


def _values(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray] | None:
    """(R, W) float64 values and (R,) validity of a scalar or fixed-size-list column; None for a
    variable-length list."""
    arr = col.combine_chunks()
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
    t = arr.type
    if pa.types.is_fixed_size_list(t):
        flat = pc.list_flatten(arr.fill_null(pa.scalar([0] * t.list_size, t)))
        x = np.asarray(pc.cast(flat, pa.float64()).to_numpy(zero_copy_only=False))
        return x.reshape(len(arr), t.list_size), valid
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return None
    x = np.asarray(pc.cast(arr, pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False))
    return x[:, None], valid


def _list_values(
    a: pa.ChunkedArray, b: pa.ChunkedArray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Element values (E, W) of two list columns over the rows where both have the same length,
    each element's row (E,), and (R,) whether each row's lengths differ."""
    a, b = a.combine_chunks(), b.combine_chunks()
    la = np.asarray(pc.fill_null(pc.list_value_length(a), -1).to_numpy(zero_copy_only=False))
    lb = np.asarray(pc.fill_null(pc.list_value_length(b), -1).to_numpy(zero_copy_only=False))
    same = np.flatnonzero(la == lb)
    fa, fb = pc.list_flatten(a.take(pa.array(same))), pc.list_flatten(b.take(pa.array(same)))
    width = 1
    if pa.types.is_fixed_size_list(fa.type):  # e.g. a trajectory's obs: (steps, obs_dim)
        width = fa.type.list_size
        fa, fb = pc.list_flatten(fa), pc.list_flatten(fb)
    xa = np.asarray(pc.cast(fa, pa.float64()).to_numpy(zero_copy_only=False)).reshape(-1, width)
    xb = np.asarray(pc.cast(fb, pa.float64()).to_numpy(zero_copy_only=False)).reshape(-1, width)
    elem_row = np.repeat(same, la[same])
    return xa, xb, elem_row, la != lb


def _diff(name: str, a: np.ndarray, b: np.ndarray, clean: np.ndarray, tol: Tolerance,
          note: str = "") -> ColumnDiff:  # fmt: skip
    """One (E,) pair of value vectors; ``clean`` (E,) marks the elements expected equal."""
    d = np.abs(a - b)
    both_nan = np.isnan(a) & np.isnan(b)
    d = np.where(both_nan, 0.0, np.where(np.isnan(d), np.inf, d))
    bad = d > tol.atol + tol.rtol * np.abs(np.nan_to_num(a))
    return ColumnDiff(column=name, compared=int(clean.sum()),
                      max_abs=float(d[clean].max()) if clean.any() else None,
                      max_abs_all=float(d.max()) if len(d) else None,
                      mismatched=int((bad & clean).sum()), note=note)  # fmt: skip


def _compare_column(
    col: str, ca: pa.ChunkedArray, cb: pa.ChunkedArray, obs_features: tuple[str, ...],
    history_obs: frozenset[str], clean_rows: np.ndarray, after_warmup: np.ndarray,
    warmup_days: int, tol: Tolerance,
) -> list[ColumnDiff]:  # fmt: skip
    """One column of the matched rows (R,), per component."""
    n = len(ca)
    if col in UNKNOWN:
        return [ColumnDiff(col, note=f"not compared: {UNKNOWN[col]}")]
    if ca.null_count == n or cb.null_count == n:
        side = ("both" if ca.null_count == cb.null_count == n
                else "ingested" if cb.null_count == n else "simulated")  # fmt: skip
        return [ColumnDiff(col, note=f"null in {side}")]
    out = []
    va, vb = _values(ca), _values(cb)
    if va is not None and vb is not None:
        xa, xb, elem_row = va[0], vb[0], np.arange(n)
    else:
        xa, xb, elem_row, differ = _list_values(ca, cb)
        if differ.any():
            bad = int((differ & clean_rows).sum())
            out.append(ColumnDiff(col, compared=int(clean_rows.sum()), mismatched=bad,
                                  note=f"{int(differ.sum())} row(s) differ in length, {bad} of "
                                  "them clean"))  # fmt: skip
    width = xa.shape[1]
    if col in ("obs", "next_obs") and width == len(obs_features):
        labels = [f"{col}[{f}]" for f in obs_features]
    else:
        labels = [col] if width == 1 else [f"{col}[{j}]" for j in range(width)]
    for j, label in enumerate(labels):
        warm = col in HISTORY or (col in ("obs", "next_obs") and obs_features[j] in history_obs
                                  if width == len(obs_features) else False)  # fmt: skip
        ok = clean_rows & after_warmup if warm else clean_rows
        note = f"from day {warmup_days}" if warm else ""
        out.append(_diff(label, xa[:, j], xb[:, j], ok[elem_row], tol, note))
    return out


def compare_table(
    name: str, sim: pa.Table, ing: pa.Table, *, day_offset: int, obs_features: tuple[str, ...],
    history_obs: frozenset[str], dirty_days: np.ndarray, dirty_users: np.ndarray,
    warmup_days: int, tol: Tolerance,
) -> DatasetDiff:  # fmt: skip
    """Compare dataset ``name``; ``dirty_days`` (int64 user-day keys: ``row_keys`` of a
    user-day) and every day of ``dirty_users`` are left out of the clean rows."""
    keys = KEYS[name]
    ka, kb = row_keys(sim, keys), row_keys(ing, keys, day_offset)
    common, ia, ib = np.intersect1d(ka, kb, assume_unique=False, return_indices=True)
    out = DatasetDiff(name, sim.num_rows, ing.num_rows, len(common), 0,
                      only_sim=sim.num_rows - len(common), only_ingested=ing.num_rows - len(common),
                      columns_only_sim=[c for c in sim.column_names if c not in ing.column_names],
                      columns_only_ingested=[c for c in ing.column_names
                                             if c not in sim.column_names])  # fmt: skip
    a, b = sim.take(pa.array(ia)), ing.take(pa.array(ib))
    clean_rows = ~np.isin((common >> 8) << 8, dirty_days) & ~np.isin(common >> 32, dirty_users)
    after_warmup = a["day"].to_numpy() >= warmup_days
    out.clean = int(clean_rows.sum())
    for col in (c for c in sim.column_names if c in ing.column_names and c not in keys):
        out.columns += _compare_column(col, a[col], b[col], obs_features, history_obs,
                                       clean_rows, after_warmup, warmup_days, tol)  # fmt: skip
    return out


@dataclass
class RoundTripReport:
    """Every dataset's comparison, with what the comparison left out of the clean rows."""

    datasets: list[DatasetDiff]
    """One per dataset both sides have."""
    tolerance: Tolerance
    """When two values count as equal."""
    warmup_days: int
    """Statistics t are compared from this simulated day on."""
    day_offset: int
    """Ingested day − simulated day."""
    delayed_sessions: int
    """Sessions the export delayed (their user-days are not clean)."""
    users_moved_past_midnight: int
    """Users with a session delayed into the next day (none of their rows is clean)."""
    missing: list[str] = field(default_factory=list)
    """Datasets one side lacks."""

    @property
    def equal(self) -> bool:
        """Every compared column equal on its clean rows."""
        return all(c.mismatched == 0 for d in self.datasets for c in d.columns)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["equal"] = self.equal
        return out


def compare_runs(
    sim: str, ingested: str, spec: AppSpec, *, shifts: pa.Table | None = None,
    day_offset: int | None = None, warmup_days: int = 30, tol: Tolerance | None = None,
) -> RoundTripReport:  # fmt: skip
    """Compare the datasets under run directory ``sim`` with those under ``ingested``.

    ``shifts``: the export's delayed sessions (``shifts.parquet``); ``day_offset``: ingested day
    − simulated day, by default the gap between the two sides' first ``daily`` days.
    """
    tol = tol or Tolerance()
    names = [n for n in KEYS if storage.isdir(storage.join(sim, n))]
    have = [n for n in names if storage.isdir(storage.join(ingested, n))]
    tables = {n: (read_table(storage.join(sim, n)), read_table(storage.join(ingested, n)))
              for n in have}  # fmt: skip
    if day_offset is None:
        first = next(iter(tables.values()))
        day_offset = int(pc.min(first[1]["day"]).as_py()) - int(pc.min(first[0]["day"]).as_py())
    if shifts is None or shifts.num_rows == 0:
        dirty_days, dirty_users = np.zeros(0, np.int64), np.zeros(0, np.int64)
    else:
        dirty_days = row_keys(shifts, ("user_id", "day"))
        dirty_users = shifts["user_id"].to_numpy()[shifts["next_day"].to_numpy(False)]
    history_obs = frozenset(spec.group_features["statistics"])
    datasets = [compare_table(n, a, b, day_offset=day_offset, obs_features=spec.obs_features,
                              history_obs=history_obs, dirty_days=dirty_days,
                              dirty_users=dirty_users.astype(np.int64), warmup_days=warmup_days,
                              tol=tol) for n, (a, b) in tables.items()]  # fmt: skip
    return RoundTripReport(datasets, tol, warmup_days, day_offset,
                           delayed_sessions=0 if shifts is None else shifts.num_rows,
                           users_moved_past_midnight=len(np.unique(dirty_users)),
                           missing=[n for n in names if n not in have])  # fmt: skip


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def format_report(r: RoundTripReport) -> str:
    """The report as a Markdown table: per dataset its rows, then one line per column."""
    lines = [f"tolerance: |sim - ingested| <= {r.tolerance.atol:g} + {r.tolerance.rtol:g}*|sim|; "
             f"statistics from day {r.warmup_days}; {r.delayed_sessions} delayed session(s) "
             f"left out; {r.users_moved_past_midnight} user(s) moved past midnight left out",
             "", "| dataset | column | compared | max abs diff (clean) | max abs diff (all) | "
             "mismatched | note |", "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for d in r.datasets:
        lines.append(f"| **{d.name}** | rows: sim {d.sim_rows}, ingested {d.ingested_rows}, "
                     f"matched {d.matched} (clean {d.clean}), only sim {d.only_sim}, only "
                     f"ingested {d.only_ingested} | | | | | |")  # fmt: skip
        if d.columns_only_sim or d.columns_only_ingested:
            lines.append(f"| {d.name} | columns only sim: {d.columns_only_sim}; only ingested: "
                         f"{d.columns_only_ingested} | | | | | |")  # fmt: skip
        for c in d.columns:
            lines.append(f"| {d.name} | {c.column} | {c.compared} | {_num(c.max_abs)} | "
                         f"{_num(c.max_abs_all)} | {c.mismatched} | {c.note} |")  # fmt: skip
    for n in r.missing:
        lines.append(f"| {n} | not written by ingest | | | | | |")
    return "\n".join(lines)


__all__ = ["HISTORY", "KEYS", "UNKNOWN", "ColumnDiff", "DatasetDiff", "RoundTripReport",
           "Tolerance", "compare_runs", "compare_table", "format_report", "read_table",
           "row_keys"]  # fmt: skip
