"""KLAN (the baseline): ISP static scores + IIT interest scores fused by AM, argmax (SPEC §3.4),
its two ablations (KLAN Table 2): IIT alone (``CQLPolicy``) and ISP alone (``ISPPolicy``), and
the control arm ``klan_iit_hist`` (``CQLHistPolicy``): IIT over obs ⊕ the history features."""

from __future__ import annotations

import numpy as np
import torch

from glan_ray.data.history import history_features
from glan_ray.models.cql import QNetwork, interest_scores
from glan_ray.models.exports import CQLRecord
from glan_ray.models.klan_am import fuse
from glan_ray.models.klan_isp import static_scores
from glan_ray.policy.context import daily_columns, session_columns
from glan_ray.policy.explore import ExploringPolicy
from glan_ray.policy.runner import ModelRunner
from glan_ray.schema import HIST_FEATURES, OBS_DIM
from glan_ray.sim.interface import IntraDayHistory, Observation


def check_cql_inputs(runner: ModelRunner, history: bool, arm: str) -> CQLRecord:
    """Refuse a CQL export whose inputs are not what arm ``arm`` feeds it: obs alone
    (``history=False``) or obs ⊕ ``schema.HIST_FEATURES``, saying which arm and export fit;
    returns its record."""
    record, model = runner.record, runner.model
    assert isinstance(record, CQLRecord), type(record)  # a "cql" export's (models.exports)
    assert isinstance(model, QNetwork), type(model)
    names, where = record.history_features, runner.path
    if history and not names:
        msg = (f"this CQL export reads obs alone (trained without history); arm {arm!r} needs "
               "one trained on obs + the history features: glan-ray train cql --history "
               "(export cql_hist)")  # fmt: skip
    elif names and not history:
        msg = (f"this CQL export reads obs + {len(names)} history features (trained with "
               f"history=true); play it as the klan_iit_hist arm, not as {arm!r}")  # fmt: skip
    elif names and names != HIST_FEATURES:
        msg = (f"trained on the history features {list(names)}, but schema.HIST_FEATURES is "
               f"now {list(HIST_FEATURES)}; retrain it")  # fmt: skip
    elif model.cfg.obs_dim != OBS_DIM + len(names):
        msg = (f"its Q-network reads {model.cfg.obs_dim} inputs, but obs ({OBS_DIM}) + "
               f"its history features ({len(names)}) make {OBS_DIM + len(names)}; the export "
               "is inconsistent, retrain it")  # fmt: skip
    else:
        return record
    raise ValueError(f"{where}: {msg}")


def q_values(runner: ModelRunner, obs: np.ndarray) -> torch.Tensor:
    """A CQL export's Q(s, ·) (B, A) of states ``obs`` (B, D) (no grad): KLAN-IIT's scores and
    the critic of the critic-guided GLAN arms (``policy.glan``, Serve's ``DTModel``)."""
    with torch.no_grad():
        return runner.model(torch.from_numpy(np.ascontiguousarray(obs, np.float32)))


class CQLPolicy(ExploringPolicy):
    """IIT alone: argmax_a Q(s, a); π = the interest scores softmax(Q/T)."""

    name = "cql"
    history = False
    """Whether the state s is obs ⊕ the history features (``CQLHistPolicy``) or obs alone."""

    def __init__(self, cql: str) -> None:
        self.cql = ModelRunner(cql, "cql")
        self.temperature = check_cql_inputs(self.cql, self.history, self.name).temperature

    def q(self, obs: np.ndarray) -> torch.Tensor:
        return q_values(self.cql, obs)  # (B, A)

    def states(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        """The Q-network's input (B, D): the observation."""
        return obs.obs

    def pi(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        return interest_scores(self.q(self.states(obs, history)), self.temperature).numpy()


class CQLHistPolicy(CQLPolicy):
    """``klan_iit_hist``: IIT over obs ⊕ the history features of the user's completed sessions
    today (``data.history.history_features`` on the simulator's ``IntraDayHistory``, as its
    training rows were computed from the ``sessions`` dataset); greedy on Q, π = softmax(Q/T)."""

    name = "klan_iit_hist"
    history = True

    def states(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        r = obs.rows
        hist = history_features(history.length[r], history.action[r], history.dur[r],
                                history.y_sw[r], history.exit_page[r],
                                history.obs[r])  # fmt: skip  # (B, H)
        return np.concatenate([obs.obs, hist], axis=1)  # (B, D + H)


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
