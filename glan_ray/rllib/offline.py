"""What our two offline algorithms share: env-less config defaults, the offline training step,
an Arrow-batch pre-learner, and a checkpoint restore that works without EnvRunners.

RLlib's stock offline path turns every Parquet row into a ``SingleAgentEpisode`` and runs the
learner-connector pipeline on it. Our rows are already what the loss needs (a transition, or a
whole user-day), so ``ArrowPreLearner`` maps each Arrow batch straight to a train batch with
vectorised numpy and validates it against ``glan_ray.schema`` on the way (a bad column fails the
run with the column's name instead of training on garbage).
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow as pa
from ray.data import ActorPoolStrategy
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.distribution.torch.torch_distribution import TorchCategorical
from ray.rllib.core.learner.training_data import TrainingData
from ray.rllib.offline.offline_data import OfflineData
from ray.rllib.offline.offline_prelearner import OfflinePreLearner
from ray.rllib.utils.checkpoints import Checkpointable
from ray.rllib.utils.metrics import (
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    OFFLINE_SAMPLING_TIMER,
    TIMERS,
)

from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.data.read import in_order, sized_for
from glan_ray.data.split import is_val_user
from glan_ray.schema import N_PAGES, OBS_DIM, conform

logger = logging.getLogger(__name__)


class CategoricalPages:
    """RLModule mixin: both policies' action distribution is a categorical over the pages."""

    def get_inference_action_dist_cls(self) -> type:
        return TorchCategorical

    def get_exploration_action_dist_cls(self) -> type:
        return TorchCategorical

    def get_train_action_dist_cls(self) -> type:
        return TorchCategorical


def obs_space(dim: int = OBS_DIM) -> gym.spaces.Box:
    """The observation space: schema.OBS_FEATURES as a float32 vector (both algorithms), or
    ``dim`` wide (CQL over obs ⊕ the history features: ``OBS_DIM + HIST_DIM``)."""
    return gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)


class ArrowOfflineData(OfflineData):
    """``OfflineData`` whose pre-learner receives Arrow batches, one actor, no CPU reserved.

    ``num_cpus: 0`` keeps the mapping stage from deadlocking a 2-CPU machine where the learner,
    Tune and Ray Data all want a CPU (see ../shared/RLLIB_NOTES.md); on a cluster raise
    ``compute``/``num_cpus`` through ``config.offline_data(map_batches_kwargs=...)``.
    """

    def __init__(self, config: AlgorithmConfig) -> None:
        super().__init__(config)
        # the pre-learner's batches and the learners' minibatches in the files' row order,
        # whatever order the read tasks finish in: the same seed, the same updates
        # (data.read.in_order; the mapped and materialised data share this context)
        in_order(self.data)
        self.data_read_batch_size = getattr(config, "prelearner_batch_rows", None)

    @property
    def default_map_batches_kwargs(self) -> dict[str, Any]:
        # ``compute``, not ``concurrency`` (deprecated in Ray Data 2.51: it logs a warning)
        return {"compute": ActorPoolStrategy(size=1), "num_cpus": 0, "zero_copy_batch": True,
                "batch_format": "pyarrow"}  # fmt: skip


def _arrow_column(values: Any) -> Any:
    """A numpy batch column for ``pa.table``: 2-D arrays (how Ray Data's numpy format gives a
    fixed-size list column such as ``obs``) become fixed-size lists; the rest is left to Arrow."""
    if isinstance(values, np.ndarray) and values.ndim == 2 and values.dtype != object:
        flat = pa.array(np.ascontiguousarray(values).ravel())
        return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    return values


