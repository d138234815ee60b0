"""Transitions (one row per session) -> discrete-CQL train batches; ``transitions_hist`` rows ->
batches whose states are obs ⊕ the history features (the ``klan_iit_hist`` arm)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from ray.rllib.core.columns import Columns

from glan_ray.rllib.offline import ArrowPreLearner

HOUR, ENTRIES = "hour", "entries_today"
"""Extra batch keys the dynamic α(s) reads."""


def _matrix(col: pa.ChunkedArray) -> np.ndarray:
    """A fixed-size list column as a (B, width) float32 matrix (width: the list size, e.g. the
    app's obs_dim)."""
    width = col.type.list_size
    return np.asarray(pc.list_flatten(col).to_numpy(), np.float32).reshape(-1, width)


class TransitionsPreLearner(ArrowPreLearner):
    """obs, actions, rewards (× ``reward_scale``), new_obs, terminateds, hour, entries_today."""

    dataset = "transitions"

    def transform(self, table: pa.Table) -> dict[str, np.ndarray]:
        col = table.column
        return {
            Columns.OBS: _matrix(col("obs")),
            Columns.ACTIONS: col("action").to_numpy().astype(np.int64),
            Columns.REWARDS: col("reward").to_numpy().astype(np.float32)
            * np.float32(self.config.reward_scale),
            Columns.NEXT_OBS: _matrix(col("next_obs")),
            Columns.TERMINATEDS: col("done").to_numpy(zero_copy_only=False).astype(np.float32),
            HOUR: col("hour").to_numpy().astype(np.float32),
            ENTRIES: col("entries_today").to_numpy().astype(np.int64),
        }


class TransitionsHistPreLearner(TransitionsPreLearner):
    """As ``TransitionsPreLearner``, from ``transitions_hist``: obs ⊕ hist and next_obs ⊕
    next_hist, (B, obs_dim + HIST_DIM)."""

    dataset = "transitions_hist"

    def transform(self, table: pa.Table) -> dict[str, np.ndarray]:
        out = super().transform(table)
        hist, next_hist = (_matrix(table.column(c)) for c in ("hist", "next_hist"))  # (B, H)
        out[Columns.OBS] = np.concatenate([out[Columns.OBS], hist], axis=1)  # (B, D + H)
        out[Columns.NEXT_OBS] = np.concatenate([out[Columns.NEXT_OBS], next_hist], axis=1)
        return out
