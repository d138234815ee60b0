"""Trajectories (one row per user-day) -> Decision-Transformer windows of K sessions with RTG."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from glan_ray.data.windows import cut_windows, deterministic_days
from glan_ray.models.critic_labels import QLabeller
from glan_ray.models.dt import rtg_baseline_s
from glan_ray.rllib.dt.torch.dt_torch_rl_module import dt_config
from glan_ray.rllib.offline import ArrowPreLearner

logger = logging.getLogger(__name__)


def bucket_by_length(
    windows: dict[str, np.ndarray], batch_size: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Reorder windows so each run of ``batch_size`` rows holds windows of similar length, the
    runs in random order. The learner trims the padding every row of a batch shares, so a batch
    of short days costs a fraction of a full K-session batch (most days are far shorter than K).
    """
    n = windows["mask"].sum(axis=1)  # (W,) sessions per window
    order = np.lexsort((rng.random(len(n)), n))  # by length, ties at random
    runs = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    # Whole runs in random order, a short last run (W not a multiple of batch_size) kept last:
    # anywhere else it would shift every later batch off the runs, mixing their lengths.
    full = len(order) // batch_size
    shuffled = [runs[i] for i in rng.permutation(full)] + runs[full:]
    perm = np.concatenate(shuffled) if runs else order
    return {k: v[perm] for k, v in windows.items()}


class TrajectoriesPreLearner(ArrowPreLearner):
    """obs (W, K, D), actions, rtg, timesteps, mask (W, K); W varies with the days' lengths."""

    dataset = "trajectories"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._rng = np.random.default_rng(self.config.seed)
        self._q: QLabeller | None = None

    def transform(self, table: pa.Table) -> dict[str, np.ndarray]:
        k = dt_config(self.config.model_config, self.observation_space).context_len
        if self.config.skip_deterministic_days:
            fixed = deterministic_days(table)
            if fixed.any():
                logger.info("left out %d of %d deterministic user-days", fixed.sum(), len(fixed))
                table = table.filter(pa.array(~fixed))
        w = cut_windows(
            table, k, reward_column=self.config.reward_column, rtg_scale=self.config.rtg_scale
        )
        if self.config.advantage_tokens:  # tokens relative to b(s_t) (``rllib.dt.baseline``)
            b = rtg_baseline_s(w["obs"], self.config.rtg_baseline) / self.config.rtg_scale
            w["rtg"] = (w["rtg"] - w["mask"] * b).astype(np.float32)  # (W, K)
        if self.config.q_labels:  # value-based relabelling: R̂_t := Q(s_t, a_t)
            if self._q is None:
                self._q = QLabeller(self.config.q_labels, app=self.config.app)
            q_s = self._q(w["obs"], w["actions"])  # (W, K) seconds
            w["rtg"] = (w["mask"] * q_s / self.config.rtg_scale).astype(np.float32)
        if self.config.act_critic:  # ACT: R̂_t := A(s_t, a_t) = Q(s_t, a_t) − V(s_t)
            if self._q is None:
                self._q = QLabeller(self.config.act_critic, option="act_critic",
                                    app=self.config.app)  # fmt: skip
            a_s = self._q.advantage(w["obs"], w["actions"])  # (W, K) seconds
            w["rtg"] = (w["mask"] * a_s / self.config.rtg_scale).astype(np.float32)
        if self.config.bucket_by_length:
            w = bucket_by_length(w, self.config.train_batch_size_per_learner, self._rng)
        return w
