"""Training configs: common fields plus one frozen dataclass per model. Unknown keys raise; every
numeric field is range-checked where it is declared (``glan_ray.checks``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from glan_ray.checks import check_fields, ranged


@dataclass(frozen=True)
class TrainConfig:
    """Fields every supervised model shares."""

    data: str = "runs/demo/data"
    """Run directory (or URI) holding the datasets written by ``glan-ray simulate``."""
    out: str = "runs/demo/models"
    """Where the final checkpoint is exported (``<out>/<model>/``)."""
    storage_path: str | None = None
    """Ray Train/Tune storage (local dir or s3://, gs://); default ``<out>/ray_results``."""
    epochs: int = ranged(5, ge=1)
    """Passes over the training data."""
    batch_size: int = ranged(512, ge=1)
    """Rows per optimisation step (per worker)."""
    lr: float = ranged(1e-3, gt=0)
    """AdamW learning rate."""
    weight_decay: float = ranged(1e-4, ge=0)
    """AdamW weight decay (not applied to biases and norms)."""
    val_fraction: float = ranged(0.1, gt=0, lt=1)
    """Share of users (by a hash of user_id) held out for validation."""
    max_rows: int | None = ranged(None, ge=1)
    """Cap on training rows (smoke runs and tests)."""
    seed: int = 0
    """Torch seed on every worker."""
    num_workers: int = ranged(1, ge=1)
    """Ray Train workers (data-parallel)."""
    use_gpu: bool = False
    """Train on GPUs (one per worker) when the cluster has them."""
    cpus_per_worker: float = ranged(1.0, ge=0)
    """CPUs reserved by each training worker."""
    data_cpus: float = ranged(0.25, gt=0)
    """CPUs per Ray Data task feeding training; fractional so the data stage never waits
    behind the training workers (and Tune trials) on small machines."""
    materialize: bool = True
    """Materialise the prepared data in the object store before training: one Parquet read for
    all epochs, and no read tasks competing with the training workers for CPUs (on a 2-CPU
    machine under Tune they would wait forever). Turn off when the data exceeds the store."""
    torch_threads: int | None = ranged(None, ge=1)
    """Torch intra-op threads of each worker, at most the node's cores. None: Ray's default, one
    per CPU the worker reserves (``cpus_per_worker``), which leaves a 2-core machine's second
    core idle while one worker trains; the pipeline passes its stage's share of the cores."""
    cache_batches: bool = True
    """Keep the first epoch's collated batches (and the validation set's) in the worker's memory
    and replay them in the same order in later epochs, instead of rebuilding the features from
    Ray Data every epoch. Turn off when a worker's shard does not fit in its memory."""
    patience: int | None = ranged(None, ge=1)
    """Stop before ``epochs`` when the validation metric (``objectives.VAL_METRIC``) has not
    improved by ``min_delta`` for this many epochs (``glan_ray.early_stop.Plateau``);
    ``epochs`` stays the budget and the best epoch is exported either way. None: train every
    epoch."""
    min_delta: float = ranged(0.0, ge=0)
    """Relative improvement of the validation metric that counts with ``patience`` (0.01: 1%)."""
    model: dict[str, Any] = field(default_factory=dict)
    """Overrides of the model config (e.g. ``{"d_model": 64}``)."""

    def __post_init__(self) -> None:
        check_fields(self)  # every ranged field, subclasses' included

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} key(s): {', '.join(unknown)}; "
                f"valid keys: {', '.join(sorted(names))}"
            )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class LRTGTrainConfig(TrainConfig):
    """L-RTG: Huber on usage time, constrained by session MSE and the log-linear relation."""

    huber_delta: float = ranged(0.1, gt=0)
    """Huber δ of L_wt (hours). Small, so L_wt behaves like MAE on the skewed usage times."""
    eps_se: float = ranged(6.0, gt=0)
    """ε_se: bound on the session-count MSE. Session counts are roughly Poisson (mean ≈ 5 per
    active day in the default simulator), so an MSE below ≈ 5 is infeasible; a tighter bound
    only drives λ_se to λ_max."""
    eps_rel: float = ranged(0.02, gt=0)
    """ε_rel: bound on L_rel = (ŷ_wt − a ln(1 + ŷ_se) − b)² (hours²)."""
    lambda_max: float = ranged(5.0, gt=0)
    """λ_max: upper bound of both dual variables."""
    eta_lambda: float = ranged(0.05, gt=0)
    """η_λ: dual ascent step."""
    ema_rho: float = ranged(0.9, ge=0, lt=1)
    """ρ: EMA factor of the constraint losses."""


@dataclass(frozen=True)
class HRMTrainConfig(TrainConfig):
    """HRM: Σ_j Huber(T̂^j, T^j) + λ·FocalBCE_γ(ŷ_sw, y_sw)."""

    huber_delta: float = ranged(1.0, gt=0)
    """Huber δ of the per-page durations (minutes)."""
    focal_gamma: float = ranged(2.0, ge=0)
    """γ of the focal loss (0 = plain BCE)."""
    sw_weight: float = ranged(1.0, ge=0)
    """λ: weight of the drop-off loss."""


@dataclass(frozen=True)
class ISPTrainConfig(TrainConfig):
    """KLAN-ISP: masked MSE per treatment + β·KL between no-treatment representations."""

    kl_beta: float = ranged(0.01, ge=0)
    """β of the KL term."""


@dataclass(frozen=True)
class AMTrainConfig(TrainConfig):
    """KLAN-AM: BCE on the assigned page's tower of the static-preference label."""

    theta: float = ranged(0.5, gt=0)
    """θ: page switches per minute below which a session counts as static preference."""


CONFIGS: dict[str, type[TrainConfig]] = {
    "lrtg": LRTGTrainConfig,
    "hrm": HRMTrainConfig,
    "isp": ISPTrainConfig,
    "am": AMTrainConfig,
}


def train_config(model: str, d: dict[str, Any]) -> TrainConfig:
    """The training config of ``model`` from a dict; unknown models or keys raise."""
    if model not in CONFIGS:
        raise ValueError(f"unknown model {model!r}; expected one of {sorted(CONFIGS)}")
    return CONFIGS[model].from_dict(d)
