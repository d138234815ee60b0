"""Parquet events as pieces (``glan_ray.ingest.pieces``): pieces group whole row groups up to
``piece_rows`` events, cover every row once in file order, skip hidden files and empty row
groups, read in batches no larger than asked, and a file with other columns is named."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glan_ray.ingest.pieces import parquet_files, plan, read_piece


def _write(path: str, first: int, rows: int, row_group: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t = pa.table({"user_id": pa.array(range(first, first + rows), pa.int64()),
                  "ts": pa.array([float(i) for i in range(rows)])})  # fmt: skip
    pq.write_table(t, path, row_group_size=row_group)


def test_pieces_group_whole_row_groups_up_to_the_limit_and_cover_every_row_in_order(tmp_path):
    d = str(tmp_path / "events")
    _write(os.path.join(d, "a.parquet"), 0, 100, 30)  # row groups 30, 30, 30, 10
    _write(os.path.join(d, "sub", "b.parquet"), 100, 50, 50)  # one row group of 50
    p = plan(d, piece_rows=60)
    assert [(os.path.basename(x.path), x.row_groups, x.rows) for x in p.pieces] == [
        ("a.parquet", (0, 1), 60), ("a.parquet", (2, 3), 40), ("b.parquet", (0,), 50)]
    assert p.rows == 150 and p.schema.names == ["user_id", "ts"]
    # a row group larger than the limit is a piece by itself
    assert [x.rows for x in plan(d, piece_rows=20).pieces] == [30, 30, 30, 10, 50]
    batches = [b for x in p.pieces for b in read_piece(x, batch_rows=25)]
    assert max(b.num_rows for b in batches) == 25
    ids = pa.concat_tables(batches).column("user_id").to_pylist()
    assert ids == list(range(150))


def test_hidden_files_other_extensions_and_empty_row_groups_are_skipped(tmp_path):
    d = str(tmp_path / "events")
    _write(os.path.join(d, "part-0.parquet"), 0, 10, 10)
    _write(os.path.join(d, "_temporary", "part-9.parquet"), 50, 10, 10)
    _write(os.path.join(d, ".part-1.parquet"), 60, 10, 10)
    with open(os.path.join(d, "_SUCCESS"), "w"):
        pass
    with open(os.path.join(d, "notes.txt"), "w") as f:
        f.write("not events")
    empty = pa.table({"user_id": pa.array([], pa.int64()), "ts": pa.array([], pa.float64())})
    pq.write_table(empty, os.path.join(d, "part-2.parquet"))
    assert [os.path.basename(f) for f in parquet_files(d)] == ["part-0.parquet", "part-2.parquet"]
    p = plan(d)
    assert [x.rows for x in p.pieces] == [10] and p.rows == 10
    one = os.path.join(d, "part-0.parquet")
    assert parquet_files(one) == [one]


def test_a_file_with_other_columns_or_no_file_is_named(tmp_path):
    d = str(tmp_path / "events")
    _write(os.path.join(d, "a.parquet"), 0, 10, 10)
    pq.write_table(pa.table({"user_id": pa.array(["u1"]), "ts": pa.array([1.0])}),
                   os.path.join(d, "b.parquet"))  # fmt: skip
    first_file = r"Every events file must have the first file's columns"
    with pytest.raises(ValueError, match=r"b\.parquet: user_id is string \(int64 in "
                                         r".*a\.parquet\)\. " + first_file):
        plan(d)
    pq.write_table(pa.table({"user_id": pa.array([1], pa.int64()), "page": pa.array(["x"])}),
                   os.path.join(d, "b.parquet"))  # fmt: skip
    with pytest.raises(ValueError, match=r"b\.parquet: ts is missing \(double in .*a\.parquet\); "
                                         r"page \(string\) is not in .*a\.parquet"):
        plan(d)
    with pytest.raises(FileNotFoundError, match="no events at"):
        plan(str(tmp_path / "nope"))
    os.makedirs(tmp_path / "empty_dir")
    with pytest.raises(FileNotFoundError, match=r"no \*\.parquet file under"):
        plan(str(tmp_path / "empty_dir"))
    with open(tmp_path / "bad.parquet", "w") as f:
        f.write("not parquet")
    with pytest.raises(ValueError, match=r"bad\.parquet is not a readable Parquet file"):
        plan(str(tmp_path / "bad.parquet"))
    with pytest.raises(ValueError, match="piece_rows must be at least 1"):
        plan(d, piece_rows=0)
