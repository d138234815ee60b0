"""``ingest``: raw page-visit events → the glan-ray datasets of an app (docs/ingest.md).

Passes of Ray Data over the events, none of which brings them to the driver. Parquet events are
read in pieces (``pieces.plan``: whole row groups of one file, at most ``PIECE_ROWS`` events),
one task per piece reading ``BATCH_ROWS`` events at a time; CSV with Ray Data's ``read_csv``
(``Events``):

1. scan: every event is checked (``events.EventChecks``); the driver sums the counts per bad
   event class and the day range. By default any bad event refuses the whole input with a
   report naming each column, issue and row count (nothing written); with ``quarantine`` the
   bad rows go there as Parquet with a ``reason`` and the rest is ingested.
2. build, a shuffle bounded by disk rather than memory (``buckets``):
   a. split: each batch's good events are split by ``hash(user_id) % B`` into B buckets, each
      bucket's rows written as a small Parquet file under ``<out>/_buckets/b=<k>/``; the tasks
      return only row counts;
   b. one Ray task per bucket reads it whole (every visit of a user is in one bucket) and turns
      it into one part of every dataset (``parts.build_part``), written as
      ``<out>/<name>/part-<first user>/<name>-0000-0.parquet``, the layout
      ``data.read.read_dataset`` reads. Visits of a user that overlap are found here: refused
      (the parts written are removed) or quarantined.
   ``<out>/_buckets`` is removed when the ingest ends, failed or not.

Memory is flat in the number of events: a scan or split task works on ``BATCH_ROWS`` events at
a time (a Parquet task also holds the row group it decodes), a build task on one bucket (B is
chosen so a bucket holds about ``ROWS_PER_PART`` events), and neither the object store nor the
driver holds the events.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from glan_ray import schema, storage
from glan_ray.apps import AppSpec
from glan_ray.ingest.buckets import BUCKETS_DIR, BucketJob, read_bucket, split_block
from glan_ray.ingest.events import (
    DAY_S,
    OPTIONAL,
    OVERLAP,
    REQUIRED,
    BadEventsError,
    EventChecks,
    type_problems,
)
from glan_ray.ingest.hashing import distinct_users
from glan_ray.ingest.parts import PartJob, build_part, scan_block
from glan_ray.ingest.pieces import ParquetInput, Piece, plan, read_piece
from glan_ray.ingest.profiles import format_report, profile_columns, user_table
from glan_ray.schema import Problem

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ROWS_PER_PART = 250_000
"""Default good events per bucket (one part of every dataset): bounds a task's memory."""
DAILY_ROWS_PER_PART = 1_000_000
"""... and daily rows (users × days of the input) per bucket, for long day ranges."""
BATCH_ROWS = 250_000
"""Events per batch of the scan and the split: bounds their tasks' working memory whatever the
size of the input, its files or the blocks a CSV read makes."""
FORMATS = ("parquet", "csv")


@dataclass(frozen=True)
class IngestResult:
    """What an ingest wrote and found."""

    out: str
    """The run directory written."""
    rows: dict[str, int]
    """Rows written per dataset."""
    events: int
    """Events read."""
    ingested: int
    """Events turned into sessions (read − quarantined)."""
    users: int
    """Users with at least one ingested event."""
    days: tuple[int, int]
    """The first and last UTC day of the input."""
    bad: list[Problem]
    """The bad-event report: rows per column and issue (empty when every event was good)."""
    quarantined: int
    """Rows written to the quarantine (0 without one)."""
    seconds: float
    """Wall time of the ingest."""
    defaults: list[str] = field(default_factory=list)
    """Optional columns the events lack and the value used instead."""

    @property
    def events_per_s(self) -> float:
        return self.events / max(self.seconds, 1e-9)

    def summary(self) -> dict[str, Any]:
        """Plain data for the manifest."""
        return {"events": self.events, "ingested": self.ingested, "users": self.users,
                "first_day": self.days[0], "last_day": self.days[1], "rows": self.rows,
                "bad_events": [{"column": p.column, "issue": p.issue, "rows": p.rows}
                               for p in self.bad],
                "quarantined": self.quarantined, "defaults": self.defaults,
                "seconds": round(self.seconds, 3),
                "events_per_s": round(self.events_per_s, 1)}  # fmt: skip