class ArrowPreLearner(OfflinePreLearner):
    """Maps a validated Arrow batch of ``dataset`` rows to a flat train batch of numpy arrays.

    Subclasses set ``dataset`` (a name in ``glan_ray.schema.SCHEMAS``) and implement
    ``transform``. No RLModule or connector pipeline is built: the rows need no episode logic.
    """

    dataset: str = ""

    def __init__(
        self, *, config: AlgorithmConfig, spaces: tuple[Any, Any] | None = None, **kwargs: Any
    ) -> None:
        # Deliberately not calling super().__init__: it builds an RLModule and a learner
        # connector pipeline per actor that this pre-learner never uses.
        self.config = config
        obs_space_, action_space = spaces or (None, None)
        self.observation_space: gym.Space | None = obs_space_
        self.action_space: gym.Space | None = action_space
        self.sized = sized_for(config.app)  # the schema of the input's app (None: PLPM's)

    def __call__(self, batch: pa.Table | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(batch, pa.Table):
            batch = pa.table({k: _arrow_column(v) for k, v in batch.items()})
        table = conform(batch, self.dataset, where=str(self.config.input_), spec=self.sized)
        if self.config.holdout_fraction:  # early stopping scores these users (rllib.heldout)
            table = table.filter(pa.array(~is_val_user(table.column("user_id"),
                                                       self.config.holdout_fraction)))  # fmt: skip
        return {f"{DEFAULT_MODULE_ID}/{k}": v for k, v in self.transform(table).items()}

    def transform(self, table: pa.Table) -> dict[str, np.ndarray]:
        raise NotImplementedError


_OWN_KEYS: dict[type, tuple[str, ...]] = {}


class OfflineAlgorithmConfig(AlgorithmConfig):
    """Defaults for env-less offline training from our Parquet datasets.

    Spaces are given here (no environment is ever built); ``_is_online = False`` so RLlib creates
    no EnvRunners; the per-iteration minimums are 0 because offline runs never count env steps.
    The fields a subclass's ``__init__`` adds are its own ``training()`` keys
    (``own_training_keys``): declared once, with their docstrings, in the subclass.
    """

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class)
        self._is_online = False
        self.observation_space: gym.spaces.Box = obs_space()
        self.action_space: gym.spaces.Discrete = gym.spaces.Discrete(N_PAGES)
        self.app_spec: dict[str, Any] | None = None
        """The app spec (``AppSpec.to_dict()``) of the input dataset (``set_app``): its
        observation and pages are the spaces, and the export records it; None: the PLPM app."""
        self.min_sample_timesteps_per_iteration = 0
        self.min_time_s_per_iteration = 0
        self.input_read_method = "read_parquet"
        self.offline_data_class = ArrowOfflineData
        self.materialize_data = False
        self.materialize_mapped_data = True
        self.prelearner_batch_rows: int = 4096
        """Dataset rows per pre-learner call: large, so the mapping is a few vectorised calls
        rather than one per train batch (the learner's iterator re-batches to
        ``train_batch_size_per_learner``). RLlib's ``input_read_batch_size`` is reserved for
        episode data, hence our own field."""
        self.replay_batches: bool = True
        """Each learner keeps its first pass's minibatches and replays them, in the same order,
        in later passes (``rllib.learner.ReplayBatches``); False: stream every pass from Ray
        Data (data beyond a learner's memory). Set from ``RLTrainConfig.replay_batches``."""
        self.holdout_fraction: float = 0.0
        """Share of users (``data.split.is_val_user``) the pre-learner leaves out of training,
        for early stopping to score (``rllib.heldout``); 0: train on every user. Set from
        ``RLTrainConfig.val_fraction`` when ``patience`` is on."""
        self.dataset_num_iters_per_learner = 50
        self.train_batch_size_per_learner = 256
        self.iter_batches_kwargs = {"prefetch_batches": 2, "local_shuffle_buffer_size": None}
        # our learners check all the gradients at once (rllib.learner.FusedFiniteCheck)
        self.torch_skip_nan_gradients = True

    @property
    def app(self) -> AppSpec:
        """The app spec of the input dataset (the PLPM app when none is set)."""
        return plpm_spec() if self.app_spec is None else AppSpec.from_dict(self.app_spec)

    def set_app(self, spec: AppSpec) -> OfflineAlgorithmConfig:
        """Size the spaces from ``spec`` (the input dataset's app, ``data.read.dataset_spec``):
        the observation is ``obs_dim`` wide (``state_dim`` where a subclass widens it), the
        actions are its pages. Returns self."""
        self.app_spec = spec.to_dict()
        self.observation_space = obs_space(self.state_dim)
        self.action_space = gym.spaces.Discrete(spec.n_pages)
        return self

    @property
    def state_dim(self) -> int:
        """Width of the policy's input: the app's observation."""
        return self.app.obs_dim

    @classmethod
    def own_training_keys(cls) -> tuple[str, ...]:
        """The attributes this class's ``__init__`` sets beyond ``OfflineAlgorithmConfig``'s,
        in declaration order (computed once per class)."""
        if cls not in _OWN_KEYS:
            base = set(vars(OfflineAlgorithmConfig()))
            _OWN_KEYS[cls] = tuple(k for k in vars(cls()) if k not in base)
        return _OWN_KEYS[cls]

    def training(self, **kwargs: Any) -> OfflineAlgorithmConfig:
        """AlgorithmConfig.training() plus the subclass's ``own_training_keys``."""
        ours = {k: kwargs.pop(k) for k in self.own_training_keys() if k in kwargs}
        super().training(**kwargs)
        for k, v in ours.items():
            setattr(self, k, v)
        return self

    def validate(self) -> None:
        super().validate()
        if not self.input_ or self.input_ == "sampler":  # "sampler": RLlib's online default
            self._value_error(
                "offline_data(input_=...) must name the dataset directory (e.g. "
                "runs/demo/data/transitions)"
            )
        if not self.dataset_num_iters_per_learner or self.dataset_num_iters_per_learner < 1:
            self._value_error(
                "offline_data(dataset_num_iters_per_learner=N) needs N >= 1: the number of "
                "gradient updates per train() call"
            )
        if self.input_read_method != "read_parquet":
            self._value_error("input_read_method must be 'read_parquet' for our datasets")


