"""Discrete CQL loss with the dynamic conservative coefficient (KLAN §4.2, SPEC §3.4).

L = MSE(Q(s,a), r + γ(1 − done)·Q_tgt(s', argmax Q(s',·)))
  + mean_B[α(s)·(logsumexp Q(s,·) − Q(s,a))]
The loss parts come from ``glan_ray.models.cql`` (pure functions, unit-tested by hand) and are
logged separately: ``td_loss``, ``conservative_loss`` (the α-weighted term), ``alpha_mean``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner
from ray.rllib.core.learner.utils import update_target_network
from ray.rllib.core.rl_module.apis import TargetNetworkAPI
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME, NUM_TARGET_UPDATES

from glan_ray.models.cql import DynamicAlpha, conservative_term, double_dqn_target
from glan_ray.rllib.cql.prelearner import ENTRIES, HOUR
from glan_ray.rllib.cql.torch.discrete_cql_torch_rl_module import Q_NEXT, Q_NEXT_TARGET, Q
from glan_ray.rllib.learner import FusedFiniteCheck, MeanPerTrain, ReplayBatches

TD_LOSS, CONSERVATIVE_LOSS, ALPHA_MEAN, Q_MEAN = (
    "td_loss",
    "conservative_loss",
    "alpha_mean",
    "q_mean",
)


class DiscreteCQLTorchLearner(ReplayBatches, FusedFiniteCheck, MeanPerTrain, TorchLearner):
    def build(self) -> None:
        super().build()
        self.module.foreach_module(
            lambda mid, m: m.make_target_networks() if isinstance(m, TargetNetworkAPI) else None
        )
        self.alpha: DynamicAlpha = self.config.dynamic_alpha()
        self._last_target_update = 0

    def compute_loss_for_module(
        self, *, module_id: str, config: Any, batch: dict[str, Any], fwd_out: dict[str, Any]
    ) -> torch.Tensor:
        q = fwd_out[Q]  # (B, A)
        actions = batch[Columns.ACTIONS].long()  # (B,)
        target = double_dqn_target(
            fwd_out[Q_NEXT],
            fwd_out[Q_NEXT_TARGET],
            batch[Columns.REWARDS].float(),
            batch[Columns.TERMINATEDS],
            config.gamma,
        )  # (B,)
        q_data = q.gather(1, actions.unsqueeze(1)).squeeze(1)  # (B,)
        td = F.mse_loss(q_data, target)
        alpha = self.alpha(batch[HOUR], batch[ENTRIES])  # (B,)
        conservative = (alpha * conservative_term(q, actions)).mean()
        self.log_mean(
            module_id,
            {
                TD_LOSS: td,
                CONSERVATIVE_LOSS: conservative,
                ALPHA_MEAN: alpha.mean(),
                Q_MEAN: q_data.mean(),
            },
        )
        return td + conservative

    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        """Copies (τ = 1) or Polyak-averages the Q-network into its target every
        ``target_network_update_freq`` training rows."""
        super().after_gradient_based_update(timesteps=timesteps)
        now = timesteps.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0)
        if now - self._last_target_update < self.config.target_network_update_freq:
            return
        for mid, module in self.module._rl_modules.items():
            for main, target in module.unwrapped().get_target_network_pairs():
                update_target_network(main_net=main, target_net=target, tau=self.config.tau)
            self.metrics.log_value((mid, NUM_TARGET_UPDATES), 1, reduce="lifetime_sum")
        self._last_target_update = now
