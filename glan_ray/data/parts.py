"""The simulator's dataset layout, part by part: ``<data>/<name>/part-WWWWW-SSSSS/<file>.parquet``.

Every dataset of one simulated run has the same parts, each holding the same user-days (a
decision log's datasets have one part, ``part-00000``), so a computation that needs two datasets
of the same user-days (HRM labels into the trajectories, history features into the transitions)
runs one task per part pair.
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from glan_ray import storage
from glan_ray.schema import DatasetValidationError


def dataset_parts(data: str, name: str) -> dict[str, str]:
    """Part name -> its one Parquet file, for dataset ``name`` under run directory ``data``."""
    root = storage.join(data, name)
    if not storage.isdir(root):
        raise FileNotFoundError(f"no '{name}' dataset under {data}")
    out = {}
    for part in storage.listdir(root):
        files = [f for f in storage.listdir(storage.join(root, part)) if f.endswith(".parquet")]
        if len(files) != 1:
            raise DatasetValidationError(f"{root}/{part}: expected one Parquet file, got {files}")
        out[part] = storage.join(root, part, files[0])
    return out


def matching_parts(data: str, a: str, b: str) -> list[tuple[str, str, str]]:
    """(part, file of ``a``, file of ``b``) for every part; the two datasets must have the same
    parts (``DatasetValidationError`` naming the first that differ)."""
    pa_, pb = dataset_parts(data, a), dataset_parts(data, b)
    if set(pa_) != set(pb):
        diff = sorted(set(pa_) ^ set(pb))
        raise DatasetValidationError(f"{a} and {b} parts differ under {data}: {diff[:5]}")
    return [(p, pa_[p], pb[p]) for p in sorted(pa_)]


def read_part(path: str, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file (local or URI), all columns or ``columns``."""
    fs, inner = storage.filesystem(path)
    return pq.read_table(inner, filesystem=fs, columns=columns)


def write_part(table: pa.Table, path: str) -> None:
    """Write ``table`` as Parquet file ``path`` atomically (``storage.write_bytes``)."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(path, buf.getvalue())


__all__ = ["dataset_parts", "matching_parts", "read_part", "write_part"]
