"""The production heuristics KLAN replaced (SPEC §3.4): last exited page, most visited page."""

from __future__ import annotations

import numpy as np

from glan_ray.schema import N_PAGES
from glan_ray.sim.interface import IntraDayHistory, Observation, Policy


def one_hot(idx: np.ndarray, n: int = N_PAGES) -> np.ndarray:
    out = np.zeros((len(idx), n))
    out[np.arange(len(idx)), np.asarray(idx, dtype=np.int64)] = 1.0
    return out


class LastExitPolicy(Policy):
    """Land on the page the user last exited (yesterday's last page on the first entry)."""

    name = "last_exit"

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        return one_hot(obs.last_exit)


class MostVisitedPolicy(Policy):
    """Land on the page the user landed on most over the last 14 days."""

    name = "most_visited"

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        return one_hot(obs.most_visited)
