"""Policies the simulator ships: the logging policy, fixed pages, and the oracle (with its greedy
twin, which sees the same hidden state but maximises only the immediate session)."""

from __future__ import annotations

import numpy as np

from glan_ray.schema import N_PAGES
from glan_ray.sim.config import SimConfig
from glan_ray.sim.dynamics import action_values
from glan_ray.sim.interface import IntraDayHistory, Observation, Policy


def _one_hot(idx: np.ndarray) -> np.ndarray:
    out = np.zeros((len(idx), N_PAGES))
    out[np.arange(len(idx)), idx] = 1.0
    return out


class LoggingPolicy(Policy):
    """The production heuristics with exposure bias (property 8).

    A mixture: resume the last exited page (``log_resume_last``), the most visited page
    (``log_most_visited``), uniform (``log_epsilon``), otherwise Featured. Its probabilities are
    the logged propensities.
    """

    name = "logging"

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        c = self.cfg
        featured = 1.0 - c.log_resume_last - c.log_most_visited - c.log_epsilon
        p = (
            c.log_resume_last * _one_hot(obs.last_exit)
            + c.log_most_visited * _one_hot(obs.most_visited)
            + c.log_epsilon / N_PAGES
        )
        p[:, 0] += featured
        return p


class FixedPagePolicy(Policy):
    """Always land on one page (the RCT treatments; 'always Featured' is page 0)."""

    def __init__(self, page: int):
        if not 0 <= page < N_PAGES:
            raise ValueError(f"page must be in [0, {N_PAGES}), got {page}")
        self.page = page
        self.name = f"fixed_{page}"

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        return _one_hot(np.full(len(obs.rows), self.page))


class UniformPolicy(Policy):
    """Uniformly random landing page."""

    name = "uniform"

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        return np.full((len(obs.rows), N_PAGES), 1.0 / N_PAGES)


class OraclePolicy(Policy):
    """Sees the hidden state and plans over the rest of the day and tomorrow (the ceiling)."""

    name = "oracle"
    privileged = True

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        if obs.latent is None:
            raise ValueError("OraclePolicy needs the latent state (privileged policy)")
        _, long_term = action_values(self.cfg, obs.latent)
        return _one_hot(long_term.argmax(1))


class GreedyImmediatePolicy(OraclePolicy):
    """Sees the hidden state but maximises only the expected immediate session usage."""

    name = "greedy_immediate"

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        if obs.latent is None:
            raise ValueError("GreedyImmediatePolicy needs the latent state (privileged policy)")
        immediate, _ = action_values(self.cfg, obs.latent)
        return _one_hot(immediate.argmax(1))


SIM_POLICIES: dict[str, str] = {
    "logging": "the production heuristics with exposure bias (default)",
    "featured": "always Featured",
    "explore": "always Explore",
    "following": "always Following",
    "uniform": "uniformly random page",
    "greedy": "sees the hidden state, maximises the immediate session",
    "oracle": "sees the hidden state, plans over the rest of the day",
}
"""Policies the simulator can run by name (``glan-ray simulate --policy``)."""


def make_policy(name: str, cfg: SimConfig) -> Policy:
    """A simulator policy by name; a clear error lists the valid names."""
    if name == "logging":
        return LoggingPolicy(cfg)
    if name in ("featured", "explore", "following"):
        return FixedPagePolicy(("featured", "explore", "following").index(name))
    if name == "uniform":
        return UniformPolicy()
    if name == "greedy":
        return GreedyImmediatePolicy(cfg)
    if name == "oracle":
        return OraclePolicy(cfg)
    raise ValueError(f"unknown policy {name!r}; expected one of {sorted(SIM_POLICIES)}")
