"""GLAN's policy loop per user-day (GLAN §5.3.1, SPEC §3.3) and its ablations.

Start of day: R̂₁ = L-RTG's ŷ_wt (or the 7-day mean usage: "w/o L-RTG"). Each app entry: the DT
sees the day's sessions so far as (R̂, s, a) tokens and picks the page from the s_t token. Each
finished session: r̂ from HRM (or the naive session duration: "w/o HRM"), R̂_{t+1} = R̂_t − r̂_t.

In the simulator all users entering at one step are decided in one batched forward over their
current window (the sessions since the last multiple of K, exactly the training windows), which
is the same computation the KV cache performs incrementally when serving one user.
"""

from __future__ import annotations

import numpy as np
import torch

from glan_ray.policy.context import completed_session_columns, daily_columns
from glan_ray.policy.heuristics import one_hot
from glan_ray.policy.models import ModelRunner
from glan_ray.sim.policy import IntraDayHistory, Observation, Policy

HOUR = 3600.0


class GlanPolicy(Policy):
    """DT conditioned on R̂ from L-RTG (or 7-day mean) and decremented by HRM (or naive) reward."""

    def __init__(
        self,
        dt: str,
        lrtg: str | None = None,
        hrm: str | None = None,
        name: str = "glan",
        sample: bool = False,
    ) -> None:
        self.name = name
        self.dt = ModelRunner(dt, "dt")
        self.net = self.dt.model
        self.k = self.net.cfg.context_len
        self.rtg_scale = float(self.dt.extra.get("rtg_scale", HOUR))
        self.lrtg = ModelRunner(lrtg, "lrtg") if lrtg else None
        self.hrm = ModelRunner(hrm, "hrm") if hrm else None
        self.sample = sample
        self._day: dict[str, np.ndarray] = {}
        self._features: dict[str, np.ndarray] = {}
        self._r1: np.ndarray | None = None
        self._reward: np.ndarray | None = None  # (N, S) seconds, NaN until scored

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        self._features, self._r1, self._reward = features, None, None

    def _start_day(self, weekday: int, history: IntraDayHistory) -> None:
        self._day = daily_columns(self._features, weekday)
        if self.lrtg is not None:
            r1 = self.lrtg(self._day)["wt"].numpy() * HOUR  # ŷ_wt is in hours
        else:
            r1 = np.asarray(self._day["usage_7d"], dtype=np.float64)  # 7-day mean, seconds
        self._r1 = r1.astype(np.float64)
        self._reward = np.full(history.usage.shape, np.nan)

    def _score_sessions(self, rows: np.ndarray, history: IntraDayHistory) -> None:
        """Fill r̂ of the finished sessions of ``rows`` that are not scored yet."""
        length = history.length[rows]
        slots = np.arange(self._reward.shape[1])
        todo = (slots[None, :] < length[:, None]) & np.isnan(self._reward[rows])  # (B, S)
        r_idx, t_idx = np.nonzero(todo)
        if r_idx.size == 0:
            return
        users = rows[r_idx]
        if self.hrm is None:
            self._reward[users, t_idx] = history.usage[users, t_idx]
            return
        cols = completed_session_columns(self._day, history, users, t_idx)
        out = self.hrm(cols)
        r = ((1.0 - out["p_sw"]) * out["dur"].sum(-1)).numpy() * 60.0  # minutes -> seconds
        self._reward[users, t_idx] = r

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        if self._r1 is None:
            self._start_day(obs.weekday, history)
        rows = obs.rows
        self._score_sessions(rows, history)
        t = history.length[rows].astype(np.int64)  # (B,) current 0-based session
        start = (t // self.k) * self.k
        n = t - start + 1  # (B,) sessions in the current window
        width = int(n.max())
        pos = np.arange(width)[None, :]  # (1, W)
        step = start[:, None] + pos  # (B, W) session index of each position
        valid = pos < n[:, None]
        past = valid & (step < t[:, None])
        s_idx = np.minimum(step, history.obs.shape[1] - 1)
        r = np.where(np.isnan(self._reward[rows]), 0.0, self._reward[rows])  # (B, S)
        spent = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(r, 1)], 1)  # (B, S + 1)
        rtg = self._r1[rows, None] - np.take_along_axis(spent, np.minimum(step, r.shape[1]), 1)
        x_obs = np.where(past[..., None], history.obs[rows[:, None], s_idx], 0.0)
        x_obs[np.arange(len(rows)), n - 1] = obs.obs  # the current entry
        acts = np.where(past, history.action[rows[:, None], s_idx], 0).astype(np.int64)
        with torch.no_grad():
            logits = self.net(
                torch.from_numpy((np.where(valid, rtg, 0.0) / self.rtg_scale).astype(np.float32)),
                torch.from_numpy(x_obs.astype(np.float32)),
                torch.from_numpy(acts),
                torch.from_numpy(np.where(valid, step, 0)),
            )  # (B, W, A)
        last = logits[torch.arange(len(rows)), torch.from_numpy(n - 1)]  # (B, A)
        if self.sample:
            return torch.softmax(last, -1).numpy()
        return one_hot(last.argmax(-1).numpy())
