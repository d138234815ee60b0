"""Transitions (one row per session) -> discrete-CQL train batches."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from ray.rllib.core.columns import Columns

from glan_ray.rllib.offline import ArrowPreLearner
from glan_ray.schema import OBS_DIM

HOUR, ENTRIES = "hour", "entries_today"
"""Extra batch keys the dynamic α(s) reads."""


def _matrix(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.list_flatten(col).to_numpy(), np.float32).reshape(-1, OBS_DIM)


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
