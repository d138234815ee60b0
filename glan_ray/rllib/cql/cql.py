"""KLAN-IIT: discrete CQL with a dynamic conservative coefficient, offline on RLlib's new stack.

    config = (
        DiscreteCQLConfig()
        .offline_data(input_="runs/demo/data/transitions")
        .training(alpha0=1.0, alpha_min=0.1, alpha_max=10.0, lr=3e-4)
    )
    algo = config.build_algo()
    algo.train()

Trains purely from the ``transitions`` dataset (one row per session: obs, action, reward,
next_obs, done, hour, entries_today); the spaces are fixed by ``glan_ray.schema``, no
environment is built. Loss: double-DQN TD + α(s)·(logsumexp_a Q − Q(s, a_data)) with
α(s) = clip(α₀·ρ_h^(−κ_h)·ρ_n^(−κ_n), α_min, α_max) (KLAN eq. 9, App. A.4); ρ is measured on
the data unless given; ``static_alpha=True`` is plain CQL with α₀ (the "w/o IIT" ablation).
``history=True`` trains on ``transitions_hist`` with states obs ⊕ ``schema.HIST_FEATURES``: the
``klan_iit_hist`` control arm, which tells "GLAN models sequences" from "GLAN sees more".
"""

from __future__ import annotations

import dataclasses
import logging

from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from glan_ray.models.checkpoint import save_checkpoint
from glan_ray.models.cql import DynamicAlpha
from glan_ray.models.exports import CQLRecord
from glan_ray.rllib.cql.prelearner import TransitionsHistPreLearner, TransitionsPreLearner
from glan_ray.rllib.offline import OfflineAlgorithm, OfflineAlgorithmConfig, obs_space
from glan_ray.schema import HIST_DIM, HIST_FEATURES

logger = logging.getLogger(__name__)


