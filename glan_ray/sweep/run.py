"""``glan-ray sweep-worlds``: the grid of cells (``sweep.cell``) as Ray Tune trials, then the map.

Each cell is a Tune trial of a function trainable that reserves no CPU (its pipeline's trainers,
learners and A/B tasks reserve their own) and ``cell_memory_gb`` of Ray's logical memory: Tune
needs a non-empty request, and memory is what a cell really holds. ``concurrent`` cells run at
once; on a cluster they spread over its nodes with no change. Cells done already return at once
(their ``cell.json``), so a rerun finishes a killed sweep.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import Any

from glan_ray import storage
from glan_ray.sweep.cell import CellResult, WorldSweepConfig, cell_name, run_cell
from glan_ray.sweep.world_map import WorldMap, write_map

logger = logging.getLogger(__name__)


def _cell_task(cfg: WorldSweepConfig, strength: float, stochasticity: float) -> CellResult:
    """``run_cell`` in a Ray task of its own, with this node's cores shared by the cells at once
    as torch threads (a 0-CPU Ray worker gets one; the DT learner runs in this process)."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.concurrent))
    return run_cell(cfg, strength, stochasticity)


def _trial(params: dict[str, Any], cfg: WorldSweepConfig) -> None:
    """Tune's function trainable: one cell. Tune captures a trial's child tasks into the trial's
    placement group, which holds only the trial's own request; the cell runs in a task outside
    it (``scheduling_strategy="DEFAULT"``), so its simulators, trainers, learners and A/B tasks
    take the cluster's CPUs as in a pipeline run."""
    import ray
    from ray import tune

    task = ray.remote(num_cpus=0)(_cell_task).options(scheduling_strategy="DEFAULT")
    res = ray.get(task.remote(cfg, float(params["strength"]), float(params["stochasticity"])))
    tune.report({"gap": res.gap, "gap_low": res.gap_low, "gap_high": res.gap_high,
                 "winner": res.winner, "best_glan": res.best_glan,
                 "critic_lambda": res.critic_lambda, **res.premise})  # fmt: skip


def sweep_worlds(cfg: WorldSweepConfig) -> WorldMap:
    """Run every cell as a Tune trial (the cells done already return at once), then write the
    map (``sweep.world_map.write_map``); returns the ``WorldMap``."""
    from ray import tune

    out = cfg.out if storage.is_uri(cfg.out) else os.path.abspath(cfg.out)
    cfg = WorldSweepConfig(**{**asdict(cfg), "out": out})
    storage.makedirs(out)
    storage.write_json(storage.join(out, "sweep.json"), asdict(cfg), indent=1)
    memory = int(cfg.cell_memory_gb * 2**30)
    trainable = tune.with_resources(tune.with_parameters(_trial, cfg=cfg),
                                    {"cpu": 0, "memory": memory})  # fmt: skip
    tuner = tune.Tuner(
        trainable,
        param_space={"strength": tune.grid_search(list(cfg.strengths)),
                     "stochasticity": tune.grid_search(list(cfg.stochasticities))},
        tune_config=tune.TuneConfig(max_concurrent_trials=cfg.concurrent),
        run_config=tune.RunConfig(name="sweep_worlds", storage_path=storage.join(out, "tune"),
                                  verbose=1),
    )  # fmt: skip
    results = tuner.fit()
    failed = {}
    for r in results:
        if r.error:
            key = cell_name(float(r.config["strength"]), float(r.config["stochasticity"]))
            failed[key] = _short(r.error)
    return map_cells(cfg, failed)


def _short(error: BaseException) -> str:
    """An error's type and its last message line (no traceback, no terminal colours)."""
    import re

    lines = [x.strip() for x in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines()]
    last = next((x for x in reversed(lines) if x), "")
    return f"{type(error).__name__}: {last}"[:300]


def map_cells(cfg: WorldSweepConfig, failed: dict[str, str] | None = None) -> WorldMap:
    """The map of the cells done under ``cfg.out`` (their ``cell.json``), written there; the
    grid's other cells are listed as failed (``failed``'s error) or not run."""
    cells, missing = [], {}
    for s, z in cfg.cells:
        done = storage.join(cfg.cell_dir(s, z), "cell.json")
        if storage.exists(done):
            cells.append(CellResult.from_dict(storage.read_json(done)))
        else:
            missing[cell_name(s, z)] = (failed or {}).get(cell_name(s, z), "not run")
    if not cells:
        raise RuntimeError(f"no cell done under {cfg.out}: {missing}")
    wmap = WorldMap.build(cfg, cells, missing)
    write_map(wmap, cfg.out)
    return wmap


__all__ = ["map_cells", "sweep_worlds"]
