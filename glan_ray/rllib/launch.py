"""Train the RL policies (``glan-ray train cql|dt``) and run them as Tune trials.

One flat, validated ``RLTrainConfig`` (what the CLI's flags, ``--set`` and the sweep YAML fill)
is turned into the RLlib ``AlgorithmConfig``. Keys that are not ``RLTrainConfig`` fields go to
``AlgorithmConfig.training()`` (e.g. ``alpha0``, ``reward_column``) or to the network's
``model_config`` (e.g. ``hidden``, ``embed_dim``, ``context_len``); anything else raises with the
valid keys. Outputs under ``<out>/<algo>/``: the exported torch module (``model.pt`` +
``config.json``, what Serve and evaluation load), the RLlib checkpoint (``rllib/``) and
``progress.csv`` (one row of losses per iteration).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from glan_ray.early_stop import Plateau
from glan_ray.models.cql import QNetConfig
from glan_ray.models.dt import DTConfig as DTNetConfig

if TYPE_CHECKING:  # it imports RLlib, which config_class imports only when called
    from glan_ray.rllib.offline import OfflineAlgorithmConfig

logger = logging.getLogger(__name__)

ALGOS = ("cql", "dt")
DATASET = {"cql": "transitions", "dt": "trajectories"}
"""Which dataset under ``data`` each algorithm reads."""
HISTORY_DATASET = "transitions_hist"
"""What CQL reads with ``history=True`` (the ``klan_iit_hist`` arm): ``transitions`` with the
history features, written by ``prepare_input`` from ``sessions`` and ``transitions``."""
HISTORY_NAME = "cql_hist"
"""The default export name of CQL trained with ``history=True``."""
EXTRA_TRAINING_KEYS = {"cql": ("gamma", "grad_clip"), "dt": ("grad_clip",)}
"""RLlib's own ``AlgorithmConfig.training()`` fields each algorithm accepts from flat keys."""


def config_class(algo: str) -> type[OfflineAlgorithmConfig]:
    """The RLlib ``AlgorithmConfig`` class of ``algo`` (imports RLlib)."""
    if algo == "cql":
        from glan_ray.rllib.cql.cql import DiscreteCQLConfig

        return DiscreteCQLConfig
    from glan_ray.rllib.dt.dt import DTConfig

    return DTConfig


def training_keys(algo: str) -> tuple[str, ...]:
    """Keys passed to ``AlgorithmConfig.training()``: the algorithm config's own fields (derived
    from its ``__init__``, ``OfflineAlgorithmConfig.own_training_keys``) and RLlib's
    ``EXTRA_TRAINING_KEYS``."""
    if algo not in ALGOS:
        raise ValueError(f"algo: unknown {algo!r}; expected one of {ALGOS}")
    return (*EXTRA_TRAINING_KEYS[algo][:1], *config_class(algo).own_training_keys(),
            *EXTRA_TRAINING_KEYS[algo][1:])  # fmt: skip


MODEL_KEYS = {
    "cql": (*(f.name for f in dataclasses.fields(QNetConfig)), "temperature"),
    "dt": tuple(f.name for f in dataclasses.fields(DTNetConfig)),
}
"""Keys of the network's ``model_config``."""
METRICS = {"cql": ("td_loss", "conservative_loss", "alpha_mean", "q_mean", "total_loss"),
           "dt": ("total_loss", "action_accuracy", "sessions_per_window")}  # fmt: skip
"""Learner metrics recorded per iteration (and reported to Tune)."""
TUNE_METRIC = {"cql": ("td_loss", "min"), "dt": ("total_loss", "min")}


