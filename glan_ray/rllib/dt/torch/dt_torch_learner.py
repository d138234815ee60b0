"""Decision-Transformer loss: masked cross-entropy of the page at every session of the window."""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from glan_ray.models.dt import dt_loss, propensity_weights
from glan_ray.rllib.dt.torch.dt_torch_rl_module import LOGITS, MASK, PROPENSITY
from glan_ray.rllib.learner import FusedFiniteCheck, MeanPerTrain, ReplayBatches

ACTION_ACCURACY, SESSIONS_PER_WINDOW = "action_accuracy", "sessions_per_window"


class DTTorchLearner(ReplayBatches, FusedFiniteCheck, MeanPerTrain, TorchLearner):
    def compute_loss_for_module(
        self, *, module_id: str, config: Any, batch: dict[str, Any], fwd_out: dict[str, Any]
    ) -> torch.Tensor:
        logits = fwd_out[LOGITS]  # (B, n, A): the module drops all-padding positions
        n = logits.size(1)
        actions, mask = batch[Columns.ACTIONS][:, :n], batch[MASK][:, :n]  # (B, n), (B, n)
        weight = None
        if config.propensity_weighting:
            weight = propensity_weights(batch[PROPENSITY][:, :n], config.max_weight)  # (B, n)
        loss = dt_loss(logits, actions, mask, weight)
        with torch.no_grad():
            hit = (logits.argmax(-1) == actions).float() * mask
            self.log_mean(
                module_id,
                {
                    ACTION_ACCURACY: hit.sum() / mask.sum().clamp_min(1.0),
                    SESSIONS_PER_WINDOW: mask.sum(1).mean(),
                },
            )
        return loss
