"""The Ray Data tasks of an ingest: scan a block of events, keep its good rows, and turn a
partition of whole users into one part of every dataset.

Each function takes an Arrow batch and returns a small Arrow table (a summary row), so the
driver only ever sees counts; the events themselves stay in Ray's tasks and object store.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from glan_ray import schema, storage
from glan_ray.apps import AppSpec
from glan_ray.ingest.events import (
    OVERLAP,
    EventChecks,
    check_rows,
    counts,
    page_index,
    reasons,
    seconds,
    write_quarantine,
)
from glan_ray.ingest.hashing import user_sketch
from glan_ray.ingest.profiles import UserTable
from glan_ray.ingest.sessionize import Visits, overlapping, visit_order
from glan_ray.ingest.tables import Block, build_tables

T_COL, PAGE_COL = "_t", "_page"
"""Columns the cleaning adds: ``ts`` in seconds (float64) and the page's index."""


def scan_block(batch: pa.Table, ec: EventChecks, quarantine: str | None) -> pa.Table:
    """One summary row of a block of events: rows, good rows, rows failing each check, the
    good rows' first and last start, how many carry a treatment and a sketch of their users
    (``user_sketch``). With
    ``quarantine``, the bad rows are written there with their ``reason``."""
    mask = check_rows(batch, ec)
    good = mask == 0
    t = seconds(batch.column("ts"))[good]
    treated = 0
    if "treatment" in ec.columns:
        treated = int(np.count_nonzero(batch.column("treatment").is_valid().to_numpy(
            zero_copy_only=False)[good]))  # fmt: skip
    if quarantine and not good.all():
        bad = ~good
        write_quarantine(batch.filter(pa.array(bad)), reasons(mask[bad], ec.checks), quarantine,
                         "rows")  # fmt: skip
    return pa.table({
        "rows": [batch.num_rows], "good": [int(good.sum())],
        "bad": pa.array([counts(mask, len(ec.checks))], pa.list_(pa.int64())),
        "min_t": [float(t.min()) if t.size else np.inf],
        "max_t": [float(t.max()) if t.size else -np.inf], "treated": [treated],
        "users": pa.array([user_sketch(batch.column("user_id").to_numpy(zero_copy_only=False)[good]
                                       )], pa.list_(pa.uint64())),
    })  # fmt: skip


def clean_block(batch: pa.Table, ec: EventChecks) -> pa.Table:
    """The good rows of a block, with ``_t`` (seconds) and ``_page`` (the page's index)."""
    good = check_rows(batch, ec) == 0
    batch = batch.filter(pa.array(good))
    batch = batch.append_column(T_COL, pa.array(seconds(batch.column("ts"))))
    return batch.append_column(PAGE_COL, pa.array(page_index(batch.column("page"),
                                                             ec.spec.pages)))  # fmt: skip


@dataclass(frozen=True)
class PartJob:
    """What every part task needs to build and write its datasets."""

    spec: AppSpec
    """The app."""
    out: str
    """The output run directory."""
    first_day: int
    """The input's first UTC day."""
    n_days: int
    """Days in the input's range."""
    profile_on_events: tuple[str, ...]
    """Profile fields read from the events (each user's first visit)."""
    inputs: tuple[str, ...]
    """The spec's context inputs the events carry (the others are 0)."""
    all_inputs: tuple[str, ...]
    """Every context input of the spec."""
    quarantine: str | None
    """Where overlapping visits go; None: refuse them (the part writes nothing)."""
    users: ray.ObjectRef | None = None
    """The ``--users`` table (a ``UserTable``) in the object store, or None."""


def write_table(table: pa.Table, path: str) -> None:
    """Write ``table`` as Parquet file ``path`` atomically (``storage.write_bytes``), without
    dictionary encoding: the datasets' float and list columns do not repeat values, and trying
    to dictionary-encode them took two thirds of an ingest's time."""
    buf = io.BytesIO()
    pq.write_table(table, buf, use_dictionary=False)
    storage.write_bytes(path, buf.getvalue())


def _num(batch: pa.Table, name: str, dtype: type) -> np.ndarray:
    return np.asarray(pc.cast(batch.column(name), pa.float64()).to_numpy(zero_copy_only=False)
                      ).astype(dtype)  # fmt: skip


