"""Read the datasets as ``ray.data.Dataset``s, validated against schema.py.

``read_dataset(run_dir, "sessions")`` checks the Parquet schema (missing columns, wrong types)
from the file metadata, then — unless ``validate=False`` — makes one pass over the data counting
nulls, NaNs and out-of-range categories per column, and raises a ``DatasetValidationError`` that
names each bad column with its row count. Nothing is dropped: bad input is rejected whole.
Columns whose types are compatible but not canonical (e.g. int64 actions) are cast on read.

``dataset_spec(run_dir)`` is the app spec the datasets were built with (``manifest.json``'s
``spec``): a model trained on them records it, and refuses data of another spec
(``models.app_check``).
"""

from __future__ import annotations

import copy
import logging
import os
from collections import defaultdict
from typing import Any

import pyarrow as pa
import ray

from glan_ray import schema, storage
from glan_ray.apps import AppSpec, SpecError, plpm_spec
from glan_ray.schema import DatasetValidationError, Problem

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
"""The run directory's record of how its datasets were made (``data.generate``, the decision-log
conversion, ``glan-ray ingest``): with ``spec`` (``AppSpec.to_dict()``) and ``spec_fingerprint``."""


def manifest_path(path: str) -> str | None:
    """The ``manifest.json`` of the datasets at ``path`` (a run directory, or one dataset's
    directory inside it); None when there is none."""
    base = path.rstrip("/") if "://" in path else os.path.normpath(path)
    dirs = [base]
    name = base.rsplit("/", 1)[-1] if "://" in base else os.path.basename(base)
    if name in schema.SCHEMAS or name == "transitions_hist":  # a dataset's own directory
        dirs.append(base.rsplit("/", 1)[0] if "://" in base else os.path.dirname(base))
    for d in dirs:
        m = storage.join(d, MANIFEST)
        if storage.exists(m):
            return m
    return None


def manifest_spec(manifest: dict, where: str) -> AppSpec | None:
    """The spec a manifest records (None: written before specs were recorded); a spec that is
    not valid or whose stored fingerprint is not its own is refused, naming ``where``."""
    if manifest.get("spec") is None:
        return None
    try:
        spec = AppSpec.from_dict(manifest["spec"])
    except SpecError as e:
        raise DatasetValidationError(f"{where}: field 'spec': {e}") from None
    stored = manifest.get("spec_fingerprint")
    if stored is not None and stored != spec.fingerprint():
        raise DatasetValidationError(
            f"{where}: field 'spec_fingerprint' {stored!r} is not its spec's fingerprint "
            f"{spec.fingerprint()!r} (the manifest was edited)"
        )
    return spec


_SAID: set[str] = set()
"""Paths whose missing spec was logged (once each: a run's datasets are read many times)."""


def dataset_spec(path: str) -> AppSpec:
    """The app spec the datasets at ``path`` (a run directory or a dataset's directory; local or
    a URI) were built with. Datasets written before specs were recorded (no manifest, or one
    without ``spec``) are the PLPM simulator's, which is logged."""
    m = manifest_path(path)
    spec = manifest_spec(storage.read_json(m), m) if m else None
    if spec is None:
        if path not in _SAID:
            _SAID.add(path)
            logger.info("%s: %s records no app spec (written before specs were recorded): read "
                        "as the PLPM simulator's app", path, m or "no manifest.json")  # fmt: skip
        return plpm_spec()
    return spec


def sized_for(spec: AppSpec) -> AppSpec | None:
    """The ``spec`` argument of ``schema``'s functions for datasets of app ``spec``: None for the
    PLPM app (``schema.SCHEMAS`` itself, the derived datasets included), else ``spec``."""
    return None if spec.fingerprint() == plpm_spec().fingerprint() else spec


def spec_manifest(spec: AppSpec) -> dict[str, object]:
    """The manifest fields that record ``spec`` (what ``dataset_spec`` reads back)."""
    return {"spec": spec.to_dict(), "spec_fingerprint": spec.fingerprint()}


def dataset_path(path: str, name: str) -> str:
    """``path`` itself if it is the dataset's directory, else ``path/<name>`` (a run directory)."""
    schema.schema_for(name)
    if "://" in path:
        return path.rstrip("/") + "/" + name if not path.rstrip("/").endswith(name) else path
    candidate = os.path.join(path, name)
    if os.path.isdir(candidate):
        return candidate
    if os.path.exists(path) and os.path.basename(os.path.normpath(path)) == name:
        return path
    raise FileNotFoundError(
        f"no '{name}' dataset at {path} (looked for {candidate}); "
        "generate one with `glan-ray simulate --out DIR`"
    )


