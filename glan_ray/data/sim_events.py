"""A simulated run's datasets written as raw page-visit events (``glan-ray sim-events``).

Reads ``<data>/sessions`` (and ``rct`` when present) part by part with pyarrow, in the parts'
day order, and writes what ``glan-ray ingest`` reads (``sim.events`` says how a session becomes
visits and why some sessions are delayed)::

    <out>/events/part-00000.parquet ...   one row per page visit
    <out>/users.parquet                   the profile per user_id (ingest --users)
    <out>/shifts.parquet                  the delayed sessions: user_id, day, session_idx, shift_s
    <out>/export.json                     the options and the ExportSummary

One part is in memory at a time, so memory is flat in the number of parts.
"""

from __future__ import annotations

import dataclasses
import logging

import pyarrow as pa

from glan_ray import storage
from glan_ray.data.parts import dataset_parts, read_part, write_part
from glan_ray.sim.events import (
    EventExport,
    ExportSummary,
    LastEnds,
    session_events,
    table_sessions,
    users_table,
)

logger = logging.getLogger(__name__)

PROFILE_COLUMNS = ("age", "region", "activity", "social_degree")
"""The simulator's profile fields (schema.USER_FIELDS): the plpm spec's profile sources."""
EVENTS, USERS, SHIFTS, EXPORT = "events", "users.parquet", "shifts.parquet", "export.json"
"""What ``export_run`` writes under its output directory."""


def _distinct(profile: pa.Table) -> pa.Table:
    """One row per user of a table of user-days (the profile does not change)."""
    return users_table({c: profile[c].to_numpy() for c in profile.column_names})


def export_run(data: str, out: str, opts: EventExport, overwrite: bool = False) -> ExportSummary:
    """Write the simulated run under ``data`` as raw events under ``out`` (module docstring)."""
    events_dir = storage.join(out, EVENTS)
    if storage.isdir(events_dir) and storage.listdir(events_dir):
        if not overwrite:
            raise FileExistsError(f"{events_dir} already holds events; pass --overwrite")
        storage.rmtree(events_dir)
    sessions = dataset_parts(data, "sessions")
    rct = dataset_parts(data, "rct") if storage.isdir(storage.join(data, "rct")) else {}
    total, last, shifts = ExportSummary(), LastEnds(), []
    for i, part in enumerate(sorted(sessions)):
        cols = table_sessions(read_part(sessions[part]),
                              read_part(rct[part]) if part in rct else None)  # fmt: skip
        events, moved, summary = session_events(cols, opts, last)
        write_part(events, storage.join(events_dir, f"part-{i:05d}.parquet"))
        shifts.append(moved)
        total.add(summary)
        logger.info("part %s: %d sessions, %d visits, %d delayed", part, summary.sessions,
                    summary.visits, summary.shifted)  # fmt: skip
    per_part = [_distinct(read_part(f, ["user_id", *PROFILE_COLUMNS]))
                for f in dataset_parts(data, "daily").values()]  # fmt: skip
    users = _distinct(pa.concat_tables(per_part))
    write_part(users, storage.join(out, USERS))
    write_part(pa.concat_tables(shifts), storage.join(out, SHIFTS))
    storage.write_json(storage.join(out, EXPORT), {"data": data,
        "options": {**dataclasses.asdict(opts), "pages": list(opts.pages)},
        "summary": dataclasses.asdict(total)}, indent=2)  # fmt: skip
    logger.info("%d sessions as %d events (%d delayed, at most %.0f s) under %s", total.sessions,
                total.visits, total.shifted, total.max_shift_s, out)  # fmt: skip
    return total


__all__ = ["EVENTS", "EXPORT", "PROFILE_COLUMNS", "SHIFTS", "USERS", "export_run"]