def _format(path: str, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {list(FORMATS)}; got {fmt!r}")
        return fmt
    name = path.rstrip("/").lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if not storage.is_uri(path) and os.path.isdir(path):
        files = [f.lower() for _, _, fs in os.walk(path) for f in fs]
        if any(f.endswith((".csv", ".csv.gz")) for f in files):
            return "csv"
    return "parquet"


def read_table_ds(path: str, fmt: str | None = None) -> ray.data.Dataset:
    """A Parquet or CSV file or directory (local or URI) as a Ray dataset."""
    if not storage.exists(path):
        raise FileNotFoundError(f"no events at {path}")
    if _format(path, fmt) == "csv":
        return ray.data.read_csv(path)
    return ray.data.read_parquet(path)


def _existing(out: str, quarantine: str | None, overwrite: bool) -> list[str]:
    """The directories an ingest replaces; ``FileExistsError`` for one that holds data unless
    ``overwrite`` (they are cleared only once the events passed their scan)."""
    dirs = [storage.join(out, n) for n in schema.SCHEMAS]
    dirs += [quarantine] if quarantine else []
    full = [d for d in dirs if storage.isdir(d) and storage.listdir(d)]
    if full and not overwrite:
        raise FileExistsError(f"{full[0]} already holds data; pass --overwrite or another path")
    return full


@dataclass(frozen=True)
class Events:
    """The raw events as the scan and the split read them: Parquet as ``pieces`` (bounded
    pieces of row groups, each read in batches by one Ray Data task), CSV through Ray Data's
    ``read_csv`` (a task reads a whole file)."""

    path: str
    """The events' file or directory (local or URI)."""
    schema: pa.Schema
    """Their Arrow schema."""
    parquet: ParquetInput | None
    """The pieces of a Parquet input; None for CSV."""
    ds: ray.data.Dataset | None
    """Ray Data's dataset of a CSV input; None for Parquet."""

    def rows(self) -> int:
        """Events in the input (Parquet: from the footers)."""
        if self.parquet is not None:
            return self.parquet.rows
        assert self.ds is not None
        return self.ds.count()

    def summaries(self, fn: Callable[..., pa.Table], **kwargs: Any) -> list[dict[str, Any]]:
        """The summary rows of ``fn(table, **kwargs)`` over every event, at most
        ``BATCH_ROWS`` at a time (see ``in_slices`` and ``_run_pieces``)."""
        if self.parquet is None:
            assert self.ds is not None
            return self.ds.map_batches(in_slices, fn_kwargs={"fn": fn, **kwargs},
                                       batch_format="pyarrow", batch_size=None).take_all()
        pieces = self.parquet.pieces
        if not pieces:
            return []
        items = [{"path": p.path, "row_groups": list(p.row_groups), "rows": p.rows}
                 for p in pieces]  # fmt: skip
        return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _run_pieces, fn_kwargs={"fn": fn, **kwargs}, batch_format="pyarrow",
            batch_size=1).take_all()  # fmt: skip


def read_events(path: str, fmt: str | None = None) -> Events:
    """The events at ``path`` (Parquet or CSV; ``fmt`` default: from the names), planned."""
    if _format(path, fmt) == "csv":
        ds = read_table_ds(path, "csv")
        got = ds.schema()
        if got is None:
            raise BadEventsError("the events have no rows or no schema")
        arrow = got.base_schema if hasattr(got, "base_schema") else pa.schema(
            [pa.field(n, t) for n, t in zip(got.names, got.types, strict=True)])  # fmt: skip
        return Events(path, arrow, None, ds)
    parquet = plan(path)  # FileNotFoundError "no events at" for a missing path
    return Events(path, parquet.schema, parquet, None)


