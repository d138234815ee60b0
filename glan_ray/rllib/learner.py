"""What our torch learners share: one fused finite check of the gradients per update.

RLlib's ``TorchLearner.apply_gradients`` checks every parameter's gradient for nan/inf twice per
update (``torch.isfinite(grad).all()`` per parameter, before and at the optimizer step): two
small kernels and a host sync per parameter tensor, about a fifth of a small model's update on
a CPU (``bench/training_limits.py``'s profile). ``FusedFiniteCheck`` keeps the same guard with
one check over all the gradients (their total norm is finite exactly when every gradient is),
and the configs set ``torch_skip_nan_gradients`` so RLlib's own checks are skipped. On a
non-finite gradient it does what RLlib's default does: warns and zeroes the nan/inf entries.
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


__all__ = ["FusedFiniteCheck"]