@dataclass(frozen=True)
class RLTrainConfig:
    """Training run of an RL policy; every field can be set from the CLI or a sweep file."""

    algo: str
    """``cql`` (KLAN-IIT, discrete CQL with dynamic α) or ``dt`` (GLAN's Decision Transformer)."""
    data: str = "runs/demo/data"
    """Run data directory holding the ``transitions`` / ``trajectories`` datasets."""
    out: str = "runs/demo/models"
    """Where ``<algo>/`` (export, RLlib checkpoint, progress.csv) is written."""
    iterations: int = 20
    """``algo.train()`` calls."""
    updates_per_iteration: int = 200
    """Gradient updates per ``train()`` (RLlib's ``dataset_num_iters_per_learner``)."""
    batch_size: int | None = None
    """Rows (CQL: transitions; DT: windows) per update; default 256 for CQL, 64 for DT."""
    lr: float | None = None
    """Learning rate; default the algorithm's (3e-4 CQL, 1e-4 DT)."""
    num_learners: int = 0
    """Remote learner actors (0: learn in the driver/trial process)."""
    use_gpu: bool = False
    """One GPU per learner (on a GPU node; Tune trials then ask for it too)."""
    seed: int = 0
    """Seed of the networks' initialisation."""
    init_from: str | None = None
    """An export (``models/<name>``) whose weights start the network: a warm start, e.g. a
    refresh continuing the served model; its architecture must match. None: a fresh one."""
    name: str | None = None
    """Sub-directory of ``out`` for this run (default the algo), e.g. ``dt_naive`` for the DT
    trained on the naive reward (the "w/o HRM" ablation)."""
    replay_batches: bool = True
    """Learners keep their first pass's minibatches and replay them in later passes
    (``rllib.learner.ReplayBatches``: the same order, without Ray Data on every minibatch);
    False: stream every pass (data beyond a learner's memory)."""
    patience: int | None = None
    """Budgets by convergence: stop before ``iterations`` when the held-out criterion
    (``rllib.heldout``; CQL: its mean Q-value, which stops rising when the bootstrap has
    converged; DT: its cross-entropy, whose best iteration is exported) has not improved by
    ``min_delta`` for this many ``train()`` calls. None: the full budget, and every user
    trains."""
    val_fraction: float = 0.1
    """Share of users held out of training for the criterion (with ``patience``); the
    supervised models' split (``data.split.is_val_user``)."""
    val_rows: int = 20_000
    """Held-out rows read for the criterion (transitions for CQL, user-days for the DT)."""
    min_delta: float = 0.0
    """Relative improvement of the held-out criterion that counts (0.01: 1%)."""
    training: dict[str, Any] = field(default_factory=dict)
    """Algorithm keys (``training_keys``), e.g. ``{alpha0: 2.0}`` or ``{reward_column: reward}``."""
    model: dict[str, Any] = field(default_factory=dict)
    """Network keys (MODEL_KEYS), e.g. ``{hidden: [128, 128]}`` or ``{context_len: 10}``."""

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo: unknown {self.algo!r}; expected one of {ALGOS}")
        for name in ("iterations", "updates_per_iteration"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {self.batch_size}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 (None: the full budget); got {self.patience}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1); got {self.val_fraction}")
        if self.val_rows < 1:
            raise ValueError(f"val_rows must be >= 1; got {self.val_rows}")
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0; got {self.min_delta}")
        for section, valid in (("training", training_keys(self.algo)),
                               ("model", MODEL_KEYS[self.algo])):  # fmt: skip
            unknown = sorted(set(getattr(self, section)) - set(valid))
            if unknown:
                raise ValueError(f"unknown {self.algo} {section} key(s): {', '.join(unknown)}")

    @classmethod
    def from_flat(cls, algo: str, flat: dict[str, Any]) -> RLTrainConfig:
        """Route flat keys (CLI ``--set``, sweep YAML) to fields, ``training`` or ``model``."""
        if algo not in ALGOS:
            raise ValueError(f"algo: unknown {algo!r}; expected one of {ALGOS}")
        own = {f.name for f in dataclasses.fields(cls)} - {"algo", "training", "model"}
        kw: dict[str, Any] = {"training": {}, "model": {}}
        for k, v in flat.items():
            if k in own:
                kw[k] = v
            elif k in training_keys(algo):
                kw["training"][k] = v
            elif k in MODEL_KEYS[algo]:
                kw["model"][k] = v
            else:
                valid = sorted(own | set(training_keys(algo)) | set(MODEL_KEYS[algo]))
                raise ValueError(f"unknown {algo} key {k!r}; valid keys: {', '.join(valid)}")
        return cls(algo=algo, **kw)

    @staticmethod
    def flat_keys(algo: str) -> set[str]:
        own = {f.name for f in dataclasses.fields(RLTrainConfig)} - {"algo", "training", "model"}
        return own - {"name"} | set(training_keys(algo)) | set(MODEL_KEYS[algo])

    @property
    def history(self) -> bool:
        """CQL over obs ⊕ the history features (``training.history``; ``klan_iit_hist``)."""
        return self.algo == "cql" and bool(self.training.get("history", False))

    def check_input(self) -> None:
        """Raise FileNotFoundError naming the dataset when a local input is missing (with
        ``history``: the ``sessions`` and ``transitions`` that ``prepare_input`` reads), and
        ValueError when the DT would skip every day (all played by deterministic policies)."""
        needed = ("sessions", "transitions") if self.history else (DATASET[self.algo],)
        for name in needed:
            path = os.path.join(self.data, name)
            if "://" not in path and not os.path.exists(path):
                raise FileNotFoundError(f"no {name} dataset at {path}")
        if self.algo == "dt" and self.training.get("skip_deterministic_days", True):
            import pyarrow as pa
            import pyarrow.dataset as pads

            from glan_ray import storage
            from glan_ray.data.windows import deterministic_days

            fs, inner = storage.filesystem(self.input_path)
            ds = pads.dataset(inner, filesystem=fs, format="parquet")
            if "propensity" not in ds.schema.names:  # no files, or a schema conform() rejects
                return
            for batch in ds.to_batches(columns=["propensity"]):
                if not deterministic_days(pa.Table.from_batches([batch])).all():
                    return
            raise ValueError(
                f"every user-day in {self.input_path} was played by a deterministic policy "
                "(column 'propensity' is 1 on all sessions), so the DT has no decision to learn "
                "from; simulate with a stochastic logging policy or set "
                "skip_deterministic_days=False"
            )

    def prepare_input(self) -> None:
        """With ``history``: (re)write ``transitions_hist`` from the run's ``sessions`` and
        ``transitions`` (Ray tasks; needs Ray up), so it matches them; else nothing."""
        if self.history:
            from glan_ray.data.transitions_hist import write_transitions_hist

            self.check_input()
            write_transitions_hist(self.data)

    @property
    def input_path(self) -> str:
        return os.path.join(self.data, HISTORY_DATASET if self.history else DATASET[self.algo])

    @property
    def run_dir(self) -> str:
        return os.path.join(self.out, self.name or (HISTORY_NAME if self.history else self.algo))


