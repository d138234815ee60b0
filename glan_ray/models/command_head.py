"""The DT's command head (``DTConfig.act_critic``, ``DTConfig.state_target``), fitted on the
trajectories before the DT trains.

Both variants ask the DT at inference for a per-state target ĉ(s), the τ-expectile
(``command_expectile``) given the state of what its tokens were in training, instead of GLAN's
R̂₁ = gain × forecast decremented by HRM:
- **ACT** (advantage-conditioned Transformer, Gao et al. 2024; ``act_critic``): the tokens are the
  critic's advantage of the logged page, A(s_t, a_t) = Q(s_t, a_t) − V(s_t)
  (``QLabeller.advantage``), an expectation over the rest of the day instead of one trajectory's
  luck, and ĉ(s) asks for a high advantage attainable from this state (τ = 0.9 in the paper);
- **per-state target** (Reinformer, Zhuang et al. 2024; ``state_target``): the tokens stay the
  observed remaining return R̂_t, and ĉ(s) asks for a high return attainable from this state.
Ours is linear in s, fitted by iteratively reweighted least squares (``models.dt.fit_expectile``)
on every session the DT learns from (deterministic days left out, as the pre-learner does), and
stored in the export (``DTRecord.command``), so the simulator and Serve need no critic.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.data.read import in_order
from glan_ray.data.windows import deterministic_days, obs_matrix, remaining_returns
from glan_ray.models.critic_labels import QLabeller
from glan_ray.models.dt import fit_expectile, rtg_baseline_s

logger = logging.getLogger(__name__)


def logged_advantages(table: pa.Table, critic: QLabeller) -> tuple[np.ndarray, np.ndarray]:
    """(obs (S, D), A(s, a) (S,) seconds) of every session of the user-days of ``table``."""
    obs = obs_matrix(table.column("obs").combine_chunks().flatten())  # (S, D)
    actions = np.asarray(
        table.column("actions").combine_chunks().flatten().to_numpy(zero_copy_only=False),
        np.int64,
    )
    if len(actions) != len(obs):
        raise ValueError(f"trajectories: {len(obs)} observations but {len(actions)} actions")
    return obs, critic.advantage(obs, actions)


def measure_command(
    input_: Any,
    tau: float,
    skip_deterministic: bool,
    critic_path: str | None = None,
    reward_column: str = "reward_hrm",
    app: AppSpec | None = None,
) -> list[float]:
    """The command head's obs_dim + 1 coefficients (seconds): the τ-expectile given the state
    of the critic's advantage of the logged page (``critic_path``: ACT) or, without a critic,
    of the remaining return in ``reward_column`` (the per-state target), over the sessions of
    the trajectories ``input_``, of app ``app`` (None: the PLPM app; a critic of another app
    is refused)."""
    app = app or plpm_spec()
    critic = QLabeller(critic_path, option="act_critic", app=app) if critic_path else None
    cols = ["obs", "actions", "propensity"] if critic else ["obs", reward_column, "propensity"]
    ds = in_order(ray.data.read_parquet(input_)).select_columns(cols)  # the same fit every run
    xs, ys = [], []
    for batch in ds.iter_batches(batch_size=4096, batch_format="pyarrow"):
        if skip_deterministic:
            batch = batch.filter(pa.array(~deterministic_days(batch)))
        if critic is not None:
            obs, y = logged_advantages(batch, critic)
        else:
            if reward_column != "reward" and batch.column(reward_column).null_count:
                raise ValueError(f"trajectories: column '{reward_column}' has nulls; "
                                 "run label-hrm")  # fmt: skip
            obs, y = remaining_returns(batch, reward_column)
        xs.append(obs)
        ys.append(y)
    x = np.concatenate(xs) if xs else np.zeros((0, app.obs_dim), np.float32)
    y = np.concatenate(ys) if ys else np.zeros(0)
    what = "advantage" if critic else "remaining return"
    if len(y) == 0:
        raise ValueError(f"command head: no sessions to fit the {what} on")
    coef = fit_expectile(x, y, tau)
    above = float(np.mean(y > rtg_baseline_s(x, coef)))
    logger.info("command head (expectile %.2f of the %s) fitted on %d sessions; mean %.0f s, "
                "sd %.0f s; %.1f%% of them above the command", tau, what, len(y), y.mean(),
                y.std(), 100 * above)  # fmt: skip
    return coef


__all__ = ["logged_advantages", "measure_command"]
