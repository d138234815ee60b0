"""One deployment per model: L-RTG, the DT policy, HRM, and KLAN's fused policy (behind a flag).

Each loads an exported checkpoint named in its ``user_config`` (``{"path": ...}``), so
``reconfigure`` swaps a checkpoint without a redeploy. DT and HRM take lists of users (each
ingress replica coalesces its concurrent requests into one call) and batch the calls of several
ingress replicas again with ``@serve.batch`` (no wait, so a lone request is never delayed): one
forward for all users entering at once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import ray
import torch
from ray import serve

from glan_ray import storage
from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.models.app_check import check_export
from glan_ray.models.dt import DecisionTransformer
from glan_ray.models.exports import DTRecord
from glan_ray.policy import glan_step
from glan_ray.policy.glan import window_logits
from glan_ray.policy.klan import KlanPolicy, check_cql_inputs, q_values
from glan_ray.policy.runner import ModelRunner
from glan_ray.serving.batching import n_users, per_item, split
from glan_ray.serving.features import daily_columns, session_columns

logger = logging.getLogger(__name__)

SERVE_APP = "the Serve app"
"""How a model's refusal names the app it was to serve (``models.app_check``)."""


def app_of(config: Mapping[str, Any] | None) -> AppSpec:
    """The app spec a deployment serves: its ``user_config``'s (or constructor's) ``app``, the
    spec as plain data (``AppSpec.to_dict``, as ``build_app`` passes it); the PLPM app when it
    names none (a deployment configured before the Serve app read its spec from the models)."""
    data = (config or {}).get("app")
    return plpm_spec() if data is None else _spec(json.dumps(data, sort_keys=True))


@functools.cache
def _spec(canonical: str) -> AppSpec:
    return AppSpec.from_dict(json.loads(canonical))


def check_export_app(path: str, app: AppSpec | None = None) -> None:
    """Refuse the export at ``path`` (a model directory) unless it was trained on ``app`` (the
    Serve app's spec; None: the PLPM app), reading its ``config.json`` only (``build_app``:
    before any replica)."""
    check_export(path, app or plpm_spec(), SERVE_APP)