def in_slices(block: pa.Table, fn: Callable[..., pa.Table], **kwargs: Any) -> pa.Table:
    """``fn(slice, **kwargs)`` over zero-copy slices of ``BATCH_ROWS`` rows of ``block``, their
    summary rows stacked (one call on an empty block).

    A CSV read hands its blocks on with ``batch_size=None``, so Ray Data fuses the read and
    the map into one task and no block waits in the object store (a ``batch_size`` makes Ray
    Data bundle blocks across read tasks: a separate operator whose queue of read blocks grows
    with the input)."""
    return pa.concat_tables([fn(block.slice(i, BATCH_ROWS), **kwargs)
                             for i in range(0, max(block.num_rows, 1), BATCH_ROWS)])  # fmt: skip


def _run_pieces(items: pa.Table, fn: Callable[..., pa.Table], **kwargs: Any) -> pa.Table:
    """``fn(batch, **kwargs)`` over every ``BATCH_ROWS``-event batch of each piece of
    ``items`` (rows of path, row_groups, rows), their summary rows stacked."""
    out = []
    for it in items.to_pylist():
        piece = Piece(it["path"], tuple(it["row_groups"]), it["rows"])
        out += [fn(batch, **kwargs) for batch in read_piece(piece, BATCH_ROWS)]
    return pa.concat_tables(out)


def _checks(spec: AppSpec, events: Events, users: str | None
            ) -> tuple[EventChecks, ray.ObjectRef | None, list[str]]:  # fmt: skip
    """The checks of this input; refuses a missing column or a column of the wrong type."""
    arrow = events.schema
    names = tuple(arrow.names)
    profile = profile_columns(spec)
    on_events = tuple(c for c in profile if c in names)
    need_users = [c for c in profile if c not in names]
    problems = [Problem(c, "missing", -1) for c in REQUIRED if c not in names]
    if need_users and users is None:
        problems += [Problem(c, "missing (a profile field of the spec: give it on the events "
                             "or in --users)", -1) for c in need_users]  # fmt: skip
    numeric = (*OPTIONAL, *profile, *(str(c.name) for c in spec.features.context))
    problems += [Problem(c.column, c.issue, -1) for c in type_problems(arrow, numeric)]
    if problems:
        n = events.rows()
        problems = [Problem(p.column, p.issue, n) for p in problems]
        raise BadEventsError(format_report(problems, f"the events cannot be read (every one of "
                                                     f"the {n} rows)"))  # fmt: skip
    ref, known = None, None
    if users is not None:
        table = pa.concat_tables(ray.get(read_table_ds(users).to_arrow_refs()))
        ut = user_table(table, spec, tuple(need_users), users)
        ref, known = ray.put(ut), ut.user_id
    defaults = []
    if "propensity" not in names:
        defaults.append(f"propensity: not logged, 1/{spec.n_pages} (uniform) used")
    for c in spec.features.context:
        if c.quantity == "input" and c.name not in names:
            defaults.append(f"{c.name}: context input not in the events, 0 used")
    for d in defaults:
        logger.warning("events: %s", d)
    present = tuple(c for c in names if c in (*REQUIRED, *OPTIONAL) or c in profile
                    or c in {str(x.name) for x in spec.features.context})  # fmt: skip
    return EventChecks(spec, present, on_events, known), ref, defaults


@dataclass(frozen=True)
class Scan:
    """What the first pass found."""

    rows: int
    """Events read."""
    good: int
    """Events that passed every row check."""
    report: list[Problem]
    """Rows per failed check."""
    first_t: float
    """The earliest good start (s)."""
    last_t: float
    """The latest good start (s)."""
    treated: int
    """Good events with a treatment."""
    users: int
    """Distinct users with a good event (``hashing.distinct_users``: exact up to 4096, an
    estimate within about 2% above; it sizes the buckets)."""


