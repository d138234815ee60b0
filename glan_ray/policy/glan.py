"""GLAN's policy loop per user-day (GLAN §5.3.1, SPEC §3.3) and its ablations.

Start of day: R̂₁ = g · L-RTG's ŷ_wt (or g · the 7-day mean usage: "w/o L-RTG"), g the DT's
``target_gain`` (stored in its export; 1 = ask for the forecast itself). Each app entry: the DT
sees the day's sessions so far as (R̂, s, a) tokens and picks the page from the s_t token. Each
finished session: r̂ from HRM (or the naive session duration: "w/o HRM"), R̂_{t+1} = R̂_t − r̂_t.

In the simulator all users entering at one step are decided in one batch over their current
window (the sessions since the last multiple of K, exactly the training windows). Each user-day's
window is cached (``DTRowCache``): an entry feeds only its new tokens [a_{t−1}, R̂_t, s_t],
which gives the logits of the full forward over the window (``window_logits``, what Serve runs
per request) at a fraction of the cost.

A command head (a DT trained with ``act_critic``: ACT, the ``glan_act`` arm; or with
``state_target``: the per-state target, ``glan_target``): every token is the export's ĉ(s_t)
(``models.dt.return_tokens_s``); R̂₁ and r̂ are then not read, so the arm runs without L-RTG
and HRM.

Critic-guided selection (``critic``: a CQL export; the ``glan_cg`` arms): the page is
argmax_a [log π_DT(a | h) + λ·Â(s, a)/T] (``glan_step.critic_guided_scores``; Critic-Guided DT,
Wang et al. 2024; QT, Hu et al. 2024) and π is the softmax of those scores, so sampling from π
(``explore="softmax"``) explores around the critic-guided choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from glan_ray.models.dt import DecisionTransformer, DTRowCache, return_tokens_s
from glan_ray.models.exports import DTRecord
from glan_ray.policy import glan_step
from glan_ray.policy.context import completed_session_columns, daily_columns
from glan_ray.policy.explore import Exploration, ExploringPolicy
from glan_ray.policy.klan import check_cql_inputs, q_values
from glan_ray.policy.runner import ModelRunner
from glan_ray.sim.interface import IntraDayHistory, Observation

HOUR = glan_step.HOUR


@torch.no_grad()
def window_logits(
    net: DecisionTransformer,
    r1: np.ndarray,
    rewards: np.ndarray,
    past_obs: np.ndarray,
    past_actions: np.ndarray,
    t: np.ndarray,
    obs_now: np.ndarray,
    rtg_scale: float,
    baseline: Sequence[float] = (),
    command: Sequence[float] = (),
) -> torch.Tensor:
    """The DT's logits for the current entry of B user-days: (B, A).

    r1 (B,) initial RTG (s); rewards (B, S) rewards of the finished sessions (s, 0 beyond);
    past_obs (B, S, D) and past_actions (B, S) of today's sessions; t (B,) sessions finished;
    obs_now (B, D). The window is the sessions since the last multiple of K up to the current
    one, exactly as the training windows are cut; R̂ at session j is r1 − Σ_{j' < j} r_j'.
    ``baseline`` (``DTRecord.rtg_baseline``): tokens are R̂_j − b(s_j) (advantage tokens);
    ``command`` (``DTRecord.command``): tokens are ĉ(s_j) (``models.dt.return_tokens_s``).
    """
    k = net.cfg.context_len
    t = np.asarray(t, dtype=np.int64)
    b = len(t)
    start = (t // k) * k
    n = t - start + 1  # (B,) sessions in the current window
    width = int(n.max())
    pos = np.arange(width)[None, :]  # (1, W)
    step = start[:, None] + pos  # (B, W) session index of each position
    valid = pos < n[:, None]
    past = valid & (step < t[:, None])
    s_idx = np.minimum(step, max(past_obs.shape[1] - 1, 0))
    spent = np.concatenate([np.zeros((b, 1)), np.cumsum(rewards, 1)], 1)  # (B, S + 1)
    # eq. 30 applied session by session: R̂_j = R̂₁ − Σ_{j' < j} r̂_j'
    spent_before = np.take_along_axis(spent, np.minimum(step, rewards.shape[1]), 1)  # (B, W)
    rtg = glan_step.next_rtg(np.asarray(r1)[:, None], spent_before)
    x_obs = np.zeros((b, width, past_obs.shape[-1]), dtype=np.float32)
    if past_obs.shape[1]:
        x_obs = np.where(past[..., None], past_obs[np.arange(b)[:, None], s_idx], 0.0)
        acts = np.where(past, past_actions[np.arange(b)[:, None], s_idx], 0).astype(np.int64)
    else:
        acts = np.zeros((b, width), dtype=np.int64)
    x_obs[np.arange(b), n - 1] = obs_now  # the current entry
    rtg = return_tokens_s(rtg, x_obs, baseline, command)  # (B, W) seconds
    dev = next(net.parameters()).device  # a Serve replica on a GPU holds the DT there
    logits = net(
        torch.from_numpy((np.where(valid, rtg, 0.0) / rtg_scale).astype(np.float32)).to(dev),
        torch.from_numpy(np.asarray(x_obs, dtype=np.float32)).to(dev),
        torch.from_numpy(acts).to(dev),
        torch.from_numpy(np.where(valid, step, 0)).to(dev),
    )  # (B, W, A)
    return logits[torch.arange(b, device=dev), torch.from_numpy(n - 1).to(dev)].cpu()  # (B, A)


class GlanPolicy(ExploringPolicy):
    """DT conditioned on R̂ from L-RTG (or 7-day mean) and decremented by HRM (or naive) reward;
    π = softmax of the DT's logits (``explore="softmax"`` samples from it: GLAN eq. 29), or with
    a ``critic``, softmax of the critic-guided scores (λ = ``critic_lambda``)."""

    def __init__(
        self,
        dt: str,
        lrtg: str | None = None,
        hrm: str | None = None,
        name: str = "glan",
        target_gain: float | None = None,
        explore: str | Exploration | None = None,
        critic: str | None = None,
        critic_lambda: float | None = None,
        command: Sequence[float] | None = None,
    ) -> None:
        self.name = name
        self.critic = ModelRunner(critic, "cql") if critic else None
        """The critic Q(s, ·) of critic-guided selection (a CQL export over obs alone)."""
        self.critic_temperature = 1.0
        """T of the critic's Â(s, a)/T (its export's; unused without a critic)."""
        if self.critic is not None:
            record = check_cql_inputs(self.critic, history=False, arm=name)
            self.critic_temperature = record.temperature
        self.critic_lambda = glan_step.critic_lambda(critic_lambda)
        """λ of ``glan_step.critic_guided_scores`` (None: its ``CRITIC_LAMBDA``; unused without
        a critic)."""
        self.last_logits: torch.Tensor | None = None
        """The DT's logits (B, A) of the last batch of decisions (diagnostics:
        ``eval.critic_agreement``)."""
        self.last_q: torch.Tensor | None = None
        """The critic's Q (B, A) of the last batch of decisions (None without a critic)."""
        self.dt = ModelRunner(dt, "dt")
        net, dt_record = self.dt.model, self.dt.record
        assert isinstance(net, DecisionTransformer), type(net)  # a "dt" export's (models.registry)
        assert isinstance(dt_record, DTRecord), type(dt_record)  # and its record (models.exports)
        self.net = net
        self.k = net.cfg.context_len
        self.rtg_scale = dt_record.rtg_scale
        self.baseline = dt_record.rtg_baseline  # () unless advantage tokens
        self.command = dt_record.command  # () unless a command head (ACT, per-state target)
        if command is not None:  # another head for the same DT (τ tuned on validation)
            if not self.command:
                raise ValueError(f"{name}: command: the DT at {dt} has no command head (trained "
                                 "without act_critic or state_target)")  # fmt: skip
            self.command = replace(dt_record, command=tuple(command)).command
        self.target_gain = glan_step.target_gain(dt_record, target_gain)
        self.lrtg = ModelRunner(lrtg, "lrtg") if lrtg else None
        self.hrm = ModelRunner(hrm, "hrm") if hrm else None
        self.explore(explore)
        self._day: dict[str, np.ndarray] = {}
        self._features: dict[str, np.ndarray] = {}
        self._r1: np.ndarray | None = None
        self._reward: np.ndarray | None = None  # (N, S) seconds, NaN until scored
        self._cache: DTRowCache | None = None  # the day's windows, fed session by session

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        self._features, self._r1, self._reward = features, None, None

    def _start_day(self, weekday: int, history: IntraDayHistory) -> None:
        self._day = daily_columns(self._features, weekday)
        if self.lrtg is not None:
            forecast = glan_step.lrtg_forecast_s(self.lrtg(self._day)["wt"])
        else:
            forecast = np.asarray(self._day["usage_7d"], dtype=np.float64)  # 7-day mean, seconds
        self._r1 = glan_step.initial_rtg(forecast, self.target_gain)
        self._reward = np.full(history.usage.shape, np.nan)
        self._cache = self.net.new_row_cache(history.usage.shape[0])

    def _score_sessions(self, rows: np.ndarray, history: IntraDayHistory) -> np.ndarray:
        """Fill r̂ of the finished sessions of ``rows`` that are not scored yet; returns r̂ of
        every user (N, S) (seconds, NaN until scored)."""
        reward = self._reward
        assert reward is not None, "_start_day sets it"
        length = history.length[rows]
        slots = np.arange(reward.shape[1])
        todo = (slots[None, :] < length[:, None]) & np.isnan(reward[rows])  # (B, S)
        r_idx, t_idx = np.nonzero(todo)
        if r_idx.size == 0:
            return reward
        users = rows[r_idx]
        if self.hrm is None:
            reward[users, t_idx] = history.usage[users, t_idx]
            return reward
        cols = completed_session_columns(self._day, history, users, t_idx)
        reward[users, t_idx] = glan_step.session_reward_s(self.hrm(cols))
        return reward

    def pi(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        if self._r1 is None:
            self._start_day(obs.weekday, history)
        rows = obs.rows
        reward = self._score_sessions(rows, history)
        r1, cache = self._r1, self._cache
        assert r1 is not None and cache is not None, "_start_day sets them"
        r = np.where(np.isnan(reward[rows]), 0.0, reward[rows])  # (B, S)
        t = history.length[rows]
        cached = cache.fed[rows] == t  # (B,) every earlier session of the day was fed
        last = torch.empty(len(rows), self.net.cfg.n_actions)  # (B, A)
        if cached.any():
            c = np.flatnonzero(cached)
            # eq. 30 session by session: R̂_t = R̂₁ − Σ_{j < t} r̂_j (r is 0 beyond t)
            rtg = glan_step.next_rtg(r1[rows[c]], r[c].sum(1))
            rtg = return_tokens_s(rtg, obs.obs[c], self.baseline, self.command) / self.rtg_scale
            prev = np.where(t[c] > 0, history.action[rows[c], np.maximum(t[c] - 1, 0)], 0)
            last[c] = self.net.step_rows(
                cache, rows[c], torch.from_numpy(np.asarray(rtg, dtype=np.float32)),
                torch.from_numpy(np.asarray(obs.obs[c], dtype=np.float32)),
                torch.from_numpy(np.asarray(prev, dtype=np.int64)),
            )  # fmt: skip
        if not cached.all():  # a session this policy did not decide: recompute the window
            u = np.flatnonzero(~cached)
            cache.fed[rows[u]] = -1  # these rows stay on the full forward today
            last[u] = window_logits(
                self.net,
                r1[rows[u]],
                r[u],
                history.obs[rows[u]],
                history.action[rows[u]],
                t[u],
                obs.obs[u],
                self.rtg_scale,
                self.baseline,
                self.command,
            )
        self.last_logits = last
        if self.critic is None:
            return torch.softmax(last, -1).numpy()
        self.last_q = q_values(self.critic, obs.obs)  # (B, A)
        scores = glan_step.critic_guided_scores(
            last, self.last_q, self.critic_lambda, self.critic_temperature
        )  # (B, A)
        return torch.softmax(scores, -1).numpy()
