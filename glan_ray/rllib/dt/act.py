"""ACT's command head (``DTConfig.act_critic``), fitted on the trajectories before the DT trains.

Advantage-conditioned Transformer (Gao et al. 2024): the DT's token at session t is the critic's
advantage of the logged page, A(s_t, a_t) = Q(s_t, a_t) − V(s_t) (``QLabeller.advantage``), an
expectation over the rest of the day instead of one trajectory's luck. At inference nobody knows
which advantage to ask for, so a command head ĉ(s), the τ-expectile of A given the state, asks for
a high advantage attainable from this state (τ = 0.9 in the paper). Ours is linear in s, fitted
here by iteratively reweighted least squares (``models.dt.fit_expectile``) on every session the DT
learns from (deterministic days left out, as the pre-learner does), and stored in the export
(``DTRecord.command``), so the simulator and Serve need no critic.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from glan_ray.data.windows import deterministic_days
from glan_ray.models.dt import fit_expectile, rtg_baseline_s
from glan_ray.rllib.dt.q_labels import QLabeller
from glan_ray.schema import OBS_DIM

logger = logging.getLogger(__name__)


def logged_advantages(table: pa.Table, critic: QLabeller) -> tuple[np.ndarray, np.ndarray]:
    """(obs (S, D), A(s, a) (S,) seconds) of every session of the user-days of ``table``."""
    obs = np.asarray(
        table.column("obs").combine_chunks().flatten().flatten().to_numpy(zero_copy_only=False),
        np.float32,
    ).reshape(-1, OBS_DIM)
    actions = np.asarray(
        table.column("actions").combine_chunks().flatten().to_numpy(zero_copy_only=False),
        np.int64,
    )
    if len(actions) != len(obs):
        raise ValueError(f"trajectories: {len(obs)} observations but {len(actions)} actions")
    return obs, critic.advantage(obs, actions)


def measure_command(
    input_: Any, critic_path: str, tau: float, skip_deterministic: bool
) -> list[float]:
    """The command head's OBS_DIM + 1 coefficients (seconds): the τ-expectile of the critic's
    advantage given the state, over the sessions of the trajectories ``input_``."""
    critic = QLabeller(critic_path, option="act_critic")
    ds = ray.data.read_parquet(input_).select_columns(["obs", "actions", "propensity"])
    xs, ys = [], []
    for batch in ds.iter_batches(batch_size=4096, batch_format="pyarrow"):
        if skip_deterministic:
            batch = batch.filter(pa.array(~deterministic_days(batch)))
        obs, adv = logged_advantages(batch, critic)
        xs.append(obs)
        ys.append(adv)
    x = np.concatenate(xs) if xs else np.zeros((0, OBS_DIM), np.float32)
    y = np.concatenate(ys) if ys else np.zeros(0)
    if len(y) == 0:
        raise ValueError("act_critic: no sessions to fit the command head on")
    coef = fit_expectile(x, y, tau)
    above = float(np.mean(y > rtg_baseline_s(x, coef)))
    logger.info("ACT: command head (expectile %.2f) fitted on %d sessions; advantage mean %.0f s, "
                "sd %.0f s; %.1f%% of logged advantages above the command", tau, len(y),
                y.mean(), y.std(), 100 * above)  # fmt: skip
    return coef


__all__ = ["logged_advantages", "measure_command"]