class OfflineAlgorithm(Algorithm):
    """One ``train()``: ``dataset_num_iters_per_learner`` gradient updates from the Parquet data."""

    def training_step(self) -> None:
        cfg = self.config
        with self.metrics.log_time((TIMERS, OFFLINE_SAMPLING_TIMER)):
            iterators = self.offline_data.sample(
                num_samples=cfg.train_batch_size_per_learner,
                num_shards=cfg.num_learners,
                return_iterator=True,
            )
            # Counted in training rows, so the learner's target-network schedule can key on it.
            self.metrics.log_value(
                NUM_ENV_STEPS_SAMPLED_LIFETIME,
                cfg.train_batch_size_per_learner
                * cfg.dataset_num_iters_per_learner
                * max(1, cfg.num_learners),
                reduce="lifetime_sum",
            )
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            results = self.learner_group.update(
                training_data=TrainingData(data_iterators=iterators),
                minibatch_size=cfg.train_batch_size_per_learner,
                num_iters=cfg.dataset_num_iters_per_learner,
                timesteps={
                    NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                        NUM_ENV_STEPS_SAMPLED_LIFETIME
                    )
                },
                **self.offline_data.iter_batches_kwargs,
            )
            self.metrics.aggregate(results, key=LEARNER_RESULTS)

    def warm_start(self, export: str) -> None:
        """Start every learner's network from the weights of an export (``models/<name>``,
        ``glan_ray.models.checkpoint``); its architecture must be this module's."""
        from glan_ray.models.app_check import require_export_app
        from glan_ray.models.checkpoint import load_checkpoint

        model, _, meta = load_checkpoint(export)
        require_export_app(meta, self.config.app, model=export,
                           where=f"the dataset {self.config.input_}")  # fmt: skip
        state = model.state_dict()

        def load(learner: Any) -> None:
            try:
                learner.module[DEFAULT_MODULE_ID].load_network(state)
            except RuntimeError as e:  # torch's size / key mismatch
                raise ValueError(f"init_from {export}: its network does not fit: {e}") from e

        for result in self.learner_group.foreach_learner(load):  # remote learners' errors
            result.get()

    def get_module(self, module_id: str = DEFAULT_MODULE_ID) -> Any:
        """The trained RLModule: from the learner (there are no EnvRunners to ask)."""
        if self.env_runner_group is not None:
            return super().get_module(module_id)
        if self.learner_group.is_local:
            return self.learner_group._learner.module[module_id]
        module = self.config.get_rl_module_spec(inference_only=True).build()
        module.set_state(self.learner_group.get_weights([module_id])[module_id])
        return module

    def cleanup(self) -> None:
        # Drop the live Ray Data iterators before Ray may shut down, so their generators are not
        # finalised later against a dead cluster (which prints a traceback at exit).
        if self.offline_data is not None:
            self.offline_data.batch_iterators = None
        if self.learner_group is not None and self.learner_group.is_local:
            self.learner_group._learner.iterator = None
        gc.collect()
        super().cleanup()

    def restore_from_path(self, path: Any, *args: Any, **kwargs: Any) -> None:
        # Algorithm.restore_from_path syncs EnvRunners, which an env-less algorithm lacks.
        if self.env_runner_group is None:
            Checkpointable.restore_from_path(self, path, *args, **kwargs)
        else:
            super().restore_from_path(path, *args, **kwargs)