def in_order(ds: ray.data.Dataset) -> ray.data.Dataset:
    """``ds`` itself, with Ray Data's ``preserve_order`` on: every pass over it, and over the
    datasets derived from it (a transformation shares its parent's ``DataContext``), gives the
    rows in the files' order.

    Ray Data's streaming execution hands blocks on in the order its tasks finish, which varies
    with the machine's load: two runs of the same seed then trained on the rows in another order
    (and fitted the normaliser on another sample) and gave other weights. The process-wide
    ``DataContext`` is not a fix: the pipeline's stages run in pooled Ray workers, each with its
    own (``data.generate`` sets it only in the process that simulated)."""
    ds.context.execution_options.preserve_order = True
    return ds


def ordered_ingest_options() -> ray.data.ExecutionOptions:
    """This process's Ray Data execution options with ``preserve_order`` on, for Ray Train's
    ``DataConfig(execution_options=...)``: Ray Train replaces each dataset's execution options
    with those (by default the process's ``DataContext``'s), so ``in_order`` alone would not
    reach the workers' reads."""
    opts = copy.deepcopy(ray.data.DataContext.get_current().execution_options)
    opts.preserve_order = True
    return opts


def _count_problems(batch: pa.Table, name: str, spec: AppSpec | None) -> pa.Table:
    problems = schema.value_problems(batch, name, spec)
    return pa.table(
        {
            "column": pa.array([p.column for p in problems], pa.string()),
            "issue": pa.array([p.issue for p in problems], pa.string()),
            "rows": pa.array([p.rows for p in problems], pa.int64()),
        }
    )


def value_problems(
    ds: ray.data.Dataset, name: str, spec: AppSpec | None = None, **map_kwargs: Any
) -> list[Problem]:
    """Value problems of a whole Ray dataset, row counts summed over all blocks (``spec``: the
    app it is sized for, ``sized_for``; None: the simulator's)."""
    found = ds.map_batches(
        _count_problems,
        fn_kwargs={"name": name, "spec": spec},
        batch_format="pyarrow",
        batch_size=None,
        **map_kwargs,
    ).take_all()
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for row in found:
        totals[(row["column"], row["issue"])] += row["rows"]
    return [Problem(c, i, n) for (c, i), n in totals.items()]


def _to_canonical(batch: pa.Table, name: str, spec: AppSpec | None) -> pa.Table:
    return schema.conform(batch, name, spec=spec)


def read_dataset(
    path: str,
    name: str,
    *,
    validate: bool = True,
    materialize: bool = False,
    spec: AppSpec | None = None,
    **read_kwargs: Any,
) -> ray.data.Dataset:
    """Read dataset ``name`` from a run directory (or its own directory / URI) as Ray Data,
    validated against the schema of its app (``spec``; None: ``dataset_spec(path)``, the app
    its manifest records: an ingested app's pages and observation width).

    Raises ``DatasetValidationError`` for a schema mismatch, and — with ``validate`` — for nulls,
    NaN/inf values or out-of-range actions/labels, naming each column and its row count.
    ``materialize``: read the files once into the object store, so the validation and every
    later pass (a split, a sample, an epoch) reads memory, not the files again.
    ``read_kwargs`` go to ``ray.data.read_parquet``. Passes keep the files' row order
    (``in_order``).
    """
    where = dataset_path(path, name)
    sized = sized_for(spec or dataset_spec(path))
    ds = in_order(ray.data.read_parquet(where, **read_kwargs))  # the same rows in the same order
    if materialize:
        ds = ds.materialize()
    # Map stages take the CPU request given for reading (e.g. fractional under Ray Train).
    cpus = read_kwargs.get("num_cpus")
    map_kwargs = {} if cpus is None else {"num_cpus": cpus}
    got = ds.schema()
    if got is None:
        raise DatasetValidationError(f"dataset '{name}' at {where} has no rows or no schema")
    arrow = got.base_schema if hasattr(got, "base_schema") else got
    schema.raise_if(schema.schema_problems(arrow, name, sized), name, where)
    if validate:
        schema.raise_if(value_problems(ds, name, sized, **map_kwargs), name, where)
    if any(arrow.field(f.name).type != f.type for f in schema.schema_for(name, sized)):
        ds = ds.map_batches(_to_canonical, fn_kwargs={"name": name, "spec": sized},
                            batch_format="pyarrow", **map_kwargs)  # fmt: skip
    return ds
