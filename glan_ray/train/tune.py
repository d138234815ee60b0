"""Ray Tune sweeps over the supervised models, from a validated YAML file.

A sweep file (see ``tune_configs/``)::

    name: lrtg_lagrangian          # experiment name
    model: lrtg                    # lrtg | hrm | isp | am | cql | dt
    base: {epochs: 3, data: runs/demo/data}   # fixed TrainConfig fields
    param_space:                   # swept TrainConfig fields
      eps_se: {grid: [2.0, 4.0]}
      lambda_max: {loguniform: [1.0, 20.0]}
    num_samples: 2                 # samples per grid point
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
    search: {type: random}         # random | optuna (when optuna is installed)
    max_concurrent_trials: 1

Each trial of a supervised model runs a TorchTrainer (one per trial, GPUs per worker from
``base.use_gpu``) inside a function trainable that reports through ``TuneReportCallback``; a
trial of an RL policy (``cql``, ``dt``) builds the RLlib algorithm in the trial process and
reports its learner losses every ``train()`` (keys: ``glan_ray.rllib.launch.RLTrainConfig``).
The results table (CSV and Markdown) and the best trial's config (YAML) land in the experiment
directory.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from typing import Any

import yaml
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import BasicVariantGenerator

from glan_ray.rllib.launch import ALGOS, TUNE_METRIC, RLTrainConfig, tune_trial
from glan_ray.runtime import require_gpus
from glan_ray.storage import staged_dir
from glan_ray.train.config import CONFIGS, train_config
from glan_ray.train.objectives import VAL_METRIC
from glan_ray.train.trainer import Prepared, fit, prepare

logger = logging.getLogger(__name__)

DISTRIBUTIONS = {
    "grid": lambda v: tune.grid_search(list(v)),
    "choice": lambda v: tune.choice(list(v)),
    "uniform": lambda v: tune.uniform(*v),
    "loguniform": lambda v: tune.loguniform(*v),
    "randint": lambda v: tune.randint(*v),
}


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep file."""

    model: str
    """Model to sweep: lrtg, hrm, isp, am (Ray Train) or cql, dt (RLlib)."""
    name: str = "sweep"
    """Experiment name (directory under the storage path)."""
    base: dict[str, Any] = field(default_factory=dict)
    """Fixed TrainConfig fields of every trial."""
    param_space: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Swept TrainConfig fields, each ``{grid|choice|uniform|loguniform|randint: values}``."""
    num_samples: int = 1
    """Samples per grid point (Tune's num_samples)."""
    metric: str | None = None
    """Metric to optimise; default the model's validation metric."""
    mode: str | None = None
    """min or max; default the model's."""
    scheduler: dict[str, Any] = field(default_factory=lambda: {"type": "asha"})
    """Trial scheduler: ``{type: asha, grace_period, reduction_factor}`` or ``{type: fifo}``."""
    search: dict[str, Any] = field(default_factory=lambda: {"type": "random"})
    """Search algorithm: ``{type: random}`` (Tune's BasicVariantGenerator) or ``{type: optuna}``."""
    max_concurrent_trials: int = 1
    """Trials running at once (1 on a 2-CPU machine; more on a cluster)."""

    def __post_init__(self) -> None:
        models = sorted(CONFIGS) + list(ALGOS)
        if self.model not in models:
            raise ValueError(f"model: unknown {self.model!r}; expected one of {models}")
        if self.is_rl:
            valid = RLTrainConfig.flat_keys(self.model)
        else:
            valid = {f.name for f in fields(CONFIGS[self.model])}
        for section in ("base", "param_space"):
            unknown = sorted(set(getattr(self, section)) - valid)
            if unknown:
                raise ValueError(
                    f"{section}: unknown {self.model} training key(s) "
                    f"{', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
                )
        for key, spec in self.param_space.items():
            if (
                not isinstance(spec, dict)
                or len(spec) != 1
                or next(iter(spec)) not in DISTRIBUTIONS
            ):
                raise ValueError(
                    f"param_space.{key}: expected one of "
                    f"{sorted(DISTRIBUTIONS)} mapping to values, got {spec!r}"
                )
        if self.scheduler.get("type") not in ("asha", "fifo"):
            raise ValueError(f"scheduler.type: expected asha or fifo, got {self.scheduler!r}")
        if self.search.get("type") not in ("random", "optuna"):
            raise ValueError(f"search.type: expected random or optuna, got {self.search!r}")
        # fixed fields must form a valid config
        if self.is_rl:
            RLTrainConfig.from_flat(self.model, self.base)
        else:
            train_config(self.model, self.base)

    @property
    def is_rl(self) -> bool:
        return self.model in ALGOS

    @classmethod
    def load(cls, path: str, overrides: dict[str, Any] | None = None) -> SweepConfig:
        """Read a sweep YAML; ``overrides`` update ``base`` (e.g. data and out from the CLI)."""
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {', '.join(unknown)}")
        if "model" not in raw:
            raise ValueError(f"{path}: missing required key 'model'")
        raw["base"] = {**raw.get("base", {}), **(overrides or {})}
        return cls(**raw)

    @property
    def objective(self) -> tuple[str, str]:
        default_metric, default_mode = (TUNE_METRIC if self.is_rl else VAL_METRIC)[self.model]
        return self.metric or default_metric, self.mode or default_mode


def _trial(config: dict[str, Any], model: str, base: dict[str, Any], data: Prepared) -> None:
    trial_id = tune.get_context().get_trial_id()
    cfg = train_config(model, {**base, **config})
    fit(
        model,
        cfg,
        callbacks=[TuneReportCallback()],
        run_name=f"{model}_{trial_id}",
        export=False,
        data=data,
    )


def _search_alg(sweep: SweepConfig, metric: str, mode: str):
    if sweep.search["type"] == "optuna":
        from ray.tune.search.optuna import OptunaSearch  # needs `pip install optuna`

        return OptunaSearch(metric=metric, mode=mode)
    # BasicVariantGenerator takes the concurrency limit itself (TuneConfig's does not bind it).
    return BasicVariantGenerator(
        random_state=sweep.base.get("seed", 0), max_concurrent=sweep.max_concurrent_trials
    )


def _scheduler(sweep: SweepConfig, max_t: int):
    if sweep.scheduler["type"] == "asha":
        opts = {k: v for k, v in sweep.scheduler.items() if k != "type"}
        return ASHAScheduler(time_attr="training_iteration", max_t=max_t, **opts)
    return FIFOScheduler()


def _space(sweep: SweepConfig) -> dict[str, Any]:
    return {
        k: DISTRIBUTIONS[next(iter(v))](next(iter(v.values())))
        for k, v in sweep.param_space.items()
    }


def _fit(sweep: SweepConfig, trainable: Any, storage: str, max_t: int) -> dict[str, Any]:
    metric, mode = sweep.objective
    tuner = tune.Tuner(
        trainable,
        param_space=_space(sweep),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=sweep.num_samples,
            scheduler=_scheduler(sweep, max_t),
            search_alg=_search_alg(sweep, metric, mode),
            max_concurrent_trials=sweep.max_concurrent_trials,
        ),
        run_config=tune.RunConfig(name=sweep.name, storage_path=storage),
    )
    results = tuner.fit()
    errors = [r.error for r in results if r.error]
    if len(errors) == len(results):
        raise RuntimeError(f"every trial failed; first error: {errors[0]}")
    return _write_results(results, sweep, os.path.join(storage, sweep.name), metric, mode)


