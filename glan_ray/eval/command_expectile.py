"""τ of a command head chosen on held-out validation users, never on the A/B's (issue 29).

A DT with a command head (``DTConfig.act_critic``: ACT, trained on the critic's advantages of the
logged pages; ``DTConfig.state_target``: on the observed returns) trains the same whatever τ is: τ
only sets ĉ(s), the τ-expectile of its tokens given the state, which the DT is asked to reach at
inference. So one trained DT is played with one head per τ of the grid
(``models.command_head.measure_command`` on the DT's own training data, and critic for ACT,
passed as the arm's ``command`` option: ``glan_act`` or ``glan_target``), on the validation users of
``eval.critic_lambda`` (ids from 70,000,000, simulator seed 9; the A/B's start at 50,000,000 with
seeds 0, 1), each against logging with common random numbers, with the critic alone (``klan_iit``)
beside. The best τ is the one of highest usage; unless it beats the critic alone at p < 0.05,
paired, the DT adds nothing to its critic on these users (``ExpectileTuning.dt_adds_nothing``).

Needs a connected Ray (``runtime.init_ray``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from glan_ray import storage
from glan_ray.eval.ab import run_shard
from glan_ray.eval.critic_lambda import LambdaPlay, versus
from glan_ray.sim.worlds import world_overrides

logger = logging.getLogger(__name__)

TAUS = (0.5, 0.7, 0.9, 0.97)
"""The default τ grid: the mean logged advantage in a state (0.5) to nearly its best (0.97)."""


@dataclass(frozen=True)
class ExpectileTuning:
    """The τ sweep's figures (``tune_command_expectile``)."""

    play: LambdaPlay
    """Where the users were played (``arm`` is the ACT arm)."""
    critic: str
    """ACT's critic (its export's ``act_critic``); empty for the per-state target."""
    rows: list[dict[str, Any]]
    """Per τ: ``expectile``, ``command`` (the head's coefficients), ``usage_time`` and ``dau``
    vs logging (``stats.compare`` dicts) and ``assign`` (page shares)."""
    critic_alone: dict[str, Any]
    """``klan_iit`` on the same critic, vs logging."""
    best_expectile: float
    """The τ of highest usage (ties: the larger)."""
    best_vs_critic: dict[str, Any]
    """Usage of the best τ vs the critic alone, paired."""
    dt_adds_nothing: bool
    """The best τ does not beat the critic alone at p < 0.05."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _units(arm: str, play: LambdaPlay, sim: dict[str, Any], opts: dict[str, Any]) -> dict:
    return run_shard(arm, play.models, sim, play.seed, play.first_user, play.users, play.days,
                     opts)["units"]  # fmt: skip


DT_OF_ARM = {"glan_act": "dt_act", "glan_target": "dt_target"}
"""Command arm -> the DT export it plays (``policy.registry.COMMAND_ARMS``)."""


def tune_command_expectile(
    play: LambdaPlay, data: str, taus: Sequence[float] = TAUS
) -> ExpectileTuning:
    """Play ``play.arm`` (a command arm, ``DT_OF_ARM``) with the command head of every τ of
    ``taus`` (each in (0, 1); at least two), fitted on ``data``'s trajectories as its DT's was
    (ACT: with the DT's own critic; the per-state target: on its reward column), on the
    validation users, logging and the critic alone beside."""
    import ray

    from glan_ray.models.checkpoint import load_checkpoint
    from glan_ray.models.command_head import measure_command

    grid = sorted({float(t) for t in taus})
    if len(grid) < 2 or not all(0.0 < t < 1.0 for t in grid):
        raise ValueError(f"expectiles: need at least two values in (0, 1); got {list(taus)}")
    if play.arm not in DT_OF_ARM:
        raise ValueError(f"arm {play.arm!r} has no command head; expected one of "
                         f"{', '.join(DT_OF_ARM)}")  # fmt: skip
    dt = storage.join(play.models, DT_OF_ARM[play.arm])
    _, _, meta = load_checkpoint(dt)
    train = meta.get("train_config", {})
    critic = train.get("act_critic")
    if not (critic or train.get("state_target")):
        raise ValueError(f"{dt} was trained with neither act_critic nor state_target: it has "
                         "no command head")  # fmt: skip
    if critic and os.path.realpath(critic) != os.path.realpath(storage.join(play.models, "cql")):
        logger.warning("%s's critic %s is not %s/cql, the critic klan_iit plays here",
                       dt, critic, play.models)  # fmt: skip
    skip = bool(train.get("skip_deterministic_days", True))
    traj = storage.join(data, "trajectories")
    column = train.get("reward_column", "reward_hrm")
    heads = {t: measure_command(traj, t, skip, critic, column) for t in grid}
    sim = world_overrides(play.world)
    task = ray.remote(num_cpus=1)(_units)
    refs = {t: task.remote(play.arm, play, sim, {"command": heads[t]}) for t in grid}
    base_ref = task.remote("logging", play, sim, {})
    critic_ref = task.remote("klan_iit", play, sim, {})
    base = ray.get(base_ref)
    got = {t: ray.get(ref) for t, ref in refs.items()}
    alone = ray.get(critic_ref)
    rows = [{"expectile": t, "command": heads[t], **versus(u, base)} for t, u in got.items()]
    best = max(rows, key=lambda r: (r["usage_time"]["rel_pct"], r["expectile"]))["expectile"]
    vs_critic = versus(got[best], alone)["usage_time"]
    return ExpectileTuning(
        play=play,
        critic=critic or "",
        rows=rows,
        critic_alone=versus(alone, base),
        best_expectile=best,
        best_vs_critic=vs_critic,
        dt_adds_nothing=not (vs_critic["rel_pct"] > 0 and vs_critic["p_value"] < 0.05),
    )


__all__ = ["DT_OF_ARM", "TAUS", "ExpectileTuning", "tune_command_expectile"]
