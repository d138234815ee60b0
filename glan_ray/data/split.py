"""The held-out users: one deterministic user-level split shared by every learner (the
supervised models' validation set, and the RL learners' early-stopping set)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def is_val_user(user_id: pa.Array | pa.ChunkedArray | np.ndarray, fraction: float) -> np.ndarray:
    """(N,) bool: the user is held out. A multiplicative hash of user_id, bucketed in 1000, so
    the same users are held out in every dataset of a run and on every worker."""
    ids = user_id.to_numpy() if isinstance(user_id, (pa.Array, pa.ChunkedArray)) else user_id
    h = (np.asarray(ids, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(1000)
    return h < round(fraction * 1000)
