"""What our torch learners share: one fused finite check of the gradients per update, and
metrics logged once per ``train()`` call.

RLlib's ``TorchLearner.apply_gradients`` checks every parameter's gradient for nan/inf twice per
update (``torch.isfinite(grad).all()`` per parameter, before and at the optimizer step): two
small kernels and a host sync per parameter tensor, about a fifth of a small model's update on
a CPU (``bench/training_limits.py``'s profile). ``FusedFiniteCheck`` keeps the same guard with
one check over all the gradients (their total norm is finite exactly when every gradient is),
and the configs set ``torch_skip_nan_gradients`` so RLlib's own checks are skipped. On a
non-finite gradient it does what RLlib's default does: warns and zeroes the nan/inf entries.

``MeanPerTrain`` sums a learner's per-update metrics as tensors (no host sync) and hands their
mean to RLlib's metrics logger once per ``train()`` call (``dataset_num_iters_per_learner``
updates): the same figure as logging every update with a window of that many, without the
logger's per-value bookkeeping on every update (about 7% of a CQL update on a CPU).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)


class FusedFiniteCheck:
    """Mixin for a ``TorchLearner``: one nan/inf check of all the gradients per update."""

    def apply_gradients(self, gradients_dict: dict[Any, torch.Tensor]) -> None:
        grads = [g for g in gradients_dict.values() if g is not None]
        if grads and not bool(torch.isfinite(torch.nn.utils.get_total_norm(grads))):
            logger.warning("gradients contain nan/inf values: setting them to zero")
            gradients_dict = {
                k: None if g is None else torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
                for k, g in gradients_dict.items()
            }
        super().apply_gradients(gradients_dict)  # type: ignore[misc]


class MeanPerTrain:
    """Mixin for a learner: ``log_mean(module_id, values)`` on every update; the means over each
    ``train()`` call's updates reach ``self.metrics`` at its last update."""

    def log_mean(self, module_id: str, values: dict[str, torch.Tensor]) -> None:
        sums: dict[str, torch.Tensor] = self.__dict__.setdefault("_mean_sums", {})
        for k, v in values.items():
            v = v.detach()
            sums[k] = sums[k] + v if k in sums else v.clone()
        n = self.__dict__.get("_mean_n", 0) + 1
        per_train = int(self.config.dataset_num_iters_per_learner or 1)  # type: ignore[attr-defined]
        if n >= per_train:
            self.metrics.log_dict(  # type: ignore[attr-defined]
                {k: v / n for k, v in sums.items()}, key=module_id, window=1
            )
            sums.clear()
            n = 0
        self._mean_n = n


__all__ = ["FusedFiniteCheck", "MeanPerTrain"]
