"""GLAN's Decision Transformer learner, offline on RLlib's new API stack (GLAN §3.2, §5.3.1).

    config = (
        DTConfig()
        .offline_data(input_="runs/demo/data/trajectories")
        .training(reward_column="reward_hrm", lr=3e-4)
        .rl_module(model_config={"context_len": 20, "embed_dim": 128, "n_layers": 3})
    )
    algo = config.build_algo()
    algo.train()

Reads the ``trajectories`` dataset (one row per user-day); ``TrajectoriesPreLearner`` cuts each
day into windows of K sessions with R̂_t = Σ_{t'≥t} r_t' from ``reward_column`` (``reward_hrm``
for GLAN, ``reward`` = naive duration for the "w/o HRM" ablation), scaled by ``rtg_scale``.
Loss: cross-entropy of the logged page from the s_t token, padding masked out, weighted by the
inverse logging propensity (``propensity_weighting``); days played by a deterministic policy
(RCT treatment days) are left out (``skip_deterministic_days``). Both are our additions to the
GLAN recipe: without them the DT imitates the logging policy's favourite page (see docs/rl.md's
"Why GLAN needs de-biased logs").
"""

from __future__ import annotations

import dataclasses
import logging

from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from glan_ray.data.windows import REWARD_COLUMNS
from glan_ray.models.checkpoint import save_checkpoint
from glan_ray.models.exports import DTRecord
from glan_ray.rllib.dt.prelearner import TrajectoriesPreLearner
from glan_ray.rllib.dt.torch.dt_torch_rl_module import dt_config
from glan_ray.rllib.offline import OfflineAlgorithm, OfflineAlgorithmConfig

logger = logging.getLogger(__name__)