def algorithm_config(cfg: RLTrainConfig) -> Any:
    """The RLlib ``AlgorithmConfig`` of a run. With ``use_gpu`` on a Ray that can never give every
    learner a GPU, raises ``GPUUnavailableError`` (``runtime.require_gpus``): RLlib's local
    learner would die on an assertion, its remote learners pend forever."""
    from glan_ray.runtime import require_gpus

    cfg.check_input()
    learners = max(cfg.num_learners, 1)  # 0: the local learner, in this process
    per = "num_gpus_per_learner=1, one per RLlib learner"
    require_gpus("--use-gpu / use_gpu", learners * cfg.use_gpu, per)
    if cfg.history and "://" not in cfg.input_path and not os.path.exists(cfg.input_path):
        raise FileNotFoundError(f"no {HISTORY_DATASET} dataset at {cfg.input_path}; "
                                "RLTrainConfig.prepare_input() writes it")  # fmt: skip
    from glan_ray.data.read import dataset_spec

    # the dataset's app sizes the spaces (observation width, pages) and is recorded in the export
    ac = config_class(cfg.algo)().set_app(dataset_spec(cfg.data))
    path = cfg.input_path if "://" in cfg.input_path else os.path.abspath(cfg.input_path)
    # RLlib's OfflineData wraps one input in pathlib.Path, which turns "s3://b" into "s3:/b"; a
    # one-element list reaches ray.data.read_parquet unchanged.
    input_: str | list[str] = [path] if "://" in path else path
    training = dict(cfg.training)
    if cfg.batch_size:
        training["train_batch_size_per_learner"] = cfg.batch_size
    if cfg.lr:
        training["lr"] = cfg.lr
    ac = (
        ac.offline_data(
            input_=input_,
            dataset_num_iters_per_learner=cfg.updates_per_iteration,
        )
        .training(**training)
        .learners(num_learners=cfg.num_learners, num_gpus_per_learner=1 if cfg.use_gpu else 0)
        .debugging(seed=cfg.seed)
    )
    if cfg.model:
        ac = ac.rl_module(model_config=dict(cfg.model))
    ac.replay_batches = cfg.replay_batches
    if cfg.patience:
        ac.holdout_fraction = cfg.val_fraction  # the pre-learner leaves these users out
    if hasattr(ac, "measure_tokens"):  # the DT's token variant, fitted before the build
        ac = ac.measure_tokens()
    return ac


def learner_metrics(result: dict[str, Any], algo: str) -> dict[str, float]:
    """The per-iteration learner metrics of ``algo.train()``'s result."""
    learner = result.get("learners", {}).get("default_policy", {})
    return {k: float(learner[k]) for k in METRICS[algo] if k in learner}


