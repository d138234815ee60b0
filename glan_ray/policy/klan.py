"""KLAN (the baseline): ISP static scores + IIT interest scores fused by AM, argmax (SPEC §3.4)."""

from __future__ import annotations

import numpy as np
import torch

from glan_ray.models.cql import interest_scores
from glan_ray.models.klan_am import fuse
from glan_ray.models.klan_isp import static_scores
from glan_ray.policy.context import daily_columns, session_columns
from glan_ray.policy.heuristics import one_hot
from glan_ray.policy.models import ModelRunner
from glan_ray.sim.policy import IntraDayHistory, Observation, Policy


class CQLPolicy(Policy):
    """IIT alone: argmax_a Q(s, a)."""

    name = "cql"

    def __init__(self, cql: str) -> None:
        self.cql = ModelRunner(cql, "cql")
        self.temperature = float(self.cql.extra.get("temperature", 1.0))

    def q(self, obs: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.cql.model(torch.from_numpy(np.ascontiguousarray(obs, np.float32)))

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        return one_hot(self.q(obs.obs).argmax(-1).numpy())


class KlanPolicy(CQLPolicy):
    """f_k = w_k·s_k + (1 − w_k)·d_k, a* = argmax f (KLAN eq. 13)."""

    name = "klan"

    def __init__(self, isp: str, cql: str, am: str, isp_temperature: float = 1.0) -> None:
        super().__init__(cql)
        self.isp = ModelRunner(isp, "isp")
        self.am = ModelRunner(am, "am")
        self.isp_temperature = isp_temperature
        self._features: dict[str, np.ndarray] = {}
        self._day: dict[str, np.ndarray] | None = None
        self._static: torch.Tensor | None = None

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        self._features, self._day, self._static = features, None, None

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        if self._day is None:  # static scores once per user-day (they depend on x, t only)
            self._day = daily_columns(self._features, obs.weekday)
            self._static = static_scores(self.isp(self._day), self.isp_temperature)  # (N, 3)
        d = interest_scores(self.q(obs.obs), self.temperature)  # (B, 3)
        cols = session_columns(self._day, obs.rows, obs.obs, obs.hour, obs.entries_today)
        cols["action"] = np.zeros(len(obs.rows), dtype=np.int64)  # AM scores every page
        w = self.am(cols)["w"]  # (B, 3)
        f = fuse(w, self._static[torch.from_numpy(obs.rows)], d)
        return one_hot(f.argmax(-1).numpy())
