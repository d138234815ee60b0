"""Trajectories (one row per user-day) -> Decision-Transformer windows of K sessions with RTG."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from glan_ray.data.windows import cut_windows
from glan_ray.rllib.dt.torch.dt_torch_rl_module import dt_config
from glan_ray.rllib.offline import ArrowPreLearner


class TrajectoriesPreLearner(ArrowPreLearner):
    """obs (W, K, D), actions, rtg, timesteps, mask (W, K); W varies with the days' lengths."""

    dataset = "trajectories"

    def transform(self, table: pa.Table) -> dict[str, np.ndarray]:
        k = dt_config(self.config.model_config, self.observation_space).context_len
        return cut_windows(
            table, k, reward_column=self.config.reward_column, rtg_scale=self.config.rtg_scale
        )