class DTConfig(OfflineAlgorithmConfig):
    """Config of ``DT``. Architecture (``glan_ray.models.dt.DTConfig`` fields, incl. the window
    ``context_len``) goes through ``rl_module(model_config=...)``."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or DT)
        self.prelearner_class = TrajectoriesPreLearner
        self.lr = 3e-4
        self.grad_clip = 1.0
        self.train_batch_size_per_learner = 64
        self.reward_column: str = "reward_hrm"
        """Per-session reward summed into the RTG: ``reward_hrm`` (HRM's r̂, GLAN) or
        ``reward`` (the naive session duration, the "w/o HRM" ablation); both in seconds."""
        self.rtg_scale: float = 3600.0
        """RTG is divided by this before the model sees it (seconds -> hours, L-RTG's unit)."""
        self.skip_deterministic_days: bool = True
        """Leave out user-days whose every page had probability 1 (RCT treatment days: one fixed
        page all day). Trained on them the DT learns to repeat its previous page, which at
        serving time means repeating its own first choice all day."""
        self.propensity_weighting: bool = True
        """Weight each session's cross-entropy by 1/μ(a|s) (capped at ``max_weight``) so the DT
        learns p(a | s, R̂) as under a uniform logging policy; unweighted, it inherits the
        logging policy's favourite page, whatever R̂ it is conditioned on."""
        self.max_weight: float = 50.0
        """Cap of the inverse-propensity weights (bounds their variance)."""
        self.target_gain: float = 2.0
        """Inference only, stored in the export: the day's target R̂₁ is this × the L-RTG (or
        7-day mean) forecast. The forecast is the expected usage under the logging policy; a
        DT asked for exactly that reproduces average behaviour, asked for more it picks the
        pages that reached more (``bench/glan_gain.py`` sweeps it on held-out users)."""
        self.advantage_tokens: bool = False
        """Our option, off in GLAN as published: the DT's return tokens are relative to a
        linear baseline of the remaining return given the state, (R̂_t − b(s_t)) / rtg_scale,
        fitted on the same trajectories before training (``rllib.dt.baseline``) and stored in
        the export (``DTRecord.rtg_baseline``), so at inference the GLAN loop's R̂_t is compared
        with what this user was expected to get from here. Returns depend on the user far more
        than on the page; relative tokens make them comparable across users."""
        self.rtg_baseline: list[float] | None = None
        """The baseline's coefficients (obs_dim weights, then the intercept; seconds); None:
        fitted on the input when ``advantage_tokens`` (``measure_tokens``)."""
        self.q_labels: str | None = None
        """Our option (issue 18), off in GLAN as published: the directory of an exported CQL
        model (e.g. the run's ``models/cql``). The return token of session t is relabelled with
        that model's Q(s_t, a_t) in seconds (the expected remaining usage of the day given the
        state and the page, ``reward_scale`` undone) instead of the observed remaining return
        R̂_t: a label that averages out the luck of the rest of the day. Inference is unchanged
        (the GLAN loop's R̂_t, so the export needs nothing new)."""
        self.act_critic: str | None = None
        """Our option (issue 29; ACT, Gao et al. 2024), off in GLAN as published: the directory
        of an exported CQL model over obs (e.g. the run's ``models/cql``). The return token of
        session t becomes the critic's advantage of the logged page, Q(s_t, a_t) − V(s_t) in
        seconds (V: the mean of Q(s_t, ·) over the pages; ``QLabeller.advantage``), and a
        command head (``command_expectile``) of that advantage is fitted before training: at
        inference every token is ĉ(s_t), the GLAN loop's R̂ (L-RTG, HRM) is not read, and no
        critic is needed."""
        self.state_target: bool = False
        """Our option (issue 29; Reinformer's per-state target, Zhuang et al. 2024), off in
        GLAN as published: the tokens stay the observed remaining return R̂_t, and a command
        head (``command_expectile``) of that return is fitted before training: at inference
        every token is ĉ(s_t), a high return attainable from this state, instead of GLAN's
        R̂₁ = gain × forecast decremented by HRM (L-RTG and HRM are not read)."""
        self.command_expectile: float = 0.9
        """τ of the command head ĉ(s), the τ-expectile given the state of the training tokens
        (``models.command_head``; ``act_critic`` or ``state_target``): 0.5 asks for their average
        in this state, → 1 for the best seen (ACT's and Reinformer's 0.9)."""
        self.command_head: list[float] | None = None
        """The command head (obs_dim weights, then the intercept; seconds), stored in the
        export (``DTRecord.command``); None: fitted on the input (``measure_tokens``)."""
        self.bucket_by_length: bool = True
        """Batch windows of similar length together (batches in random order), so the learner's
        trimming of shared padding skips most of the K-session window; False gives i.i.d.
        batches at the cost of computing every batch at its longest day's length."""

    def measure_tokens(self) -> DTConfig:
        """Fit what the token variant needs on ``input_`` (once, on the driver, before the
        algorithm is built): with ``advantage_tokens`` and no ``rtg_baseline``, the baseline;
        with ``act_critic`` or ``state_target`` and no ``command_head``, the command head.
        Returns self."""
        if self.advantage_tokens and self.rtg_baseline is None:
            from glan_ray.rllib.dt.baseline import measure_baseline

            self.rtg_baseline = measure_baseline(
                self.input_, self.reward_column, self.skip_deterministic_days, self.app.obs_dim
            )
        if self.commanded and self.command_head is None:
            from glan_ray.models.command_head import measure_command

            self.command_head = measure_command(
                self.input_, self.command_expectile, self.skip_deterministic_days,
                self.act_critic, self.reward_column, self.app,
            )  # fmt: skip
        return self

    @property
    def commanded(self) -> bool:
        """The DT is asked for a command head's ĉ(s) at inference (ACT or the per-state
        target)."""
        return bool(self.act_critic) or self.state_target

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from glan_ray.rllib.dt.torch.dt_torch_rl_module import DTTorchRLModule

        return RLModuleSpec(module_class=DTTorchRLModule)

    def get_default_learner_class(self) -> type:
        from glan_ray.rllib.dt.torch.dt_torch_learner import DTTorchLearner

        return DTTorchLearner

    def validate(self) -> None:
        super().validate()
        if self.reward_column not in REWARD_COLUMNS:
            self._value_error(
                f"reward_column must be one of {REWARD_COLUMNS}; got {self.reward_column!r}"
            )
        if self.target_gain <= 0:
            self._value_error(f"target_gain must be > 0; got {self.target_gain}")
        if self.max_weight < 1:
            self._value_error(f"max_weight must be >= 1; got {self.max_weight}")
        if self.rtg_scale <= 0:
            self._value_error(f"rtg_scale must be > 0; got {self.rtg_scale}")
        if self.q_labels is not None and self.advantage_tokens:
            self._value_error("q_labels and advantage_tokens are alternatives; set one")
        token_options = [bool(self.q_labels), self.advantage_tokens, bool(self.act_critic),
                         self.state_target]  # fmt: skip
        if sum(token_options) > 1:
            self._value_error("q_labels, advantage_tokens, act_critic and state_target are "
                              "alternatives; set one")  # fmt: skip
        if not 0.0 < self.command_expectile < 1.0:
            self._value_error(f"command_expectile must be in (0, 1); got "
                              f"{self.command_expectile}")  # fmt: skip
        if self.command_head is not None:
            try:
                DTRecord(command=tuple(self.command_head), app_spec=self.app_spec)
            except (TypeError, ValueError) as e:
                self._value_error(str(e))
        if self.rtg_baseline is not None:
            try:
                DTRecord(rtg_baseline=tuple(self.rtg_baseline), app_spec=self.app_spec)
            except (TypeError, ValueError) as e:
                self._value_error(str(e))
        try:
            dt_config(self.model_config, self.observation_space, self.action_space)
        except (TypeError, ValueError) as e:
            self._value_error(f"rl_module(model_config=...) is not a valid DT architecture: {e}")


class DT(OfflineAlgorithm):
    """Offline Decision Transformer (GLAN's policy); see ``DTConfig``."""

    @classmethod
    def get_default_config(cls) -> DTConfig:
        return DTConfig()

    def export_model(self, path: str) -> str:
        """Write the bare DecisionTransformer (``glan_ray.models.checkpoint`` format)."""
        module = self.get_module()
        save_checkpoint(
            path,
            "dt",
            module.dt,
            dataclasses.asdict(module.dt.cfg),
            {k: getattr(self.config, k) for k in type(self.config).own_training_keys()},
            normalizer=None,
            extra=DTRecord(
                rtg_scale=self.config.rtg_scale,
                target_gain=self.config.target_gain,
                rtg_baseline=tuple(self.config.rtg_baseline or ())
                if self.config.advantage_tokens
                else (),
                command=tuple(self.config.command_head or ()) if self.config.commanded else (),
                app_spec=self.config.app.to_dict(),  # the coefficients' width is its obs_dim
            ),
        )
        return path
