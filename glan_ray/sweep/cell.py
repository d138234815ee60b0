"""One cell of ``glan-ray sweep-worlds``: a world, its policies trained, its A/B played.

Each cell of the grid is a world (``sim.worlds.WorldSpec``): the ``premise`` world's mechanisms at
a ``strength`` (0: the default world, 1: the premise world) × a user ``stochasticity`` (the
multiplier of the page durations' log-normal noise: the user's luck in a day's return). Each
cell is one Tune trial that, in its own directory ``<out>/cells/<cell>``:
1. runs the pipeline's stages up to the trained policies at the preset's budget
   (``CELL_STAGES``: simulate, the premise diagnostics, L-RTG, HRM, ISP, AM, HRM labels, CQL, the
   DT, ACT's DT and the per-state target's);
2. chooses critic-guided GLAN's λ on validation users of the same world
   (``eval.critic_lambda``: users and a seed none of the A/B's);
3. plays the A/B of ``CELL_ARMS`` at the preset's size (the same users in every arm);
4. writes ``cell.json`` (``CellResult``): the premise measures, every arm vs logging, each GLAN
   variant vs KLAN (paired, 95% CI) and the cell's winner.

A trial reserves no CPU (its pipeline's trainers, learners and A/B tasks reserve their own) and
``cell_memory_gb`` of Ray's logical memory; ``concurrent`` cells run at once, so a cluster runs
the grid in parallel with no change. A cell whose ``cell.json`` holds every GLAN variant is not
run again (one done before a variant joined trains what it lacks and plays its A/B again); a
killed cell resumes at its first unfinished pipeline stage (``sweep.run`` runs the grid;
``sweep.world_map`` turns the cells into the phase diagram, the JSON and the Markdown report).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from glan_ray import storage
from glan_ray.eval.critic_lambda import LAMBDAS

logger = logging.getLogger(__name__)

CELL_STAGES = (
    "simulate", "diagnose", "train_lrtg", "train_hrm", "train_isp", "train_am", "label_hrm",
    "train_cql", "train_dt", "train_dt_act", "train_dt_target",
)  # fmt: skip
"""The pipeline stages a cell runs (``pipeline.STAGES`` without the ablations' trainings, and
the command heads' DTs)."""
GLAN_VARIANTS = ("glan", "glan_cg", "glan_act", "glan_target")
"""The DT-family arms of a cell: GLAN as published, critic-guided (λ tuned in the cell),
advantage-conditioned (ACT, with the cell's CQL as its critic) and the per-state target."""
KLAN_FAMILY = ("klan", "klan_iit")
"""KLAN as published and its IIT CQL alone."""
CELL_ARMS = (
    "logging", *KLAN_FAMILY, *GLAN_VARIANTS, "last_exit",
    "always_featured", "always_explore", "always_following", "oracle",
)  # fmt: skip
"""The arms of each cell's A/B (the constant pages and the oracle for the personalization
uplift; ``last_exit``, the one-line heuristic, as the floor a learned arm should clear)."""
PREMISE_MEASURES = ("history_gain", "gap_closed", "delayed_share", "return_consistency")
"""The premise diagnostics read per cell (``diagnose``): how much the day's sequence predicts
beyond the observation (gain in the next session's outcome loss; share of the
observation-to-latent gap it closes), the share of a page's effect arriving ≥ 3 sessions later,
and the page's paired IPW gain in explaining the return beyond the state."""


@dataclass(frozen=True)
class WorldSweepConfig:
    """The grid, its budget and where it goes."""

    out: str = "runs/sweep"
    """Directory of the cells, the Tune experiment and the map (local or a shared mount)."""
    world: str = "premise"
    """The named world whose mechanisms ``strengths`` scale (``sim.worlds.WORLDS``)."""
    strengths: tuple[float, ...] = (0.0, 0.5, 1.0)
    """Premise strengths (0: the default world's mechanisms, 1: ``world``'s)."""
    stochasticities: tuple[float, ...] = (0.5, 1.0, 2.0)
    """Multipliers of the page durations' noise (1: the world's own)."""
    preset: str = "demo"
    """The pipeline preset: training budget and A/B size of every cell."""
    seed: int = 0
    """Simulator seed of each cell's training population."""
    lambdas: tuple[float, ...] = LAMBDAS
    """λ grid of critic-guided GLAN, tuned per cell on validation users."""
    lambda_users: int | None = None
    """Validation users of the λ tuning; None: 1,000 (100 at the tiny preset)."""
    concurrent: int = 1
    """Cells at once (Tune's ``max_concurrent_trials``); on one 2-core machine 1."""
    cell_memory_gb: float = 3.0
    """Ray logical memory each cell reserves (a demo cell peaks near 3 GiB)."""

    def __post_init__(self) -> None:
        from glan_ray.pipeline import PRESETS
        from glan_ray.sim.worlds import WorldSpec

        if self.preset not in PRESETS:
            raise ValueError(f"preset: unknown {self.preset!r}; expected one of {list(PRESETS)}")
        if not self.strengths or not self.stochasticities:
            raise ValueError("strengths and stochasticities: need at least one value each")
        for s in self.strengths:
            for z in self.stochasticities:
                WorldSpec(self.world, s, z)  # a bad value raises, naming it
        lams = [float(x) for x in self.lambdas]
        if len(set(lams)) < 2 or min(lams) < 0 or not all(math.isfinite(x) for x in lams):
            raise ValueError(f"lambdas: need at least two finite values >= 0; got {lams}")
        if self.concurrent < 1:
            raise ValueError(f"concurrent must be >= 1; got {self.concurrent}")
        if not self.cell_memory_gb > 0:
            raise ValueError(f"cell_memory_gb must be > 0; got {self.cell_memory_gb}")
        if self.lambda_users is not None and self.lambda_users < 1:
            raise ValueError(f"lambda_users must be >= 1; got {self.lambda_users}")

    @property
    def cells(self) -> list[tuple[float, float]]:
        """Every (strength, stochasticity) of the grid."""
        return [(float(s), float(z)) for s in self.strengths for z in self.stochasticities]

    def spec(self, strength: float, stochasticity: float) -> str:
        """The world spec of one cell."""
        from glan_ray.sim.worlds import WorldSpec

        return WorldSpec(self.world, strength, stochasticity).format()

    def cell_dir(self, strength: float, stochasticity: float) -> str:
        return storage.join(self.out, "cells", cell_name(strength, stochasticity))


def cell_name(strength: float, stochasticity: float) -> str:
    """``s0.5_z2``: a cell's directory name."""
    return f"s{strength:g}_z{stochasticity:g}"


@dataclass(frozen=True)
class CellResult:
    """One cell's figures (``cell.json``)."""

    strength: float
    stochasticity: float
    world: str
    """The cell's world spec."""
    premise: dict[str, float]
    """``PREMISE_MEASURES`` of the cell's world (its ``diagnose`` stage)."""
    critic_lambda: float
    """λ of ``glan_cg``, chosen on validation users."""
    dt_adds_nothing: bool
    """The chosen λ does not beat the critic alone on the validation users (p < 0.05)."""
    vs_logging: dict[str, dict[str, float]]
    """Arm -> ``usage``, ``usage_low``, ``usage_high``, ``dau``, ``pdr`` (% vs logging) and
    ``pers_uplift`` (personalization uplift captured on usage)."""
    vs_klan: dict[str, dict[str, float]]
    """GLAN variant and ``klan_iit`` -> ``usage``, ``usage_low``, ``usage_high``,
    ``usage_p``, ``pdr``, ``pdr_p`` (% vs KLAN, paired)."""
    best_glan: str
    """The GLAN variant of highest usage."""
    gap: float
    """Usage of ``best_glan`` vs KLAN (%): the phase diagram's value."""
    gap_low: float
    gap_high: float
    winner: str
    """The learned arm of highest usage (KLAN family or GLAN variants)."""
    wall_s: float
    """Seconds the cell took (its stages, the λ tuning and the A/B)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellResult:
        return cls(**d)


def premise_measures(diagnosis: dict[str, Any]) -> dict[str, float]:
    """``PREMISE_MEASURES`` from a ``diagnosis.json``."""
    h, c, d = diagnosis["history"], diagnosis["consistency"], diagnosis["delay"]
    return {
        "history_gain": float(h["history_gain"]),
        "gap_closed": float(h["gap_closed"]),
        "delayed_share": float(d["delayed_share"]),
        "return_consistency": float(c.get("ipw_paired_gain", c.get("ipw_gain", float("nan")))),
    }


def summarize_cell(
    strength: float, stochasticity: float, world: str, premise: dict[str, float],
    critic_lambda: float, dt_adds_nothing: bool, ab: Any, wall_s: float,
) -> CellResult:  # fmt: skip
    """A cell's ``CellResult`` from its A/B (``eval.ab.ABResult`` with ``CELL_ARMS``)."""
    vs_log, vs_klan = ab.comparisons("logging"), ab.comparisons("klan")
    pers = ab.personalization_uplift_captured("usage_time")
    learned = (*KLAN_FAMILY, *GLAN_VARIANTS)
    by_arm = {}
    for arm in ab.config.arms:
        u = vs_log[arm]["usage_time"]
        by_arm[arm] = {"usage": u["rel_pct"], "usage_low": u["ci_low_pct"],
                       "usage_high": u["ci_high_pct"], "dau": vs_log[arm]["dau"]["rel_pct"],
                       "pdr": vs_log[arm]["pdr"]["rel_pct"],
                       "pers_uplift": float(pers.get(arm, float("nan")))}  # fmt: skip
    against = {}
    for arm in (*GLAN_VARIANTS, "klan_iit"):
        u, p = vs_klan[arm]["usage_time"], vs_klan[arm]["pdr"]
        against[arm] = {"usage": u["rel_pct"], "usage_low": u["ci_low_pct"],
                        "usage_high": u["ci_high_pct"], "usage_p": u["p_value"],
                        "pdr": p["rel_pct"], "pdr_p": p["p_value"]}  # fmt: skip
    best = max(GLAN_VARIANTS, key=lambda a: by_arm[a]["usage"])
    return CellResult(
        strength=strength, stochasticity=stochasticity, world=world, premise=premise,
        critic_lambda=critic_lambda, dt_adds_nothing=dt_adds_nothing, vs_logging=by_arm,
        vs_klan=against, best_glan=best, gap=against[best]["usage"],
        gap_low=against[best]["usage_low"], gap_high=against[best]["usage_high"],
        winner=max(learned, key=lambda a: by_arm[a]["usage"]), wall_s=round(wall_s, 1),
    )  # fmt: skip


def run_cell(cfg: WorldSweepConfig, strength: float, stochasticity: float) -> CellResult:
    """Run one cell (module docstring); its ``cell.json`` when it exists already."""
    from glan_ray.eval.ab import ABConfig, run_ab
    from glan_ray.eval.critic_lambda import LambdaPlay, tune_critic_lambda
    from glan_ray.pipeline import PipelineConfig, run_pipeline

    cell = cfg.cell_dir(strength, stochasticity)
    done = storage.join(cell, "cell.json")
    if storage.exists(done):
        res = CellResult.from_dict(storage.read_json(done))
        if set(GLAN_VARIANTS) <= set(res.vs_klan):
            return res
        logger.info("cell %s: done before %s joined; training and playing what it lacks",
                    res.world, sorted(set(GLAN_VARIANTS) - set(res.vs_klan)))  # fmt: skip
    t0, world = time.perf_counter(), cfg.spec(strength, stochasticity)
    pipe = PipelineConfig(run=cell, preset=cfg.preset, seed=cfg.seed, world=world, parallel=1,
                          only=CELL_STAGES)  # fmt: skip

    def on_stage(stage: str, event: str, rec: dict[str, Any]) -> None:
        if event == "done":
            logger.info("cell %s: %s done in %.1f s", world, stage, rec.get("wall_s", 0.0))

    run_pipeline(pipe, on_stage)
    premise = premise_measures(storage.read_json(storage.join(cell, "diagnosis", "diagnosis.json")))
    models, s = pipe.path("models"), pipe.sizes
    tiny = cfg.preset == "tiny"
    users = cfg.lambda_users or (100 if tiny else 1000)
    play = LambdaPlay(models=models, world=world, users=users, agree_users=min(users, 200),
                      days=2 if tiny else 5)  # fmt: skip
    tuned = tune_critic_lambda(play, cfg.lambdas)
    storage.write_json(storage.join(cell, "critic_lambda.json"), tuned.to_dict(), indent=1)
    logger.info("cell %s: critic_lambda %g", world, tuned.best_critic_lambda)
    ab = run_ab(ABConfig(
        arms=CELL_ARMS, users=s.ab_users, ab_days=s.ab_days, aa_days=s.ab_aa_days,
        burn_in_days=s.ab_burn_in_days, seeds=s.ab_seeds, models=models, world=world,
        options={"glan_cg": {"critic_lambda": tuned.best_critic_lambda}},
    ))  # fmt: skip
    storage.write_json(storage.join(cell, "ab.json"), ab.summary(), indent=1, default=float)
    res = summarize_cell(strength, stochasticity, world, premise, tuned.best_critic_lambda,
                         tuned.dt_adds_nothing, ab, time.perf_counter() - t0)  # fmt: skip
    storage.write_json(done, res.to_dict(), indent=1)
    return res


__all__ = [
    "CELL_ARMS",
    "CELL_STAGES",
    "GLAN_VARIANTS",
    "KLAN_FAMILY",
    "PREMISE_MEASURES",
    "CellResult",
    "WorldSweepConfig",
    "cell_name",
    "premise_measures",
    "run_cell",
    "summarize_cell",
]  # fmt: skip
