"""KLAN (the baseline): ISP static scores + IIT interest scores fused by AM, argmax (SPEC §3.4),
and its two ablations (KLAN Table 2): IIT alone (``CQLPolicy``) and ISP alone (``ISPPolicy``)."""

from __future__ import annotations

import numpy as np
import torch

from glan_ray.models.cql import interest_scores
from glan_ray.models.klan_am import fuse
from glan_ray.models.klan_isp import static_scores
from glan_ray.policy.context import daily_columns, session_columns
from glan_ray.policy.explore import ExploringPolicy
from glan_ray.policy.runner import ModelRunner
from glan_ray.sim.interface import IntraDayHistory, Observation


class CQLPolicy(ExploringPolicy):
    """IIT alone: argmax_a Q(s, a); π = the interest scores softmax(Q/T)."""

    name = "cql"

    def __init__(self, cql: str) -> None:
        self.cql = ModelRunner(cql, "cql")
        self.temperature = self.cql.record.temperature

    def q(self, obs: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.cql.model(torch.from_numpy(np.ascontiguousarray(obs, np.float32)))

    def pi(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        return interest_scores(self.q(obs.obs), self.temperature).numpy()


class StaticScores:
    """KLAN-ISP's static page scores s (N, 3) of a day's users, computed once per user-day on the
    first decision (they depend on the daily features x and the day's treatment context only)."""

    def __init__(self, isp: str, temperature: float = 1.0) -> None:
        self.isp = ModelRunner(isp, "isp")
        self.temperature = temperature
        self.features: dict[str, np.ndarray] = {}
        self.day: dict[str, np.ndarray] | None = None
        self.scores: torch.Tensor | None = None

    def begin_day(self, features: dict[str, np.ndarray]) -> None:
        self.features, self.day, self.scores = features, None, None

    def of(self, weekday: int) -> tuple[dict[str, np.ndarray], torch.Tensor]:
        """Today's daily columns and static scores (N, 3)."""
        if self.day is None or self.scores is None:
            self.day = daily_columns(self.features, weekday)
            self.scores = static_scores(self.isp(self.day), self.temperature)
        return self.day, self.scores


class ISPPolicy(ExploringPolicy):
    """ISP alone (KLAN-ISP): a* = argmax_k s_k, one page per user-day; π = s."""

    name = "klan_isp"

    def __init__(self, isp: str, isp_temperature: float = 1.0) -> None:
        self.static = StaticScores(isp, isp_temperature)

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        self.static.begin_day(features)

    def pi(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        _, s = self.static.of(obs.weekday)  # (N, 3)
        return s[torch.from_numpy(obs.rows)].numpy()


class KlanPolicy(CQLPolicy):
    """f_k = w_k·s_k + (1 − w_k)·d_k, a* = argmax f (KLAN eq. 13); π = f / Σ f."""

    name = "klan"

    def __init__(self, isp: str, cql: str, am: str, isp_temperature: float = 1.0) -> None:
        super().__init__(cql)
        self.static = StaticScores(isp, isp_temperature)
        self.am = ModelRunner(am, "am")

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        self.static.begin_day(features)

    def pi(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        day, s = self.static.of(obs.weekday)  # s: (N, 3)
        d = interest_scores(self.q(obs.obs), self.temperature)  # (B, 3)
        cols = session_columns(day, obs.rows, obs.obs, obs.hour, obs.entries_today)
        cols["action"] = np.zeros(len(obs.rows), dtype=np.int64)  # AM scores every page
        w = self.am(cols)["w"]  # (B, 3)
        return fuse(w, s[torch.from_numpy(obs.rows)], d).numpy()  # (B, 3)
