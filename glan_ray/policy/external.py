"""Policies trained outside glan-ray (e.g. by a peer library), played as arms of the A/B.

An external policy is one ``torch.export`` program file (``.pt2``, written by ``save_external``,
the batch dimension dynamic) whose ``policy.json`` extra file holds an ``ExternalSpec``. Two
kinds:

- ``q``: ``module(obs (B, D) float32) -> scores (B, A)``; the arm lands on the argmax (a
  Q-learner's greedy policy);
- ``dt``: a Decision Transformer over the user's sessions of today, called as
  ``module(obs (B, K, D), actions (B, K) int64, rtg (B, K, 1), timesteps (B, K) int64,
  pad (B, K)) -> logits (B, K, A)`` with the current entry last and the window left-padded
  (``pad`` = 1 on padding), as d3rlpy's ``StatefulTransformerWrapper`` feeds it: the last
  ``context_len`` steps, R̂_t = target − Σ_{j<t} r_j (r_j = session usage × ``return_scale``),
  timestep t + 1 capped at ``max_timestep``, the current action 0; the arm lands on the
  argmax of the last position. The target is ``target_gain`` × the user's ``target_column``
  daily feature (default the 7-day mean usage, as our ``dt`` arm) × ``return_scale``.

Only torch is needed to play one: the library that trained it is not imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from glan_ray.checks import check_fields, ranged
from glan_ray.policy.heuristics import one_hot
from glan_ray.schema import N_PAGES, OBS_DIM
from glan_ray.sim.interface import IntraDayHistory, Observation, Policy

SPEC_FILE = "policy.json"
"""Name of the extra file of the exported program that holds the ``ExternalSpec``."""
Module = Callable[..., torch.Tensor]
KINDS = ("q", "dt")


@dataclass(frozen=True)
class ExternalSpec:
    """What an external TorchScript policy takes and how to feed it."""

    kind: str
    """``q`` (scores of the observation) or ``dt`` (Decision Transformer over today)."""
    source: str = ""
    """Free text: the library and algorithm that trained it (shown in reports)."""
    obs_dim: int = ranged(OBS_DIM, ge=OBS_DIM, le=OBS_DIM)
    """Observation width; must be ``schema.OBS_DIM``."""
    n_actions: int = ranged(N_PAGES, ge=N_PAGES, le=N_PAGES)
    """Number of pages; must be ``schema.N_PAGES``."""
    context_len: int = ranged(20, ge=1)
    """``dt``: steps K of the window the module was traced with."""
    max_timestep: int = ranged(64, ge=1)
    """``dt``: timesteps are capped here (the module's position table)."""
    return_scale: float = ranged(1.0 / 3600.0, gt=0.0)
    """``dt``: rewards and returns are multiplied by this (seconds -> the model's unit)."""
    target_gain: float = ranged(2.0, gt=0.0)
    """``dt``: R̂₁ = target_gain × the user's ``target_column`` (s) × return_scale."""
    target_column: str = "usage_7d"
    """``dt``: the daily feature (seconds) the target return is a multiple of."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}; got {self.kind!r}")
        check_fields(self)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> ExternalSpec:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"{SPEC_FILE}: expected a JSON object; got {type(raw).__name__}")
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{SPEC_FILE}: unknown field(s) {', '.join(unknown)}")
        return cls(**raw)


def example_inputs(spec: ExternalSpec, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Inputs of the shapes the ``spec``'s kind takes (see the module docstring)."""
    if spec.kind == "q":
        return (torch.zeros(batch, spec.obs_dim),)
    k = spec.context_len
    return (
        torch.zeros(batch, k, spec.obs_dim),  # obs
        torch.zeros(batch, k, dtype=torch.int64),  # actions
        torch.zeros(batch, k, 1),  # rtg
        torch.ones(batch, k, dtype=torch.int64),  # timesteps
        torch.zeros(batch, k),  # pad
    )


def output_shape(spec: ExternalSpec, batch: int) -> tuple[int, ...]:
    """The shape a module of ``spec`` returns for ``batch`` users."""
    if spec.kind == "q":
        return (batch, spec.n_actions)
    return (batch, spec.context_len, spec.n_actions)


def save_external(
    module: torch.nn.Module | torch.export.ExportedProgram, spec: ExternalSpec, path: str
) -> None:
    """Write ``module`` with its ``spec`` as one ``.pt2`` file. A ``torch.nn.Module`` is
    exported here (eval mode, any batch size); an ``ExportedProgram`` (e.g. exported by another
    library's venv) is taken as it is. Either is called once on ``example_inputs`` and refused
    unless it returns ``output_shape``."""
    if isinstance(module, torch.export.ExportedProgram):
        program = module
    else:
        module.eval()
        inputs = example_inputs(spec)
        batch = torch.export.Dim("batch", min=1)
        dynamic = tuple({0: batch} for _ in inputs)
        try:
            program = torch.export.export(module, inputs, dynamic_shapes=dynamic)
        except Exception as e:
            raise ValueError(
                f"cannot export the module with the inputs of a {spec.kind!r} "
                f"policy (see example_inputs): {e}"
            ) from e
    try:
        with torch.no_grad():
            got = tuple(program.module()(*example_inputs(spec, batch=3)).shape)
    except Exception as e:
        raise ValueError(
            f"the program does not take the inputs of a {spec.kind!r} policy "
            f"(see example_inputs): {e}"
        ) from e
    if got != output_shape(spec, 3):
        raise ValueError(
            f"a {spec.kind!r} policy must return {output_shape(spec, 3)} for 3 "
            f"users; the module returned {got}"
        )
    torch.export.save(program, path, extra_files={SPEC_FILE: spec.to_json()})


def read_external(path: str) -> tuple[Module, ExternalSpec]:
    """The callable module (CPU) and the spec of an external policy file."""
    extra = {SPEC_FILE: ""}
    try:
        program = torch.export.load(path, extra_files=extra)
    except Exception as e:  # torch raises several kinds for a file that is not a program
        raise ValueError(f"{path}: not a torch.export program file (see save_external): {e}") from e
    if not extra[SPEC_FILE]:
        raise ValueError(f"{path}: no {SPEC_FILE} in the exported program (see save_external)")
    return program.module(), ExternalSpec.from_json(extra[SPEC_FILE])


class ExternalQPolicy(Policy):
    """Greedy on the scores ``module(obs)``."""

    def __init__(self, module: Module, spec: ExternalSpec) -> None:
        self.module, self.spec, self.name = module, spec, "external_q"

    @torch.no_grad()
    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        scores = self.module(torch.from_numpy(np.asarray(obs.obs, dtype=np.float32)))  # (B, A)
        if tuple(scores.shape) != output_shape(self.spec, len(obs.rows)):
            raise ValueError(
                f"{self.name}: module returned shape {tuple(scores.shape)}; "
                f"expected {output_shape(self.spec, len(obs.rows))}"
            )
        return one_hot(scores.argmax(-1).numpy())


def dt_window(
    spec: ExternalSpec,
    target: np.ndarray,
    past_obs: np.ndarray,
    past_actions: np.ndarray,
    past_rewards: np.ndarray,
    t: np.ndarray,
    obs_now: np.ndarray,
) -> dict[str, np.ndarray]:
    """The left-padded window of B users' current entry (see the module docstring).

    target (B,) R̂₁ in the model's unit; past_obs (B, S, D), past_actions (B, S) and
    past_rewards (B, S) (model's unit) of today's sessions; t (B,) sessions finished;
    obs_now (B, D). Returns obs (B, K, D), actions (B, K), rtg (B, K, 1), timesteps (B, K),
    pad (B, K), the current entry at position K − 1.
    """
    k = spec.context_len
    t = np.asarray(t, dtype=np.int64)
    b = len(t)
    step = t[:, None] - (k - 1) + np.arange(k)[None, :]  # (B, K) session index per position
    real = step >= 0
    past = real & (step < t[:, None])
    s_idx = np.clip(step, 0, max(past_obs.shape[1] - 1, 0))
    rows = np.arange(b)[:, None]
    spent = np.concatenate([np.zeros((b, 1)), np.cumsum(past_rewards, 1)], 1)  # (B, S + 1)
    spent_before = np.take_along_axis(spent, np.clip(step, 0, past_rewards.shape[1]), 1)
    x_obs = np.zeros((b, k, obs_now.shape[-1]), dtype=np.float32)
    acts = np.zeros((b, k), dtype=np.int64)
    if past_obs.shape[1]:
        x_obs = np.where(past[..., None], past_obs[rows, s_idx], 0.0).astype(np.float32)
        acts = np.where(past, past_actions[rows, s_idx], 0).astype(np.int64)
    x_obs[:, k - 1] = obs_now
    rtg = np.where(real, np.asarray(target, dtype=np.float64)[:, None] - spent_before, 0.0)
    steps = np.where(real, np.minimum(step + 1, spec.max_timestep), 0)
    return {
        "obs": x_obs,
        "actions": acts,
        "rtg": rtg[..., None].astype(np.float32),
        "timesteps": steps.astype(np.int64),
        "pad": (~real).astype(np.float32),
    }


class ExternalDTPolicy(Policy):
    """Greedy on a Decision Transformer's logits at the current entry of the day."""

    def __init__(self, module: Module, spec: ExternalSpec) -> None:
        self.module, self.spec, self.name = module, spec, "external_dt"
        self._target: np.ndarray | None = None

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        if self.spec.target_column not in features:
            raise ValueError(
                f"{self.name}: target_column {self.spec.target_column!r} is not a daily feature"
            )
        base = np.asarray(features[self.spec.target_column], dtype=np.float64)
        self._target = self.spec.target_gain * base * self.spec.return_scale

    @torch.no_grad()
    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        if self._target is None:
            raise RuntimeError(f"{self.name}: probs before begin_day")
        rows = obs.rows
        w = dt_window(
            self.spec,
            self._target[rows],
            history.obs[rows],
            history.action[rows],
            history.usage[rows] * self.spec.return_scale,
            history.length[rows],
            np.asarray(obs.obs, dtype=np.float32),
        )
        logits = self.module(
            *(torch.from_numpy(w[k]) for k in ("obs", "actions", "rtg", "timesteps", "pad"))
        )
        want = output_shape(self.spec, len(rows))
        if tuple(logits.shape) != want:
            raise ValueError(
                f"{self.name}: module returned shape {tuple(logits.shape)}; expected {want}"
            )
        return one_hot(logits[:, -1].argmax(-1).numpy())


def load_external(path: str) -> Policy:
    """The arm of an external policy file (``ExternalQPolicy`` or ``ExternalDTPolicy``)."""
    module, spec = read_external(path)
    return (ExternalQPolicy if spec.kind == "q" else ExternalDTPolicy)(module, spec)


__all__ = [
    "ExternalDTPolicy",
    "ExternalQPolicy",
    "ExternalSpec",
    "dt_window",
    "load_external",
    "read_external",
    "save_external",
]
