"""RLModule wrapping ``glan_ray.models.cql.QNetwork`` plus its target copy (learner only)."""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import TargetNetworkAPI
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule

from glan_ray.models.cql import QNetConfig, QNetwork
from glan_ray.rllib.offline import CategoricalPages

Q, Q_NEXT, Q_NEXT_TARGET = "q", "q_next", "q_next_target"
"""Forward-output keys: Q(s,·) (with grad), Q(s',·) and Q_tgt(s',·) (both without)."""


class DiscreteCQLTorchRLModule(CategoricalPages, TorchRLModule, TargetNetworkAPI):
    """Greedy page = argmax_a Q(s, a); action-distribution inputs are Q/T (KLAN's interest score).

    ``model_config``: ``hidden`` (widths of the Q-network's hidden layers) and ``temperature``
    (T of the interest score softmax(Q/T)).
    """

    def setup(self) -> None:
        cfg = self.model_config or {}
        self.qnet = QNetwork(
            QNetConfig(
                obs_dim=int(self.observation_space.shape[0]),
                n_actions=int(self.action_space.n),
                hidden=tuple(cfg.get("hidden", QNetConfig.hidden)),
            )
        )
        self.temperature = float(cfg.get("temperature", 1.0))

    def make_target_networks(self) -> None:
        self._target_qnet = make_target_network(self.qnet)

    def load_network(self, state: dict[str, torch.Tensor]) -> None:
        """Warm start (``RLTrainConfig.init_from``): the Q-network and its target from an
        export's weights."""
        self.qnet.load_state_dict(state)
        if hasattr(self, "_target_qnet"):
            self._target_qnet.load_state_dict(state)

    def get_target_network_pairs(self) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
        return [(self.qnet, self._target_qnet)]

    def get_non_inference_attributes(self) -> list[str]:
        return ["_target_qnet"]

    def forward_target(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {Q_NEXT_TARGET: self._target_qnet(batch[Columns.NEXT_OBS])}

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        q = self.qnet(batch[Columns.OBS])  # (B, A)
        return {
            Q: q,
            Columns.ACTIONS: q.argmax(dim=-1),
            Columns.ACTION_DIST_INPUTS: q / self.temperature,
        }

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        out = {Q: self.qnet(batch[Columns.OBS])}  # (B, A)
        with torch.no_grad():
            out[Q_NEXT] = self.qnet(batch[Columns.NEXT_OBS])  # double DQN: argmax by online net
            out.update(self.forward_target(batch))
        return out
