"""Parquet events as pieces of bounded size: the unit of work of the ingest's scan and split.

A piece is a run of consecutive row groups of one file holding at most ``PIECE_ROWS`` events
(a row group larger than that is a piece by itself). The driver plans the pieces from the
files' footers (``plan``); one Ray Data task per piece reads it with
``pq.ParquetFile.iter_batches`` (``read_piece``), ``batch_rows`` events at a time. A task so
holds one batch and the row group being decoded, whatever the size of the input or of its
files.

Why not ``ray.data.read_parquet`` for these two passes: Ray 2.60's Parquet reader (datasource
V2) gives each read task a share of the files (about the input over the CPUs) and decodes ahead
of the blocks it hands on, so a read task's Arrow memory grows with the input. Measured on the
10M-event benchmark input (28 files of 361k events): 480 MB of Arrow buffers held by one read
task with 16 MiB blocks, and a read worker at 1.5 GiB with the default blocks (docs/ingest.md
has the figures). ``glan-ray ingest`` still uses Ray Data's readers for CSV events and the users
table.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from glan_ray import storage

PIECE_ROWS = 1_000_000
"""Events per piece at most (unless one row group holds more): about 100 pieces per 100M
events, so a piece's task lasts seconds and Ray Data can spread them over a cluster."""
_FOOTER_THREADS = 16
"""Footers read at once by the driver (each is a small read; on object stores a round trip)."""


@dataclass(frozen=True)
class Piece:
    """Consecutive row groups of one Parquet file."""

    path: str
    """The file (local path or URI)."""
    row_groups: tuple[int, ...]
    """Its row groups in this piece, in file order."""
    rows: int
    """Events in them."""


@dataclass(frozen=True)
class ParquetInput:
    """The plan of a Parquet input: its pieces and what the footers say."""

    pieces: tuple[Piece, ...]
    """Every non-empty row group of every file, in file and row-group order."""
    schema: pa.Schema
    """The first file's Arrow schema (the files must agree: ``plan`` names one that does not)."""
    rows: int
    """Events in all files."""


def _hidden(relative: str) -> bool:
    """Paths Ray Data and Spark skip: any part starting with ``.`` or ``_`` (``_SUCCESS``,
    ``.crc``, ``_temporary/``)."""
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)


def parquet_files(path: str) -> list[str]:
    """``path`` if it is a file, else every ``*.parquet`` file under it (recursively, sorted,
    hidden ones skipped); ``FileNotFoundError`` when there is none."""
    fs, inner = storage.filesystem(path)
    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.File:
        return [path]
    if info.type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no events at {path}")
    infos = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
    root = inner.rstrip("/")
    relative = sorted(i.path[len(root):].lstrip("/") for i in infos
                      if i.type == pafs.FileType.File)  # fmt: skip
    files = [storage.join(path, r) for r in relative
             if r.lower().endswith(".parquet") and not _hidden(r)]  # fmt: skip
    if not files:
        raise FileNotFoundError(f"no *.parquet file under {path}")
    return files


def _footer(path: str) -> pq.FileMetaData:
    fs, inner = storage.filesystem(path)
    try:
        return pq.read_metadata(inner, filesystem=fs)
    except (OSError, pa.ArrowInvalid) as e:
        raise ValueError(f"{path} is not a readable Parquet file: {e}") from e


def plan(path: str, piece_rows: int = PIECE_ROWS) -> ParquetInput:
    """The pieces of the Parquet input at ``path`` (a file or a directory, local or URI).

    Reads only footers. ``ValueError`` names a file whose columns differ from the first
    file's (a column missing, added or of another type)."""
    if piece_rows < 1:
        raise ValueError(f"piece_rows must be at least 1; got {piece_rows}")
    files = parquet_files(path)
    with ThreadPoolExecutor(min(_FOOTER_THREADS, len(files))) as pool:
        footers = list(pool.map(_footer, files))
    schema = footers[0].schema.to_arrow_schema()
    pieces: list[Piece] = []
    for f, meta in zip(files, footers, strict=True):
        got = meta.schema.to_arrow_schema()
        if not got.equals(schema):
            raise ValueError(f"{f}: {_difference(got, schema, files[0])}. Every events file "
                             "must have the first file's columns")  # fmt: skip
        groups: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if n == 0:
                continue
            if groups and rows + n > piece_rows:
                pieces.append(Piece(f, tuple(groups), rows))
                groups, rows = [], 0
            groups.append(g)
            rows += n
        if groups:
            pieces.append(Piece(f, tuple(groups), rows))
    return ParquetInput(tuple(pieces), schema, sum(p.rows for p in pieces))


def _difference(got: pa.Schema, first: pa.Schema, where: str) -> str:
    """How ``got`` differs from ``first`` (the schema of file ``where``), by column."""
    want = {f.name: f.type for f in first}
    have = {f.name: f.type for f in got}
    parts = [f"{n} is {have[n]} ({want[n]} in {where})" for n in want
             if n in have and have[n] != want[n]]  # fmt: skip
    parts += [f"{n} is missing ({want[n]} in {where})" for n in want if n not in have]
    parts += [f"{n} ({have[n]}) is not in {where}" for n in have if n not in want]
    if not parts:  # the same columns in another order, or other metadata
        parts = [f"the columns are {list(have)}, in {where} {list(want)}"]
    return "; ".join(parts)


def read_piece(piece: Piece, batch_rows: int) -> Iterator[pa.Table]:
    """The events of ``piece`` in tables of at most ``batch_rows`` rows, in file order."""
    fs, inner = storage.filesystem(piece.path)
    with fs.open_input_file(inner) as f:
        reader = pq.ParquetFile(f, pre_buffer=False)
        for batch in reader.iter_batches(batch_size=batch_rows, row_groups=list(piece.row_groups),
                                         use_threads=False):  # fmt: skip
            yield pa.Table.from_batches([batch])


__all__ = ["PIECE_ROWS", "ParquetInput", "Piece", "parquet_files", "plan", "read_piece"]
