"""The advantage tokens' baseline (``DTConfig.advantage_tokens``), fitted on the trajectories.

One streaming pass with Ray Data over the user-days the DT learns from (deterministic days left
out, as the pre-learner does): for every session, the observation s_t and the remaining return
R̂_t = Σ_{t' ≥ t} r_t' (seconds, ``reward_column``); the sums Σ x xᵀ and Σ x y of x = [s_t, 1]
give the least-squares linear baseline b(s) = w·s + c (``models.dt.fit_rtg_baseline``). The DT
then sees (R̂_t − b(s_t)) / rtg_scale: a return relative to what this user, at this point of the
day, was expected to get, so tokens are comparable across users.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from glan_ray.data.read import in_order
from glan_ray.data.windows import deterministic_days, remaining_returns
from glan_ray.models.dt import fit_rtg_baseline
from glan_ray.schema import OBS_DIM

logger = logging.getLogger(__name__)


def measure_baseline(
    input_: Any, reward_column: str, skip_deterministic: bool, obs_dim: int = OBS_DIM
) -> list[float]:
    """The baseline's obs_dim + 1 coefficients (seconds) fitted on the trajectories ``input_``
    (``obs_dim``: their app's observation width)."""
    # in the files' order: float sums in another order are other coefficients (data.read.in_order)
    ds = in_order(ray.data.read_parquet(input_))
    ds = ds.select_columns(["obs", reward_column, "propensity"])
    xtx, xty, n, sq = np.zeros((obs_dim + 1,) * 2), np.zeros(obs_dim + 1), 0, 0.0
    for batch in ds.iter_batches(batch_size=4096, batch_format="pyarrow"):
        if skip_deterministic:
            batch = batch.filter(pa.array(~deterministic_days(batch)))
        if reward_column != "reward" and batch.column(reward_column).null_count:
            raise ValueError(f"trajectories: column '{reward_column}' has nulls; run label-hrm")
        obs, y = remaining_returns(batch, reward_column)
        x = np.concatenate([obs, np.ones((len(y), 1))], 1)
        xtx += x.T @ x
        xty += x.T @ y
        n, sq = n + len(y), sq + float((y**2).sum())
    if n == 0:
        raise ValueError("advantage_tokens: no sessions to fit the baseline on")
    coef = fit_rtg_baseline(xtx, xty)
    # R² from the sums: 1 − SSE / SST, SSE = Σy² − 2 c·Σxy + cᵀ Σxxᵀ c
    c = np.asarray(coef)
    sse = sq - 2 * c @ xty + c @ xtx @ c
    mean = xty[-1] / n
    r2 = 1 - sse / max(sq - n * mean**2, 1e-9)
    logger.info("advantage tokens: baseline fitted on %d sessions, R^2 %.3f, mean R %.0f s",
                n, r2, mean)  # fmt: skip
    return coef


__all__ = ["measure_baseline"]
