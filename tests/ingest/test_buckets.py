"""The bounded shuffle of ``ingest`` (``glan_ray.ingest.buckets``): every user's events in
exactly one bucket, a bucket read back whole from the completed split tasks' files only, the
same datasets for one bucket and for several, and no bucket file left after an ingest, whether
it succeeded or was refused."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glan_ray import schema
from glan_ray.apps import plpm_spec
from glan_ray.data.parts import dataset_parts
from glan_ray.ingest import BadEventsError, ingest
from glan_ray.ingest.buckets import (
    BUCKETS_DIR,
    BucketJob,
    bucket_dir,
    read_bucket,
    split_block,
)
from glan_ray.ingest.events import EventChecks
from glan_ray.ingest.hashing import SKETCH_SIZE, bucket_of, distinct_users, user_sketch
from glan_ray.ingest.profiles import profile_columns
from tests.ingest.test_ingest import _events, _overlapping, _with_profile


def _checks(events: pa.Table) -> EventChecks:
    spec = plpm_spec()
    return EventChecks(spec, tuple(events.column_names), profile_columns(spec))


def test_bucket_of_is_a_fixed_function_of_the_id_that_spreads_consecutive_ids():
    ids = np.arange(100_000, 200_000, dtype=np.int64)
    b = bucket_of(ids, 7)
    assert b.min() == 0 and b.max() == 6
    assert np.array_equal(b, bucket_of(ids, 7))  # the same in every task
    counts = np.bincount(b, minlength=7)
    assert counts.min() > 0.95 * len(ids) / 7 and counts.max() < 1.05 * len(ids) / 7
    assert np.array_equal(bucket_of(ids, 1), np.zeros(len(ids), dtype=np.int64))


def test_user_sketches_merge_into_the_distinct_users_of_every_batch():
    rng = np.random.default_rng(0)
    few = [rng.integers(0, 1000, 5000), rng.integers(500, 1500, 5000)]  # users seen twice
    assert distinct_users([user_sketch(b) for b in few]) == len(np.unique(np.concatenate(few)))
    assert distinct_users([]) == 0
    many = [np.arange(k * 50_000, k * 50_000 + 80_000) for k in range(10)]  # overlapping
    sketches = [user_sketch(b) for b in many]
    assert all(len(s) == SKETCH_SIZE for s in sketches)
    assert distinct_users(sketches) == pytest.approx(9 * 50_000 + 80_000, rel=0.05)


def test_split_blocks_put_each_users_events_in_one_bucket_and_read_back_every_row(tmp_path):
    events = _with_profile(_events(plpm_spec().pages, users=9, days=2))
    ec, root = _checks(events), str(tmp_path / BUCKETS_DIR)
    job = BucketJob(ec=ec, root=root, buckets=4)
    half = events.num_rows // 2  # two blocks of the input, each split on its own
    summaries = [split_block(events.slice(0, half), job), split_block(events.slice(half), job)]
    per_bucket = np.sum([s.column("rows")[0].as_py() for s in summaries], axis=0)
    tags = frozenset(s.column("tag")[0].as_py() for s in summaries)
    assert per_bucket.sum() == events.num_rows and len(tags) == 2
    seen: list[int] = []
    for k in np.flatnonzero(per_bucket):
        table = read_bucket(root, int(k), tags, int(per_bucket[k]))
        users = set(table.column("user_id").to_pylist())
        assert set(bucket_of(np.array(sorted(users)), 4).tolist()) == {k}
        seen += table.column("user_id").to_pylist()
    assert sorted(seen) == sorted(events.column("user_id").to_pylist())  # each row once


def test_a_bucket_ignores_files_of_failed_attempts_and_refuses_missing_rows(tmp_path):
    events = _with_profile(_events(plpm_spec().pages, users=3, days=1))
    root = str(tmp_path / BUCKETS_DIR)
    job = BucketJob(ec=_checks(events), root=root, buckets=1)
    done = split_block(events, job)
    split_block(events, job)  # an attempt whose summary never reached the driver
    tag, rows = done.column("tag")[0].as_py(), done.column("rows")[0].as_py()[0]
    assert len(os.listdir(bucket_dir(root, 0))) == 2
    assert read_bucket(root, 0, frozenset([tag]), rows).num_rows == events.num_rows
    os.remove(os.path.join(bucket_dir(root, 0), f"{tag}.parquet"))
    with pytest.raises(RuntimeError, match=f"bucket 0 under {root} holds 0 rows in 0 file"):
        read_bucket(root, 0, frozenset([tag]), rows)


def _sorted(out: str, name: str) -> pa.Table:
    parts = dataset_parts(out, name)
    t = pa.concat_tables(pq.read_table(f) for _, f in sorted(parts.items()))
    keys = [k for k in ("day", "user_id", "session_idx") if k in t.column_names]
    return t.sort_by([(k, "ascending") for k in keys])


def test_one_bucket_and_several_give_the_same_rows_and_leave_no_bucket_files(ray_session, tmp_path):
    events = _with_profile(_events(plpm_spec().pages, users=12, days=3, seed=3))
    src = str(tmp_path / "events.parquet")
    pq.write_table(events, src)
    one, five = str(tmp_path / "one"), str(tmp_path / "five")
    os.makedirs(os.path.join(five, BUCKETS_DIR, "b=00003"))  # left by an ingest killed earlier
    res1 = ingest(plpm_spec(), src, one, partitions=1)
    res5 = ingest(plpm_spec(), src, five, partitions=5)
    assert res1.rows == res5.rows and res1.users == res5.users == 12
    assert len(dataset_parts(one, "sessions")) == 1
    assert 1 < len(dataset_parts(five, "sessions")) <= 5
    for name in res1.rows:
        a, b = _sorted(one, name), _sorted(five, name)
        assert a.num_rows == res1.rows[name] and a.equals(b), name
    assert not os.path.exists(os.path.join(one, BUCKETS_DIR))
    assert not os.path.exists(os.path.join(five, BUCKETS_DIR))


def test_a_refused_ingest_leaves_no_bucket_files(ray_session, tmp_path):
    """Overlapping visits are found in the buckets, after the split wrote them."""
    events = _overlapping(_with_profile(_events(plpm_spec().pages, users=4, days=1)))
    src, out = str(tmp_path / "events.parquet"), str(tmp_path / "out")
    pq.write_table(events, src)
    with pytest.raises(BadEventsError, match="visit starts before the user's previous visit"):
        ingest(plpm_spec(), src, out, partitions=3)
    assert not os.path.exists(os.path.join(out, BUCKETS_DIR))
    assert not any(os.path.isdir(os.path.join(out, n)) for n in schema.SCHEMAS)


def test_a_failed_ingest_leaves_no_bucket_files(ray_session, tmp_path):
    """A part task fails (its dataset directory is a file): the error reaches the caller and
    the buckets are removed."""
    events = _with_profile(_events(plpm_spec().pages, users=4, days=1))
    src, out = str(tmp_path / "events.parquet"), str(tmp_path / "out")
    pq.write_table(events, src)
    os.makedirs(out)
    with open(os.path.join(out, "sessions"), "w") as f:
        f.write("not a directory")
    with pytest.raises(Exception, match="sessions"):
        ingest(plpm_spec(), src, out, partitions=2)
    assert not os.path.exists(os.path.join(out, BUCKETS_DIR))