def _storage(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def _require_trial_gpus(sweep: SweepConfig) -> None:
    """Fail fast (``runtime.require_gpus``) when ``base.use_gpu`` asks one trial for GPUs this
    Ray can never provide: Tune would keep the trials PENDING forever. A trial needs one GPU per
    Ray Train worker, or per RLlib learner (its local learner when ``num_learners`` is 0); the
    swept values of those fields are not looked at (a GPU trial needs at least one)."""
    if not sweep.base.get("use_gpu"):
        return
    workers = sweep.base.get("num_learners" if sweep.is_rl else "num_workers", 1)
    unit = "RLlib learner" if sweep.is_rl else "Ray Train worker"
    per = f"per trial of sweep {sweep.name!r}: one per {unit}"
    require_gpus("base.use_gpu", max(int(workers or 0), 1), per)


def run_sweep(sweep: SweepConfig) -> dict[str, Any]:
    """Run the sweep; write results.csv/.md and best_config.yaml; return the best trial."""
    _require_trial_gpus(sweep)
    if sweep.is_rl:
        return _run_rl_sweep(sweep)
    cfg = train_config(sweep.model, sweep.base)
    storage = _storage(cfg.storage_path or os.path.join(cfg.out, "tune"))
    base = {**sweep.base, "storage_path": os.path.join(storage, sweep.name, "trainer_runs")}
    # Data is read, validated, split and materialised once, here, for every trial: the swept
    # fields do not change it, and no trial then runs read tasks next to another's workers.
    swept = set(sweep.param_space) & {"data", "val_fraction", "max_rows", "materialize"}
    if swept:
        raise ValueError(
            f"param_space: {', '.join(sorted(swept))} cannot be swept "
            "(the data is prepared once per sweep)"
        )
    data = prepare(sweep.model, train_config(sweep.model, {**sweep.base, "materialize": True}))
    # The trial function only drives a TorchTrainer, whose workers hold the real resources;
    # Tune needs a non-empty request, so the driver asks for a sliver of a CPU.
    trainable = tune.with_resources(
        tune.with_parameters(_trial, model=sweep.model, base=base, data=data), {"cpu": 0.05}
    )
    return _fit(sweep, trainable, storage, cfg.epochs)


def _run_rl_sweep(sweep: SweepConfig) -> dict[str, Any]:
    """Each trial builds the RLlib algorithm in its own process and learns there (num_learners
    0), so the trial holds the learner's resources: one CPU, plus a GPU with ``use_gpu``."""
    cfg = RLTrainConfig.from_flat(sweep.model, sweep.base)
    cfg.prepare_input()  # history=True: transitions_hist, written once for every trial
    storage = _storage(os.path.join(cfg.out, "tune"))
    base = {**sweep.base, "data": os.path.abspath(cfg.data) if "://" not in cfg.data else cfg.data}
    resources = {"cpu": 1, "gpu": 1} if cfg.use_gpu else {"cpu": 1}
    trainable = tune.with_resources(
        tune.with_parameters(tune_trial, algo=sweep.model, base=base), resources
    )
    return _fit(sweep, trainable, storage, cfg.iterations)


def _write_results(
    results, sweep: SweepConfig, exp_dir: str, metric: str, mode: str
) -> dict[str, Any]:
    df = results.get_dataframe()
    keep = [
        c
        for c in df.columns
        if c.startswith(("config/", "val/"))
        or c in sweep_metrics(sweep)
        or c in ("trial_id", "training_iteration", "epoch", "time_total_s")
    ]
    table = df[keep].sort_values(metric, ascending=(mode == "min"))
    best = results.get_best_result(metric, mode)
    best_cfg = {**sweep.base, **best.config}
    summary = {
        "metric": metric,
        "mode": mode,
        "best_value": best.metrics.get(metric),
        "best_config": best_cfg,
        "trials": len(df),
        "errors": sum(bool(r.error) for r in results),
    }
    with staged_dir(exp_dir) as out:  # a URI exp_dir: written locally, then uploaded
        table.to_csv(os.path.join(out, "results.csv"), index=False)
        with open(os.path.join(out, "results.md"), "w") as f:
            f.write(table.to_markdown(index=False) if _has_tabulate() else table.to_string())
        with open(os.path.join(out, "best_config.yaml"), "w") as f:
            yaml.safe_dump(
                {
                    "model": sweep.model,
                    "train": best_cfg,
                    "metric": metric,
                    "value": summary["best_value"],
                },
                f,
                sort_keys=False,
            )
    summary["table"] = table
    summary["dir"] = exp_dir
    logger.info("best %s = %s with %s", metric, summary["best_value"], best.config)
    return summary


def sweep_metrics(sweep: SweepConfig) -> tuple[str, ...]:
    """Result columns of an RL sweep (the learner metrics); none for supervised sweeps."""
    from glan_ray.rllib.launch import METRICS

    return METRICS[sweep.model] if sweep.is_rl else ()


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["SweepConfig", "run_sweep"]
