"""Driver side of supervised training: data preparation on Ray Data and the TorchTrainer."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import ray
from ray.train import CheckpointConfig, DataConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from glan_ray import storage
from glan_ray.apps import AppSpec
from glan_ray.data.features import SPECS, Normalizer, as_columns, feature_dims
from glan_ray.data.read import dataset_spec, ordered_ingest_options, read_dataset
from glan_ray.data.split import is_val_user
from glan_ray.models.registry import model_config
from glan_ray.runtime import require_gpus
from glan_ray.train.config import TrainConfig
from glan_ray.train.loop import EPOCHS_FILE, FeatureCollate, train_loop_per_worker
from glan_ray.train.objectives import VAL_METRIC

logger = logging.getLogger(__name__)

NORMALIZER_ROWS = 20_000
"""Training rows used to fit the feature normalisation (and L-RTG's a, b)."""


def _select(batch: pa.Table, fraction: float, val: bool, row_filter: str | None) -> pa.Table:
    mask = pa.array(is_val_user(batch.column("user_id"), fraction))
    if not val:
        mask = pc.invert(mask)
    if row_filter:
        mask = pc.and_(mask, batch.column(row_filter).combine_chunks())
    return batch.filter(mask)


@dataclass
class Prepared:
    train: ray.data.Dataset
    val: ray.data.Dataset
    normalizer: Normalizer
    dims: dict[str, int]
    extra: dict[str, Any]
    """The export record's fields known before training (``models.exports``): the rows sampled,
    L-RTG's a, b, the app spec of the data."""
    app: AppSpec
    """The app spec of the dataset (``data.read.dataset_spec``): it sizes the model's page axis
    and is recorded in the export."""


def prepare(name: str, cfg: TrainConfig) -> Prepared:
    """Read and validate the model's dataset, split users, fit normalisation (and a, b); the
    dataset's app spec sizes the model and is recorded in its export."""
    spec = SPECS[name]
    app = dataset_spec(cfg.data)
    # materialize: one read of the files; validation, the split and the sample read memory
    ds = read_dataset(cfg.data, spec.dataset, materialize=cfg.materialize, num_cpus=cfg.data_cpus)
    kw = {"batch_format": "pyarrow", "zero_copy_batch": True, "num_cpus": cfg.data_cpus}
    train = ds.map_batches(
        _select,
        fn_kwargs={"fraction": cfg.val_fraction, "val": False, "row_filter": spec.row_filter},
        **kw,
    )
    val = ds.map_batches(
        _select,
        fn_kwargs={"fraction": cfg.val_fraction, "val": True, "row_filter": spec.row_filter},
        **kw,
    )
    if cfg.max_rows:
        train = train.limit(cfg.max_rows)
        val = val.limit(max(cfg.max_rows // 5, 1))
    if cfg.materialize:  # before the sample, which then reads the materialised rows
        train, val = train.materialize(), val.materialize()
    sample = train.limit(NORMALIZER_ROWS).to_arrow_refs()
    table = pa.concat_tables(ray.get(sample))
    if table.num_rows == 0:
        raise ValueError(f"{name}: no training rows in {cfg.data}/{spec.dataset}")
    cols = as_columns(table)
    build = FeatureCollate(name, Normalizer({}, {}), getattr(cfg, "theta", None), app).build
    feats = build(cols, app)
    normalizer = Normalizer.fit([feats], spec.normalized)
    extra: dict[str, Any] = {"train_rows_sampled": table.num_rows, "app_spec": app.to_dict(),
                             "app_fingerprint": app.fingerprint()}  # fmt: skip
    if name == "lrtg":
        # a, b of L_rel = (ŷ_wt − a ln(1 + ŷ_se) − b)², fitted on the training labels.
        a, b = np.polyfit(np.log1p(feats["y_se"]), feats["y_wt"], 1)
        extra.update(rel_a=float(a), rel_b=float(b))
    return Prepared(train, val, normalizer, feature_dims(name, cols, app), extra, app)


@dataclass
class TrainResult:
    checkpoint: str
    """Exported checkpoint directory (``<out>/<model>``)."""
    metrics: dict[str, Any]
    """Last reported metrics."""
    ray_path: str
    """The Ray Train run directory (all epochs' checkpoints and results)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Every epoch's reported metrics, in order (the export is the best ``VAL_METRIC`` one's)."""
    stop: str = ""
    """Where and why training ended: ``budget: N epoch(s)``, or the early-stop criterion's
    reason (``TrainConfig.patience``)."""


def _export_to_uri(ckpt: ray.train.Checkpoint, target: str) -> None:
    """Replace ``target`` (a URI) with the files of checkpoint ``ckpt``, wherever it is stored."""
    fs, inner = storage.filesystem(target)
    storage.rmtree(target)
    pafs.copy_files(ckpt.path, inner, source_filesystem=ckpt.filesystem, destination_filesystem=fs)


def fit(
    name: str,
    cfg: TrainConfig,
    callbacks: list | None = None,
    run_name: str | None = None,
    export: bool = True,
    data: Prepared | None = None,
) -> TrainResult:
    """Train ``name`` with a TorchTrainer; export the best checkpoint to ``<cfg.out>/<name>``.

    ``data`` reuses a ``prepare`` result (a sweep prepares once for all its trials). With
    ``cfg.use_gpu`` on a Ray that can never give every worker a GPU, raises
    ``GPUUnavailableError`` before anything runs (``runtime.require_gpus``).
    """
    require_gpus("--use-gpu / use_gpu", cfg.num_workers * cfg.use_gpu, "one per Ray Train worker")
    data = data or prepare(name, cfg)
    mcfg = model_config(name, data.dims, cfg.model, data.app)
    metric, mode = VAL_METRIC[name]
    storage_path = cfg.storage_path or os.path.join(cfg.out, "ray_results")
    if not storage.is_uri(storage_path):
        storage_path = os.path.abspath(storage_path)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "model": name,
            "train": cfg.to_dict(),
            "model_config": mcfg,
            "normalizer": data.normalizer.to_dict(),
            "extra": data.extra,
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=cfg.use_gpu,
            resources_per_worker={"CPU": cfg.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=run_name or f"train_{name}",
            storage_path=storage_path,
            callbacks=callbacks,
            checkpoint_config=CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute=metric, checkpoint_score_order=mode
            ),
        ),
        datasets={"train": data.train, "val": data.val},
        # one worker reads the whole set: no split coordinator actor between it and the data
        # rows in the files' order, whatever the load (data.read.in_order): Train resets each
        # dataset's execution options to these
        dataset_config=DataConfig(
            datasets_to_split=["train"] if cfg.num_workers > 1 else [],
            execution_options=ordered_ingest_options(),
        ),
    )
    result = trainer.fit()
    best = result.get_best_checkpoint(metric, mode) if result.metrics else None
    ckpt = best or result.checkpoint
    if ckpt is None:
        raise RuntimeError(f"{name}: training produced no checkpoint ({result.error})")
    target = storage.join(cfg.out, name)
    if export and not storage.is_uri(cfg.out):
        if os.path.exists(target):
            shutil.rmtree(target)
        shutil.copytree(ckpt.path, target)
    elif export:
        _export_to_uri(ckpt, target)
    else:
        target = ckpt.path
    metrics = dict(result.metrics or {})
    stop = str(metrics.pop("stop_reason", ""))
    logger.info(
        "%s: checkpoint %s, %s; %s",
        name,
        target,
        {k: v for k, v in metrics.items() if k.startswith("val/")},
        stop,
    )
    return TrainResult(target, metrics, result.path, _epochs(result), stop)


def _epochs(result: Any) -> list[dict[str, Any]]:
    """Every epoch's report, from the last checkpoint's ``EPOCHS_FILE`` (Ray Train keeps only the
    reports that come with a checkpoint)."""
    if result.checkpoint is None:
        return []
    with result.checkpoint.as_directory() as d:
        path = os.path.join(d, EPOCHS_FILE)
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return json.load(f)