def _scan(events: Events, ec: EventChecks, quarantine: str | None) -> Scan:
    """Pass 1: check every event; counts summed over the batches."""
    rows = events.summaries(scan_block, ec=ec, quarantine=quarantine)
    n = sum(r["rows"] for r in rows)
    good = sum(r["good"] for r in rows)
    bad = np.sum([r["bad"] for r in rows], axis=0) if rows else np.zeros(len(ec.checks))
    report = [Problem(c.column, c.issue, int(k)) for c, k in zip(ec.checks, bad, strict=True)
              if k]  # fmt: skip
    lo = min((r["min_t"] for r in rows), default=np.inf)
    hi = max((r["max_t"] for r in rows), default=-np.inf)
    return Scan(n, good, report, lo, hi, sum(r["treated"] for r in rows),
                distinct_users([r["users"] for r in rows]))  # fmt: skip


def _split(events: Events, job: BucketJob) -> tuple[np.ndarray, frozenset[str]]:
    """Pass 2a: the good events into ``job.buckets`` bucket files; (B,) rows per bucket and
    the tags of the files written, from the tasks' summaries."""
    rows = events.summaries(split_block, job=job)
    per_bucket = np.zeros(job.buckets, dtype=np.int64)
    for r in rows:
        per_bucket += np.asarray(r["rows"], dtype=np.int64)
    return per_bucket, frozenset(str(r["tag"]) for r in rows)


@ray.remote
def _build_bucket(root: str, k: int, tags: frozenset[str], rows: int, job: PartJob) -> pa.Table:
    """Pass 2b: bucket ``k`` (``rows`` events of whole users) → one part of every dataset."""
    return build_part(read_bucket(root, k, tags, rows), job)