def _summary(part: str, events: int, overlaps: int, users: int, rows: dict[str, int],
             landing_mismatch: int) -> pa.Table:  # fmt: skip
    """One part's summary row; ``rows_<dataset>``: the rows it wrote of each dataset."""
    return pa.table({"part": [part], "events": [events], "overlaps": [overlaps],
                     "users": [users], "landing_mismatch": [landing_mismatch],
                     **{f"rows_{k}": [rows.get(k, 0)] for k in schema.SCHEMAS}})  # fmt: skip


def build_part(batch: pa.Table, job: PartJob) -> pa.Table:
    """Sort a partition of whole users, check that no two visits of a user overlap, sessionize
    and write one part of every dataset (``<out>/<name>/part-<first user>/``). Returns its
    summary row."""
    if batch.num_rows == 0:
        return _summary("", 0, 0, 0, {}, 0)
    uid = batch.column("user_id").cast(pa.int64()).to_numpy()
    t, dwell = batch.column(T_COL).to_numpy(), _num(batch, "dwell_s", np.float64)
    order = visit_order(uid, t, dwell)
    batch, uid, t, dwell = batch.take(pa.array(order)), uid[order], t[order], dwell[order]
    bad = overlapping(uid, t, t + dwell)
    n_bad = int(bad.sum())
    if n_bad and job.quarantine is None:
        return _summary("", batch.num_rows, n_bad, 0, {}, 0)  # refused: nothing written
    if n_bad and job.quarantine is not None:
        internal = [T_COL, PAGE_COL]
        write_quarantine(
            batch.filter(pa.array(bad)).drop_columns(internal),
            pa.array([f"ts: {OVERLAP}"] * n_bad),
            job.quarantine,
            "overlap",
        )
        keep = pa.array(~bad)
        batch, uid, t, dwell = batch.filter(keep), uid[~bad], t[~bad], dwell[~bad]
    block = _block(batch, uid, t, dwell, job)
    tables = build_tables(job.spec, block, job.first_day, job.n_days)
    part = f"part-{int(block.users[0]):020d}"
    for name, table in tables.items():
        write_table(table, storage.join(job.out, name, part, f"{name}-0000-0.parquet"))
    return _summary(part, batch.num_rows, n_bad, len(block.users),
                    {k: v.num_rows for k, v in tables.items()},
                    _landing_mismatch(batch, uid, t, dwell, job.spec.session_gap_s))  # fmt: skip


def _block(batch: pa.Table, uid: np.ndarray, t: np.ndarray, dwell: np.ndarray,
           job: PartJob) -> Block:  # fmt: skip
    cols = batch.column_names
    views = (_num(batch, "views", np.int64) if "views" in cols
             else np.zeros(len(uid), dtype=np.int64))  # fmt: skip
    visits = Visits(user_id=uid, t=t, page=batch.column(PAGE_COL).to_numpy().astype(np.int64),
                    dwell=dwell, views=views)  # fmt: skip
    users, first = np.unique(uid, return_index=True)
    profile = {k: _num(batch, k, np.float64)[first] for k in job.profile_on_events}
    if job.users is not None:
        table: UserTable = ray.get(job.users)
        profile.update({k: v for k, v in table.lookup(users).items() if k not in profile})
    inputs = {k: (_num(batch, k, np.float64) if k in job.inputs else np.zeros(len(uid)))
              for k in job.all_inputs}  # fmt: skip
    return Block(
        visits=visits,
        propensity=_num(batch, "propensity", np.float64) if "propensity" in cols else None,
        treatment=_num(batch, "treatment", np.float64) if "treatment" in cols else None,
        inputs=inputs, users=users, profile=profile,
    )  # fmt: skip


def _landing_mismatch(batch: pa.Table, uid: np.ndarray, t: np.ndarray, dwell: np.ndarray,
                      gap_s: float) -> int:  # fmt: skip
    """Visits whose ``landing`` flag disagrees with being a session's first visit."""
    if "landing" not in batch.column_names:
        return 0
    flag = np.asarray(pc.fill_null(batch.column("landing"), False).to_numpy(zero_copy_only=False))
    first = np.ones(len(t), dtype=bool)
    first[1:] = (uid[1:] != uid[:-1]) | (t[1:] - (t + dwell)[:-1] >= gap_s)
    return int(np.count_nonzero(flag.astype(bool) != first))


__all__ = ["PAGE_COL", "T_COL", "PartJob", "build_part", "clean_block", "scan_block"]