def day_features(feats: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """B users' DayFeatures dicts -> the column arrays ``Policy.begin_day`` receives."""
    cols = {k: np.asarray([f[k] for f in feats]) for k in feats[0]}
    cols["user_id"] = np.arange(len(feats))
    return cols


def checkpoint_version(path: str | None) -> str | None:
    """``path#hash``: the checkpoint's path and a content hash of its weights (``model.pt``), as
    the decision log records which model served."""
    if not path:
        return None
    digest = hashlib.blake2b(storage.read_bytes(storage.join(path, "model.pt")), digest_size=8)
    return f"{path}#{digest.hexdigest()}"


class _Loaded:
    """A deployment of one exported model; ``user_config``: ``path`` (the export; None or
    absent: disabled) and ``app`` (the Serve app's spec as plain data; ``app_of``)."""

    kind = ""
    version_: str | None = None
    app: AppSpec

    def __init__(self, user_config: dict[str, Any] | None = None) -> None:
        # Small models on a shared CPU: intra-op threads only contend with the other replicas.
        torch.set_num_threads(1)
        self.runner: ModelRunner | None = None
        self.app = plpm_spec()
        if user_config:
            self.reconfigure(user_config)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        path = user_config.get("path")
        self.app = app_of(user_config)
        self.runner = ModelRunner(path, self.kind, self.app, SERVE_APP) if path else None
        self.version_ = checkpoint_version(path)
        logger.info("%s: loaded %s", self.kind, path or "nothing (disabled)")

    def loaded(self) -> str | None:
        return self.runner.path if self.runner else None

    async def version(self) -> str | None:
        """The loaded checkpoint's ``checkpoint_version`` (None: no checkpoint)."""
        return self.version_


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class LRTGModel(_Loaded):
    """R̂₁ = ŷ_wt (seconds); without a checkpoint, the 7-day mean usage ("w/o L-RTG")."""

    kind = "lrtg"

    async def r1(self, features: dict[str, Any]) -> tuple[float, str]:
        if self.runner is None:
            return float(features["usage_7d"]), "usage_7d"
        cols = daily_columns([features])
        with torch.no_grad():
            return float(glan_step.lrtg_forecast_s(self.runner(cols)["wt"])[0]), "lrtg"


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=64)
class HRMModel(_Loaded):
    """r̂ = (1 − ŷ_sw)·Σ_j T̂^j in seconds for a finished session; naive usage without HRM."""

    kind = "hrm"

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0, batch_size_fn=n_users)
    async def reward(self, calls: list[list[dict[str, Any]]]) -> list[list[float]]:
        """Each call is a list of sessions (an ingress's coalesced batch): one forward for all;
        a session that fails gets its own exception (``per_item``), the others their reward."""
        return split(per_item(self.rewards, [r for call in calls for r in call]), calls)

    def rewards(self, reqs: list[dict[str, Any]]) -> list[float]:
        """r̂ (s) of each session, in-process (the batched handle call and a colocated ingress)."""
        if self.runner is None:
            return [float(r["usage_time"]) for r in reqs]
        cols = session_columns(self.app, reqs)
        return [float(x) for x in glan_step.session_reward_s(self.runner(cols))]


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
class DTModel(_Loaded):
    """The Decision Transformer: page probabilities for the current entry of a user-day.

    ``user_config``: ``path`` (the DT export), and for critic-guided selection ``critic`` (a CQL
    export over obs alone) with ``critic_lambda`` (λ ≥ 0, default ``glan_step.CRITIC_LAMBDA``):
    π = softmax of ``glan_step.critic_guided_scores``, as the simulator's ``glan_cg`` arm."""

    kind = "dt"
    CONFIG = ("path", "critic", "critic_lambda", "app")
    critic: ModelRunner | None = None
    critic_lambda: float = glan_step.CRITIC_LAMBDA
    critic_temperature: float = 1.0
    """T of the critic's Â(s, a)/T (its export's)."""

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Load the checkpoints; on a replica given a GPU (``num_gpus``), move the DT there."""
        unknown = sorted(set(user_config) - set(self.CONFIG))
        if unknown:
            raise ValueError(f"dt user_config: unknown field(s) {unknown}; valid: {self.CONFIG}")
        critic = user_config.get("critic")
        lam = glan_step.critic_lambda(user_config.get("critic_lambda"))
        app = app_of(user_config)
        self.critic = ModelRunner(critic, "cql", app, SERVE_APP) if critic else None
        self.critic_lambda = lam
        if self.critic is not None:
            arm = "glan_cg (Serve's critic)"
            self.critic_temperature = check_cql_inputs(self.critic, False, arm).temperature
        super().reconfigure(user_config)
        if self.critic is not None:  # the decision log names the critic and λ with the DT
            self.version_ = f"{self.version_}+critic={checkpoint_version(critic)}@lambda={lam:g}"
        on_gpu = ray.is_initialized() and ray.get_gpu_ids()  # in-process (tests): no Ray start
        if self.runner is not None and on_gpu and torch.cuda.is_available():
            self.runner.model.to("cuda")
            logger.info("dt: on %s", torch.cuda.get_device_name())

    def config(self) -> dict[str, Any]:
        """What this replica serves, as its ``user_config`` names it."""
        return {"path": self.loaded(), "critic": self.critic.path if self.critic else None,
                "critic_lambda": self.critic_lambda, "app": self.app.to_dict()}  # fmt: skip

    async def target_gain(self) -> float:
        """g of R̂₁ = g · ŷ_wt, from the DT's export (``glan_step.target_gain``)."""
        return glan_step.target_gain(self._export()[1] if self.runner else DTRecord())

    def _export(self) -> tuple[DecisionTransformer, DTRecord]:
        """The loaded DT and its record (``ModelRunner`` types them as any export's)."""
        if self.runner is None:
            raise RuntimeError("DT deployment has no checkpoint (user_config.path)")
        net, record = self.runner.model, self.runner.record
        assert isinstance(net, DecisionTransformer) and isinstance(record, DTRecord)
        return net, record

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0, batch_size_fn=n_users)
    async def decide(self, calls: list[list[dict[str, Any]]]) -> list[list[list[float]]]:
        """Each call is a list of entries (an ingress's coalesced batch): one forward for all;
        an entry that fails gets its own exception (``per_item``), the others their probs."""
        return split(per_item(self.probs, [r for call in calls for r in call]), calls)

    def probs(self, reqs: list[dict[str, Any]]) -> list[list[float]]:
        """Page probabilities of each entry, in-process (the batched handle call and a colocated
        ingress)."""
        net, record = self._export()
        b, s = len(reqs), max(len(r["actions"]) for r in reqs)
        rewards = np.zeros((b, s))
        past_obs = np.zeros((b, s, self.app.obs_dim), dtype=np.float32)
        past_act = np.zeros((b, s), dtype=np.int64)
        for i, r in enumerate(reqs):
            n = len(r["actions"])
            if n:
                rewards[i, :n] = r["rewards"]
                past_obs[i, :n] = r["obs"]
                past_act[i, :n] = r["actions"]
        logits = window_logits(
            net,
            np.asarray([r["r1"] for r in reqs]),
            rewards,
            past_obs,
            past_act,
            np.asarray([len(r["actions"]) for r in reqs]),
            np.asarray([r["obs_now"] for r in reqs], dtype=np.float32),
            record.rtg_scale,
            record.rtg_baseline,
            record.command,
        )  # (B, A)
        if self.critic is not None:
            obs_now = np.asarray([r["obs_now"] for r in reqs], dtype=np.float32)
            logits = glan_step.critic_guided_scores(
                logits, q_values(self.critic, obs_now), self.critic_lambda,
                self.critic_temperature,
            )  # fmt: skip  # (B, A)
        return torch.softmax(logits, -1).tolist()


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class KlanModel:
    """KLAN's fused policy f = w·s + (1 − w)·d (ISP, IIT-CQL, AM in one deployment)."""

    def __init__(self, user_config: dict[str, Any] | None = None) -> None:
        torch.set_num_threads(1)
        self.policy: KlanPolicy | None = None
        self.version_: str | None = None
        if user_config:
            self.reconfigure(user_config)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        paths = [user_config.get(k) for k in ("isp", "cql", "am")]
        isp, cql, am = paths
        self.policy = KlanPolicy(isp, cql, am) if isp and cql and am else None
        self.version_ = (
            ",".join(f"{k}={checkpoint_version(p)}" for k, p in zip(("isp", "cql", "am"), paths,
                                                                     strict=True))
            if all(paths) else None
        )  # fmt: skip

    async def version(self) -> str | None:
        return self.version_

    async def decide(self, req: dict[str, Any]) -> list[float]:
        """π: KLAN's fused scores f normalised (``KlanPolicy.pi``); the ingress explores."""
        from glan_ray.sim.interface import IntraDayHistory, Observation

        if self.policy is None:
            raise RuntimeError("KLAN deployment has no checkpoints (isp, cql, am)")
        feats = req["features"]
        self.policy.begin_day(0, day_features([feats]))
        obs = Observation(
            rows=np.zeros(1, dtype=np.int64),
            user_id=np.zeros(1, dtype=np.int64),
            obs=np.asarray([req["obs_now"]], dtype=np.float32),
            hour=np.asarray([req["hour"]]),
            weekday=int(feats["weekday"]),
            entries_today=np.asarray([req["t"]]),
            last_exit=np.zeros(1, dtype=np.int64),
            most_visited=np.zeros(1, dtype=np.int64),
        )
        history = IntraDayHistory.empty(1, 1, len(req["obs_now"]))
        f = np.asarray(self.policy.pi(obs, history)[0], np.float64)
        return (f / f.sum()).tolist()