@dataclass
class RLResult:
    export: str
    """Directory of the exported torch module (``load_checkpoint`` reads it)."""
    checkpoint: str
    """RLlib checkpoint directory (``Algorithm.from_checkpoint`` / ``restore_from_path``)."""
    metrics: dict[str, float]
    """Last iteration's learner metrics."""
    updates_per_s: float
    """Gradient updates per second over all iterations after the first (which starts Ray Data)."""
    iterations: int = 0
    """``train()`` calls run (fewer than the budget when the criterion stopped the run)."""
    stop: str = ""
    """Where and why training ended: ``budget: N iteration(s)`` or the criterion's reason."""


def fit_rl(
    cfg: RLTrainConfig, on_iteration: Callable[[int, dict[str, float]], None] | None = None
) -> RLResult:
    """Train ``cfg.iterations`` iterations; write progress.csv, the RLlib checkpoint, the export."""
    from glan_ray import storage

    cfg.prepare_input()
    ac = algorithm_config(cfg)
    scorer, stopper = _early_stop(cfg, ac)
    algo = ac.build_algo()
    if cfg.init_from:
        try:
            algo.warm_start(cfg.init_from)
        except BaseException:
            algo.stop()
            raise
    rows, metrics, timed, spent, best = [], {}, 0, 0.0, None
    stop = f"budget: {cfg.iterations} iteration(s)"
    # a URI run_dir is written locally, then uploaded (local: run_dir itself)
    with storage.staged_dir(cfg.run_dir) as run_dir:
        try:
            for i in range(1, cfg.iterations + 1):
                t0 = time.perf_counter()
                metrics = learner_metrics(algo.train(), cfg.algo)
                dt = time.perf_counter() - t0
                if i > 1:
                    timed, spent = timed + cfg.updates_per_iteration, spent + dt
                if scorer is not None and stopper is not None:  # set together (_early_stop)
                    metrics.update(scorer.measure(algo.get_module()))
                    if stopper.update(metrics[scorer.metric]) and scorer.keep_best:
                        best = (i, copy.deepcopy(algo.learner_group.get_weights()))
                rows.append({"iteration": i, "seconds": round(dt, 3), **metrics})
                logger.info("%s iteration %d/%d (%.1fs): %s", cfg.algo, i, cfg.iterations, dt,
                            metrics)  # fmt: skip
                if on_iteration:
                    on_iteration(i, metrics)
                if stopper is not None and stopper.stop and i < cfg.iterations:
                    stop = f"stopped after iteration {i}: {stopper.reason('iteration')}"
                    break
            if best is not None and best[0] != len(rows):
                algo.learner_group.set_weights(best[1])
                stop += f"; exported iteration {best[0]}'s weights"
            logger.info("%s: %s", cfg.algo, stop)
            checkpoint = algo.save_to_path(os.path.abspath(os.path.join(run_dir, "rllib")))
            export = algo.export_model(run_dir)
        finally:
            algo.stop()
        with open(os.path.join(run_dir, "progress.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if storage.is_uri(cfg.run_dir):
        export, checkpoint = cfg.run_dir, storage.join(cfg.run_dir, "rllib")
    rate = timed / spent if spent else float("nan")
    return RLResult(export=export, checkpoint=str(checkpoint), metrics=metrics,
                    updates_per_s=rate, iterations=len(rows), stop=stop)  # fmt: skip


def _early_stop(cfg: RLTrainConfig, ac: Any) -> tuple[Any, Plateau | None]:
    """The held-out scorer and the criterion of a run with ``patience``; (None, None) without."""
    if not cfg.patience:
        return None, None
    from glan_ray.rllib.heldout import held_out, read_heldout

    scorer = held_out(cfg.algo, ac, read_heldout(cfg.input_path, cfg.val_fraction, cfg.val_rows))
    logger.info("%s: early stopping on %s over %d held-out rows", cfg.algo, scorer.metric,
                scorer.rows)  # fmt: skip
    return scorer, Plateau(scorer.metric, scorer.mode, cfg.patience, cfg.min_delta)


def tune_trial(config: dict[str, Any], algo: str, base: dict[str, Any]) -> None:
    """Tune function trainable: one RL run, reporting learner metrics every iteration."""
    from ray import tune

    cfg = RLTrainConfig.from_flat(algo, {**base, **config})
    rl = algorithm_config(cfg).build_algo()
    try:
        for _ in range(cfg.iterations):
            tune.report(learner_metrics(rl.train(), algo))
    finally:
        rl.stop()
