"""Run an exported model (``glan_ray.models.checkpoint``) on dataset-like columns."""

from __future__ import annotations

import numpy as np
import torch

from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.data.features import SPECS
from glan_ray.models.app_check import require_same_app
from glan_ray.models.checkpoint import load_checkpoint
from glan_ray.models.exports import ExportRecord, make_record


class ModelRunner:
    """A loaded checkpoint: ``runner(columns)`` -> the model's outputs as tensors (no grad).

    ``app``: the app spec the model is used in (None: the PLPM simulator's, the app of every
    policy and of Serve today); an export trained on another is refused, naming the difference
    (``models.app_check``) and ``used_in`` (what the app is, in words)."""

    def __init__(
        self,
        path: str,
        expect: str | tuple[str, ...] | None = None,
        app: AppSpec | None = None,
        used_in: str = "the app it is used in",
    ) -> None:
        self.path = path
        self.model, self.normalizer, self.meta = load_checkpoint(path)
        self.kind: str = self.meta["model"]
        allowed = (expect,) if isinstance(expect, str) else expect
        if allowed and self.kind not in allowed:
            raise ValueError(f"{path} holds a '{self.kind}' model; expected {' or '.join(allowed)}")
        try:
            self.record: ExportRecord = make_record(self.kind, self.meta.get("extra"))
            """The export's typed record (``models.exports``), validated here once."""
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e
        self.app: AppSpec = self.record.app
        """The app the model was trained on: which columns its features read."""
        require_same_app(self.app, app or plpm_spec(), model=path, where=used_in)

    @torch.no_grad()
    def __call__(self, cols: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        f = self.normalizer(SPECS[self.kind].build(cols, self.app))
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in f.items()}
        if self.kind == "lrtg":
            return self.model(t["x_cat"], t["x_num"], t["seq"], t["seq_dt"])
        if self.kind == "hrm":
            return self.model(t["x_cat"], t["x_num"], t["page"])
        return self.model(t["x_cat"], t["x_num"])