class DiscreteCQLConfig(OfflineAlgorithmConfig):
    """Config of ``DiscreteCQL``; ``training()`` takes the fields below plus AlgorithmConfig's."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or DiscreteCQL)
        self.prelearner_class = TransitionsPreLearner
        self.lr = 3e-4
        self.gamma = 0.99
        self.reward_scale: float = 1.0 / 60.0
        """Multiplies the ``reward`` column (seconds of usage) -> minutes, so Q is O(10-100)."""
        self.tau: float = 1.0
        """Target update: 1.0 copies the Q-network, < 1 Polyak-averages it."""
        self.target_network_update_freq: int = 25_600
        """Training rows between target updates (checked after each ``train()`` call)."""
        self.alpha0: float = 1.0
        """α₀, the base conservative coefficient."""
        self.alpha_min: float = 0.1
        """Lower clip of α(s)."""
        self.alpha_max: float = 10.0
        """Upper clip of α(s)."""
        self.kappa_hour: float = 0.5
        """κ_h: w_hour = ρ_h^(−κ_h); quiet hours get a larger α."""
        self.kappa_freq: float = 0.5
        """κ_n: w_freq = ρ_n^(−κ_n) over the user's entry count so far today."""
        self.static_alpha: bool = False
        """Constant α = α₀ (plain CQL; the ablation of the dynamic coefficient)."""
        self.hour_ratio: list[float] | None = None
        """ρ_h for hours 0..23; None measures it on ``input_`` when the learner is built."""
        self.freq_ratio: list[float] | None = None
        """ρ_n for 0..n_freq_buckets−1 entries today; None measures it like ``hour_ratio``."""
        self.n_freq_buckets: int = 16
        """Entry counts ≥ n_freq_buckets − 1 share the last bucket of ρ_n."""
        self.history: bool = False
        """States are obs ⊕ the history features (``schema.HIST_FEATURES``, obs_dim + HIST_DIM
        wide), read from ``transitions_hist`` (``data.transitions_hist``): the ``klan_iit_hist``
        arm. Set through ``training(history=...)``, which also sets the observation space and
        the pre-learner."""

    @property
    def state_dim(self) -> int:
        """Width of the Q-network's input: the app's obs_dim, plus HIST_DIM with ``history``."""
        return self.app.obs_dim + (HIST_DIM if self.history else 0)

    def training(self, **kwargs: object) -> DiscreteCQLConfig:
        """``OfflineAlgorithmConfig.training``; ``history`` also sets the observation space and
        the pre-learner of the wider states."""
        super().training(**kwargs)
        if "history" in kwargs:
            self.observation_space = obs_space(self.state_dim)
            self.prelearner_class = (
                TransitionsHistPreLearner if self.history else TransitionsPreLearner
            )
        return self

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from glan_ray.rllib.cql.torch.discrete_cql_torch_rl_module import (
            DiscreteCQLTorchRLModule,
        )

        # No model_config here: RLlib lets a spec's model_config override the user's
        # rl_module(model_config=...), so the module supplies its own defaults.
        return RLModuleSpec(module_class=DiscreteCQLTorchRLModule)

    def get_default_learner_class(self) -> type:
        from glan_ray.rllib.cql.torch.discrete_cql_torch_learner import DiscreteCQLTorchLearner

        return DiscreteCQLTorchLearner

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.alpha_min <= self.alpha_max:
            self._value_error(
                f"need 0 <= alpha_min <= alpha_max; got alpha_min={self.alpha_min}, "
                f"alpha_max={self.alpha_max}"
            )
        if self.alpha0 < 0:
            self._value_error(f"alpha0 must be >= 0; got {self.alpha0}")
        if not 0 < self.tau <= 1:
            self._value_error(f"tau must be in (0, 1]; got {self.tau}")
        if self.hour_ratio is not None and len(self.hour_ratio) != 24:
            self._value_error(f"hour_ratio needs 24 entries; got {len(self.hour_ratio)}")
        if self.n_freq_buckets < 1:
            self._value_error(f"n_freq_buckets must be >= 1; got {self.n_freq_buckets}")
        width = self.observation_space.shape[0] if self.observation_space is not None else None
        if width != self.state_dim:
            self._value_error(
                f"history={self.history} needs states {self.state_dim} wide, but the "
                f"observation space is {width} wide; set history through training(history=...)"
            )

    def dynamic_alpha(self) -> DynamicAlpha:
        """The α(s) of this config, measuring ρ_h / ρ_n on ``input_`` where not given."""
        hour, freq = self.hour_ratio, self.freq_ratio
        if not self.static_alpha and (hour is None or freq is None):
            from glan_ray.rllib.cql.activity import measure_activity

            m_hour, m_freq = measure_activity(self.input_, self.n_freq_buckets)
            hour, freq = hour or m_hour, freq or m_freq
        return DynamicAlpha(
            alpha0=self.alpha0,
            alpha_min=self.alpha_min,
            alpha_max=self.alpha_max,
            kappa_hour=self.kappa_hour,
            kappa_freq=self.kappa_freq,
            hour_ratio=tuple(hour or (1.0,) * 24),
            freq_ratio=tuple(freq or (1.0,)),
            static=self.static_alpha,
        )


class DiscreteCQL(OfflineAlgorithm):
    """Offline discrete CQL (KLAN-IIT); see ``DiscreteCQLConfig``."""

    @classmethod
    def get_default_config(cls) -> DiscreteCQLConfig:
        return DiscreteCQLConfig()

    def export_model(self, path: str) -> str:
        """Write the bare Q-network (``glan_ray.models.checkpoint`` format) for Serve/evaluation."""
        module = self.get_module()
        learner_cfg = {k: getattr(self.config, k) for k in type(self.config).own_training_keys()}
        learner_cfg.update(gamma=self.config.gamma, lr=self.config.lr)
        save_checkpoint(
            path,
            "cql",
            module.qnet,
            dataclasses.asdict(module.qnet.cfg),
            learner_cfg,
            normalizer=None,
            extra=CQLRecord(
                temperature=module.temperature,
                history_features=HIST_FEATURES if self.config.history else (),
            ),
            app=self.config.app,
        )
        return path
