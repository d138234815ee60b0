"""RLModule wrapping ``glan_ray.models.dt.DecisionTransformer``.

Batches are DT windows (``glan_ray.data.windows.WINDOW_KEYS``): obs (B, K, D), actions, rtg,
timesteps, mask, propensity (B, K). Inference returns the page for the last valid session of each
window; step-by-step serving uses the bare model's KV cache instead (``DecisionTransformer.step``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.torch.torch_rl_module import TorchRLModule

from glan_ray.models.dt import DecisionTransformer, DTConfig
from glan_ray.rllib.offline import CategoricalPages

LOGITS, RTG, TIMESTEPS, MASK, PROPENSITY = "logits", "rtg", "timesteps", "mask", "propensity"


def dt_config(
    model_config: dict[str, Any] | None,
    obs_space: gym.Space | None,
    action_space: gym.Space | None = None,
) -> DTConfig:
    """DTConfig from an RLlib ``model_config`` dict (unknown keys raise, naming them); the
    observation width and the number of pages default to the spaces' (the app's)."""
    mc = dict(model_config or {})
    fields = {f.name for f in dataclasses.fields(DTConfig)}
    # RLlib adds its own auto-included keys to every model_config; keep only ours.
    ours = {k: v for k, v in mc.items() if k in fields}
    if obs_space is not None:
        assert obs_space.shape is not None, "the observation space is a flat Box"
        ours.setdefault("obs_dim", int(obs_space.shape[0]))
    if isinstance(action_space, gym.spaces.Discrete):
        ours.setdefault("n_actions", int(action_space.n))
    return DTConfig(**ours)


class DTTorchRLModule(CategoricalPages, TorchRLModule):
    def setup(self) -> None:
        cfg = dt_config(self.model_config, self.observation_space, self.action_space)
        if cfg.n_actions != int(self.action_space.n):
            raise ValueError(f"model_config n_actions {cfg.n_actions} != action space")
        self.dt = DecisionTransformer(cfg)

    def load_network(self, state: dict[str, torch.Tensor]) -> None:
        """Warm start (``RLTrainConfig.init_from``): the DT from an export's weights."""
        self.dt.load_state_dict(state)

    def _logits(self, batch: dict[str, Any]) -> torch.Tensor:
        # Windows are right-padded and attention is causal, so dropping the positions that are
        # padding in every row of the batch changes no logit; most days are much shorter than K.
        n = max(1, int(batch[MASK].sum(dim=1).max().item()))
        rtg, obs = batch[RTG][:, :n], batch[Columns.OBS][:, :n]
        return self.dt(rtg, obs, batch[Columns.ACTIONS][:, :n], batch[TIMESTEPS][:, :n])

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        logits = self._logits(batch)  # (B, K, A)
        last = batch[MASK].sum(dim=1).long().clamp_min(1) - 1  # (B,) last valid session
        logits_t = logits[torch.arange(logits.size(0), device=logits.device), last]  # (B, A)
        return {Columns.ACTION_DIST_INPUTS: logits_t, Columns.ACTIONS: logits_t.argmax(-1)}

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {LOGITS: self._logits(batch)}  # (B, n ≤ K, A)
