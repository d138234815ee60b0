"""The Ray Train worker loop shared by the supervised models.

Each worker streams its shard of the training data through Ray Data (``iter_torch_batches`` with
a collate function that builds the model's features), steps the model's ``Task``, evaluates on
the validation set after every epoch and reports its metrics. A checkpoint goes with the report
(rank 0 writes it) when the validation metric (``VAL_METRIC``) improves, and at the last epoch:
the best one is what ``trainer.fit`` exports. With ``cache_batches`` the collated batches of the
first epoch (and the validation set's) are kept in the worker's memory and replayed, in the same
order, by the later epochs: the same steps without rebuilding the features each epoch.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
import time
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import ray.train
import ray.train.torch
import torch
from ray.data.collate_fn import ArrowBatchCollateFn
from torch import nn

from glan_ray.apps import AppSpec
from glan_ray.data.features import SPECS, Normalizer, am_features, as_columns
from glan_ray.early_stop import Plateau
from glan_ray.models.checkpoint import save_checkpoint
from glan_ray.models.registry import build_model
from glan_ray.train.config import train_config
from glan_ray.train.objectives import TASKS, VAL_METRIC

logger = logging.getLogger(__name__)

EPOCHS_FILE = "epochs.json"
"""Every epoch's report up to the checkpoint's, in each checkpoint (the last one has them all:
Ray Train keeps only the reports that come with a checkpoint)."""
LOG_EVERY = 50
"""Steps between progress log lines (per-step values also go to ``steps.csv``)."""


class FeatureCollate(ArrowBatchCollateFn):
    """Arrow batch → normalised feature tensors of one model."""

    def __init__(
        self,
        model: str,
        normalizer: Normalizer,
        theta: float | None = None,
        app: AppSpec | None = None,
    ):
        super().__init__()
        build = SPECS[model].build
        self.build = partial(am_features, theta=theta) if model == "am" and theta else build
        self.normalizer = normalizer
        self.app = app
        """The data's app spec: which columns the features read (None: PLPM)."""

    def __call__(self, batch: pa.Table) -> dict[str, torch.Tensor]:
        feats = self.normalizer(self.build(as_columns(batch), self.app))
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feats.items()}


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (biases, norms and embeddings' 1-D are exempt)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point; ``config`` is built by ``trainer.fit``."""
    name = config["model"]
    cfg = train_config(name, config["train"])
    if cfg.torch_threads:
        torch.set_num_threads(min(cfg.torch_threads, os.cpu_count() or 1))
    torch.manual_seed(cfg.seed)
    normalizer = Normalizer.from_dict(config["normalizer"])
    model = ray.train.torch.prepare_model(build_model(name, config["model_config"]))
    device = ray.train.torch.get_device()
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    task = TASKS[name](cfg, config["extra"])
    spec = config["extra"].get("app_spec")  # the data's app (trainer.prepare records it)
    app = AppSpec.from_dict(spec) if spec is not None else None
    collate = FeatureCollate(name, normalizer, getattr(cfg, "theta", None), app)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    rank = ray.train.get_context().get_world_rank()
    history: list[dict[str, float]] = []
    reports: list[dict[str, Any]] = []  # every epoch's report; the last checkpoint holds them
    step = 0
    cached: list[dict[str, torch.Tensor]] | None = None  # the first epoch's batches, if cached
    val: list[dict[str, torch.Tensor]] | None = None
    metric, mode = VAL_METRIC[name]
    best: float | None = None
    stopper = Plateau(metric, mode, cfg.patience, cfg.min_delta) if cfg.patience else None
    for epoch in range(cfg.epochs):
        model.train()
        t0, rows = time.perf_counter(), 0
        sums: dict[str, float] = {}  # the epoch's summed per-step logs
        if cached is not None:
            batches: Any = iter(cached)
        else:
            batches = train_shard.iter_torch_batches(batch_size=cfg.batch_size, collate_fn=collate)
            keep: list[dict[str, torch.Tensor]] = []
        for batch in batches:
            if cfg.cache_batches and cached is None:
                keep.append(batch)
            batch = _to(batch, device)
            loss, logs = task.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            logs = {"losses/total": loss.item(), **logs, **task.after_step(logs)}
            step += 1
            rows += len(next(iter(batch.values())))
            history.append({"step": step, "epoch": epoch, **logs})
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            if step % LOG_EVERY == 0 and rank == 0:
                logger.info(
                    "%s step %d: %s", name, step, ", ".join(f"{k}={v:.4g}" for k, v in logs.items())
                )
        if rows == 0:
            raise ValueError(
                f"{name}: the training split is empty; simulate more users or lower val_fraction"
            )
        if cfg.cache_batches and cached is None:
            cached = keep
        elapsed = time.perf_counter() - t0
        model.eval()
        if val is None or not cfg.cache_batches:
            val = [
                _to(b, device)
                for b in val_shard.iter_torch_batches(
                    batch_size=max(cfg.batch_size, 1024), collate_fn=collate
                )
            ]
        metrics = task.metrics(model, val) if val else {}
        n_steps = max(sum(1 for h in history if h["epoch"] == epoch), 1)
        report: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "rows_per_s": rows / max(elapsed, 1e-9),
            **{f"train/{k}": v / n_steps for k, v in sums.items()},
            **metrics,
        }
        value = metrics.get(metric)
        if value is None or not np.isfinite(value):
            improved = True  # no finite metric to compare: checkpoint anyway
        else:
            improved = best is None or (value < best if mode == "min" else value > best)
            if improved:
                best = value
        stop = False
        if stopper is not None:
            stopper.update(value)
            stop = _all_agree(stopper.stop, device) and epoch < cfg.epochs - 1
        last = stop or epoch == cfg.epochs - 1
        if last:  # where the run stopped and why (TrainResult.stop reads it)
            report["stopped_early"] = float(stop)
            report["stop_reason"] = (
                stopper.reason("epoch") if stop and stopper else f"budget: {cfg.epochs} epoch(s)"
            )
        if rank == 0 and (improved or last):
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(
                    tmp,
                    name,
                    model,
                    config["model_config"],
                    config["train"],
                    normalizer,
                    {**config["extra"], "epoch": epoch, "metrics": metrics},
                )
                _write_history(os.path.join(tmp, "steps.csv"), history)
                with open(os.path.join(tmp, EPOCHS_FILE), "w") as f:
                    json.dump([*reports, report], f, default=float)  # numpy scalars
                ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(report)
        reports.append(report)
        if stop:
            logger.info("%s: stopped after epoch %d of %d: %s", name, epoch + 1, cfg.epochs,
                        report["stop_reason"])  # fmt: skip
            break


def _all_agree(stop: bool, device: torch.device) -> bool:
    """Every worker's stop decision, all-reduced (any worker stopping stops all, so no worker
    waits in a collective the others left); the decision itself with one worker."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return stop
    flag = torch.tensor([float(stop)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _write_history(path: str, history: list[dict[str, float]]) -> None:
    keys = list(dict.fromkeys(k for h in history for k in h))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
