"""The bounded shuffle of an ingest: the good events split by user into B bucket files on disk,
then each bucket read back whole by one task.

Pass 2a (``split_block``, a Ray Data ``map_batches`` over the events): each batch's good rows
(``parts.clean_block``) go to bucket ``hashing.bucket_of(user_id, B)``; every non-empty
bucket's rows of the batch are written as one Parquet file ``<root>/b=<k>/<tag>.parquet``,
``tag`` a fresh id of the batch. The task returns only its tag and rows per bucket, so neither
the object store nor the driver holds the events: memory is bounded by a batch, not by the
input.

Pass 2b (``read_bucket``): a bucket is read back from the files whose tag the driver received
(a file of a task attempt that failed and was retried is ignored) and checked against the rows
the split tasks reported. Every visit of a user is in exactly one bucket, so a bucket is a set
of whole users: one task sessionizes it (``parts.build_part``), holding one bucket's events.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from glan_ray import storage
from glan_ray.ingest.events import EventChecks
from glan_ray.ingest.hashing import bucket_of
from glan_ray.ingest.parts import clean_block

BUCKETS_DIR = "_buckets"
"""The temporary directory of the buckets under the output (removed when the ingest ends)."""
_SUFFIX = ".parquet"


@dataclass(frozen=True)
class BucketJob:
    """What every split task needs."""

    ec: EventChecks
    """The input's checks (the rows that pass them are split)."""
    root: str
    """The bucket directory (``<out>/_buckets``)."""
    buckets: int
    """B, the number of buckets (≥ 1)."""


def bucket_dir(root: str, k: int) -> str:
    """Bucket ``k``'s directory."""
    return storage.join(root, f"b={k:05d}")


def _write(table: pa.Table, path: str) -> None:
    """A bucket file: uncompressed, dictionary-encoded only where values repeat (``page``);
    it is read once, by the same machine or cluster, and deleted."""
    fs, inner = storage.filesystem(path)
    if not storage.is_uri(path):
        os.makedirs(os.path.dirname(inner), exist_ok=True)
    pq.write_table(table, inner, filesystem=fs, compression="none",
                   use_dictionary=[c for c in ("page",) if c in table.column_names])  # fmt: skip


def split_block(batch: pa.Table, job: BucketJob) -> pa.Table:
    """Write a batch's good rows into their users' buckets; its summary row: ``tag`` (the name
    of the files written) and ``rows``, the rows written to each bucket (a list of B)."""
    clean = clean_block(batch, job.ec)
    counts = np.zeros(job.buckets, dtype=np.int64)
    tag = uuid.uuid4().hex
    if clean.num_rows:
        b = bucket_of(clean.column("user_id").cast(pa.int64()).to_numpy(), job.buckets)
        order = np.argsort(b, kind="stable")
        counts = np.bincount(b, minlength=job.buckets).astype(np.int64)
        ends = np.cumsum(counts)
        for k in np.flatnonzero(counts):
            first = ends[k] - counts[k]
            _write(clean.take(pa.array(order[first:ends[k]])),
                   storage.join(bucket_dir(job.root, int(k)), tag + _SUFFIX))  # fmt: skip
    return pa.table({"tag": [tag], "rows": pa.array([counts.tolist()], pa.list_(pa.int64()))})


def read_bucket(root: str, k: int, tags: frozenset[str], rows: int) -> pa.Table:
    """Bucket ``k``'s rows (``rows`` > 0) from the files of ``tags`` (the split tasks that
    completed); ``RuntimeError`` when they hold other than the ``rows`` those tasks reported."""
    where = bucket_dir(root, k)
    names = [n for n in storage.listdir(where) if n.endswith(_SUFFIX)
             and n[:-len(_SUFFIX)] in tags] if storage.isdir(where) else []  # fmt: skip
    tables = []
    for name in names:
        fs, inner = storage.filesystem(storage.join(where, name))
        tables.append(pq.read_table(inner, filesystem=fs))
    got = sum(t.num_rows for t in tables)
    if got != rows or not tables:
        raise RuntimeError(f"ingest: bucket {k} under {root} holds {got} rows in "
                           f"{len(names)} file(s); its split tasks wrote {rows}")  # fmt: skip
    return pa.concat_tables(tables, promote_options="permissive")


__all__ = ["BUCKETS_DIR", "BucketJob", "bucket_dir", "read_bucket", "split_block"]
