"""Model exports (checkpoints): weights + resolved configs + feature normalisation, loadable with
``torch.load(weights_only=True)`` (only tensors and plain Python values are stored)."""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

from glan_ray import storage
from glan_ray.apps import AppSpec
from glan_ray.data.features import Normalizer
from glan_ray.models.exports import ExportRecord, make_record
from glan_ray.models.registry import build_model

WEIGHTS, META = "model.pt", "config.json"


def save_checkpoint(
    path: str,
    name: str,
    model: nn.Module,
    model_cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    normalizer: Normalizer | None,
    extra: ExportRecord | dict[str, Any] | None = None,
    app: AppSpec | None = None,
) -> None:
    """Write ``model.pt`` (state dict + metadata) and a human-readable ``config.json``.

    ``normalizer`` is None for models whose inputs come pre-scaled (the RL policies' ``obs``).
    ``extra`` is the model's ``models.exports`` record (or its fields), validated here.
    ``app``: the app spec of the training data, recorded in it (``ExportRecord.app_spec``);
    None keeps the record's own (none: read back as the PLPM spec).
    ``path`` may be a URI (``s3://...``): the files are written locally, then uploaded.
    """
    if storage.is_uri(path):
        with storage.staged_dir(path) as local:
            save_checkpoint(local, name, model, model_cfg, train_cfg, normalizer, extra, app)
        return
    record = make_record(name, extra)
    if app is not None:
        record = record.with_app(app)
    os.makedirs(path, exist_ok=True)
    module: nn.Module = getattr(model, "module", model)  # unwrap DDP
    meta = {
        "model": name,
        "model_config": model_cfg,
        "train_config": train_cfg,
        "normalizer": (normalizer or Normalizer({}, {})).to_dict(),
        "extra": record.to_dict(),
    }
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    torch.save({"state_dict": state, "meta": json.dumps(meta)}, os.path.join(path, WEIGHTS))
    with open(os.path.join(path, META), "w") as f:
        json.dump(meta, f, indent=2, default=str)


def load_checkpoint(path: str, map_location: str = "cpu") -> tuple[nn.Module, Normalizer, dict]:
    """(model in eval mode, its Normalizer, metadata) from a checkpoint directory.

    ``path`` may be a URI: its ``model.pt`` is downloaded once per machine into the storage cache
    (``glan_ray.storage.local_copy``).
    """
    if storage.is_uri(path):
        if not storage.exists(storage.join(path, WEIGHTS)):
            raise FileNotFoundError(f"no checkpoint at {path} (missing {WEIGHTS})")
        path = storage.local_copy(path, only=(WEIGHTS,))
    weights = os.path.join(path, WEIGHTS)
    if not os.path.exists(weights):
        raise FileNotFoundError(f"no checkpoint at {path} (missing {WEIGHTS})")
    blob = torch.load(weights, map_location=map_location, weights_only=True)
    meta = json.loads(blob["meta"])
    model = build_model(meta["model"], meta["model_config"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, Normalizer.from_dict(meta["normalizer"]), meta