def _build(root: str, per_bucket: np.ndarray, tags: frozenset[str], job: PartJob
           ) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Pass 2b over every non-empty bucket, one Ray task each (Ray runs as many at once as it
    has CPUs); each part's summary row as its task ends. The tasks not yet done are cancelled
    when the caller stops early (a failed task)."""
    tags_ref = ray.put(tags)
    pending = [_build_bucket.remote(root, int(k), tags_ref, int(per_bucket[k]), job)
               for k in np.flatnonzero(per_bucket)]  # fmt: skip
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0]).to_pylist()[0]
    finally:
        for ref in pending:
            ray.cancel(ref)


def ingest(
    spec: AppSpec,
    events: str,
    out: str,
    *,
    users: str | None = None,
    quarantine: str | None = None,
    overwrite: bool = False,
    fmt: str | None = None,
    partitions: int | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> IngestResult:
    """Ingest raw events (``events``: Parquet or CSV, a file or directory, local or URI) into
    ``spec``'s datasets under ``out``; see the module docstring and docs/ingest.md.

    ``users``: a table of profile fields keyed by ``user_id``. ``quarantine``: a directory for
    the bad rows (else bad rows refuse the input: ``BadEventsError``). ``fmt``: parquet or csv
    (default: from the names). ``partitions``: B, the buckets of the shuffle by user, each one
    part of every dataset (default: one per 250,000 good events or per million daily rows,
    whichever gives more; a task holds one bucket). ``progress(events done, events to do)``
    after each part.
    """
    start = time.perf_counter()
    if partitions is not None and partitions < 1:
        raise ValueError(f"ingest: partitions must be at least 1; got {partitions}")
    if spec.reward != "usage_time":
        raise ValueError(f"ingest: the spec's reward is {spec.reward!r}; raw events carry no "
                         "watch time, only dwell (reward: usage_time)")  # fmt: skip
    ev = read_events(events, fmt)
    replaced = _existing(out, quarantine, overwrite)
    ec, users_ref, defaults = _checks(spec, ev, users)
    if quarantine and quarantine in replaced:
        storage.rmtree(quarantine)
    logger.info("ingest: scanning the events of %s", events)
    scan = _scan(ev, ec, quarantine)
    n, good, report, treated = scan.rows, scan.good, scan.report, scan.treated
    if report and quarantine is None:
        raise BadEventsError(format_report(report, f"{sum(p.rows for p in report)} bad event "
                                           f"finding(s) in {n} events; nothing was written "
                                           "(--quarantine PATH sets them aside)"))  # fmt: skip
    if good == 0:
        raise BadEventsError(format_report(report, f"no good event among the {n}"))
    for d in replaced:
        if d != quarantine:  # cleared before the scan wrote to it
            storage.rmtree(d)
    storage.makedirs(out)
    first_day, last_day = math.floor(scan.first_t / DAY_S), math.floor(scan.last_t / DAY_S)
    daily_rows = scan.users * (last_day - first_day + 1)
    parts = partitions or max(1, math.ceil(good / ROWS_PER_PART),
                              math.ceil(daily_rows / DAILY_ROWS_PER_PART))  # fmt: skip
    logger.info("ingest: %d events (%d good, %d with a treatment), days %d..%d; building %d "
                "part(s)", n, good, treated, first_day, last_day, parts)  # fmt: skip
    job = PartJob(spec=spec, out=out, first_day=first_day, n_days=last_day - first_day + 1,
                  profile_on_events=ec.profile_on_events, inputs=ec.inputs,
                  all_inputs=tuple(str(c.name) for c in spec.features.context
                                   if c.quantity == "input"),
                  quarantine=quarantine, users=users_ref)  # fmt: skip
    root = storage.join(out, BUCKETS_DIR)
    if storage.exists(root):
        logger.warning("ingest: removing %s, left by an ingest that did not finish", root)
        storage.rmtree(root)
    rows: dict[str, int] = {}
    done = n_users = overlaps = mismatch = 0
    try:
        per_bucket, tags = _split(ev, BucketJob(ec=ec, root=root, buckets=parts))
        if int(per_bucket.sum()) != good:
            raise RuntimeError(f"ingest: the split wrote {int(per_bucket.sum())} events to "
                               f"{root}; the scan found {good} good ones")  # fmt: skip
        logger.info("ingest: %d good events split into %d bucket(s) under %s (at most %d "
                    "events in one); sessionizing each", good, int(np.count_nonzero(per_bucket)),
                    root, int(per_bucket.max()))  # fmt: skip
        for r in _build(root, per_bucket, tags, job):
            done += r["events"]
            overlaps += r["overlaps"]
            n_users += r["users"]
            mismatch += r["landing_mismatch"]
            for k in schema.SCHEMAS:
                rows[k] = rows.get(k, 0) + r[f"rows_{k}"]
            logger.debug("ingest: part %s: %d events", r["part"], r["events"])
            if progress:
                progress(done, good)
    finally:
        storage.rmtree(root)
    if overlaps:
        report.append(Problem("ts", OVERLAP, overlaps))
        if quarantine is None:
            for name in schema.SCHEMAS:
                storage.rmtree(storage.join(out, name))
            raise BadEventsError(format_report(report, f"{overlaps} bad events in {n}; nothing "
                                               "was written (--quarantine PATH sets them "
                                               "aside)"))  # fmt: skip
    if mismatch:
        logger.warning("ingest: %d visits' landing flag disagrees with being a session's first "
                       "visit (session gap %g s)", mismatch, spec.session_gap_s)  # fmt: skip
    quarantined = n - good + overlaps
    written = [k for k in schema.SCHEMAS if k != "rct" or "treatment" in ec.columns]
    result = IngestResult(out=out, rows={k: rows.get(k, 0) for k in written},
                          events=n, ingested=good - overlaps, users=n_users,
                          days=(first_day, last_day), bad=report, quarantined=quarantined,
                          seconds=time.perf_counter() - start, defaults=defaults)  # fmt: skip
    summary = result.summary()
    summary["landing_mismatch"] = mismatch
    storage.write_json(storage.join(out, MANIFEST), {
        "source": "ingest", "spec": spec.to_dict(), "spec_fingerprint": spec.fingerprint(),
        "events": events, "users": users, "quarantine": quarantine,
        "session_gap_s": spec.session_gap_s, "summary": summary}, indent=2)  # fmt: skip
    logger.info("ingest: %d events -> %s in %.1f s (%.0f events/s)", n, result.rows,
                result.seconds, result.events_per_s)  # fmt: skip
    return result


__all__ = ["MANIFEST", "Events", "IngestResult", "ingest", "read_events", "read_table_ds"]
