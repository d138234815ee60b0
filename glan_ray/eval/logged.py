"""Off-policy evaluation of a run's learned policies on its own logged sessions (an app's
traffic, ``glan-ray ingest``; docs/ingest.md, "Evaluate").

Where no simulator can play the policies, their value is estimated from the log: every session
is one landing decision with its logged page, its logging propensity and its reward (the app
spec's session reward). Each policy's probabilities π(a | x) at the logged contexts are computed
from the exported models exactly as the policies compute them (``policy.klan``,
``policy.glan``), the DT seeing the day's logged sessions before the current one, conditioned on
R̂₁ = g · L-RTG's forecast and decremented by HRM's r̂ of each logged session. The estimators
(``eval.ope``):

- per session (one step): IPS, SNIPS and DR, DR's reward model q̂(x, a) a Q-network fitted to
  the session rewards (FQE with γ = 0);
- per user-day: FQE (γ = 1 within the day) of the day's total reward from its first session.

Confidence intervals are a Poisson bootstrap over users (every user's sessions and days
resampled together); FQE's value has none (one fit). Every estimate is the value of the greedy
policy (the page a policy serves), the logging policy's own is the logged mean.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import torch

from glan_ray import storage
from glan_ray.apps import AppSpec
from glan_ray.data.features import as_columns
from glan_ray.eval.ope import FQEConfig, fqe, fqe_value
from glan_ray.models.cql import QNetwork, interest_scores
from glan_ray.models.dt import DecisionTransformer
from glan_ray.models.exports import CQLRecord, DTRecord
from glan_ray.models.klan_am import fuse
from glan_ray.models.klan_isp import static_scores
from glan_ray.policy import glan_step
from glan_ray.policy.glan import window_logits
from glan_ray.policy.runner import ModelRunner

logger = logging.getLogger(__name__)

CHUNK = 4096
"""Sessions per forward pass."""


@dataclass(frozen=True)
class LoggedOPEConfig:
    """How the logged sessions are evaluated."""

    bootstrap: int = 200
    """Poisson-bootstrap draws over users for the confidence intervals."""
    level: float = 0.95
    """Confidence level of the intervals."""
    max_sessions: int = 500_000
    """At most this many sessions are read (whole user-days, in file order); the report says
    when the log was cut."""
    seed: int = 0
    """Seed of the bootstrap and of the FQE fits."""
    fqe: FQEConfig = field(default_factory=lambda: FQEConfig(iterations=10,
                                                             steps_per_iteration=100))
    """The FQE fits: DR's reward model (γ = 0, one fit shared by every policy) and each
    policy's day value (its own γ)."""


@dataclass
class Logged:
    """The logged sessions in (user, day, session) order, with their day's row."""

    sessions: dict[str, np.ndarray]
    """Session columns (N, ...) of the app's ``sessions`` schema."""
    daily: dict[str, np.ndarray]
    """The day's ``daily`` columns of each session (N, ...)."""
    episode: np.ndarray
    """(N,) index of the session's user-day."""
    t: np.ndarray
    """(N,) the session's index in its day."""
    reward: np.ndarray
    """(N,) the session reward (s): the app spec's reward column."""
    truncated: bool
    """Whether ``max_sessions`` cut the log."""


def _read(path: str, max_rows: int | None = None) -> tuple[pa.Table, bool]:
    fs, inner = storage.filesystem(path)
    parts, n = [], 0
    for batch in pads.dataset(inner, filesystem=fs, format="parquet").to_batches():
        parts.append(pa.Table.from_batches([batch]))
        n += batch.num_rows
        if max_rows is not None and n >= max_rows:
            return pa.concat_tables(parts), True
    if not parts:
        raise ValueError(f"{path}: no rows")
    return pa.concat_tables(parts), False


def read_logged(data: str, spec: AppSpec, max_sessions: int) -> Logged:
    """The logged sessions of the datasets at ``data`` and their days' rows (whole user-days:
    a day cut by ``max_sessions`` is left out)."""
    table, cut = _read(storage.join(data, "sessions"), max_sessions)
    s = as_columns(table)
    key = s["user_id"].astype(np.int64), s["day"].astype(np.int64)
    order = np.lexsort((s["session_idx"], key[1], key[0]))
    s = {k: v[order] for k, v in s.items()}
    uid, day = s["user_id"].astype(np.int64), s["day"].astype(np.int64)
    new = np.r_[True, (uid[1:] != uid[:-1]) | (day[1:] != day[:-1])]
    episode = np.cumsum(new) - 1
    if cut:  # drop the last user-day: its sessions may go on in the next batch
        keep = episode < episode[-1]
        s, episode = {k: v[keep] for k, v in s.items()}, episode[keep]
    t = s["session_idx"].astype(np.int64)
    d = as_columns(_read(storage.join(data, "daily"))[0])
    d_key = np.stack([d["user_id"], d["day"]], 1).astype(np.int64)  # (D, 2)
    s_key = np.stack([s["user_id"], s["day"]], 1).astype(np.int64)  # (N, 2)
    # one id per distinct (user, day) of either table (no arithmetic on the ids: any int64)
    ids = np.unique(np.concatenate([d_key, s_key]), axis=0, return_inverse=True)[1].ravel()
    lookup = np.full(int(ids.max()) + 1, -1)
    lookup[ids[: len(d_key)]] = np.arange(len(d_key))
    rows = lookup[ids[len(d_key) :]]  # (N,) each session's daily row; −1: none
    if (rows < 0).any():
        u, dd = s_key[np.argmax(rows < 0)]
        raise ValueError(f"{data}: sessions of user-day ({u}, {dd}) have no 'daily' row")
    daily = {k: v[rows] for k, v in d.items()}
    reward = np.asarray(s[spec.reward], dtype=np.float64)
    if np.isnan(reward).any():
        raise ValueError(f"{data}/sessions: column {spec.reward!r} (the reward) has nulls")
    return Logged(s, daily, episode, t, reward, cut)


# ---- the policies' probabilities at the logged contexts ----


def _one_hot(a: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n)[a]  # (N, A)


def _chunks(n: int) -> list[slice]:
    return [slice(i, min(i + CHUNK, n)) for i in range(0, n, CHUNK)]


def _cols(cols: dict[str, np.ndarray], sl: slice) -> dict[str, np.ndarray]:
    return {k: v[sl] for k, v in cols.items()}


def cql_scores(log: Logged, cql: ModelRunner) -> np.ndarray:
    """KLAN-IIT's Q(s, ·) (N, A) of the logged states."""
    q = [cql.model(torch.from_numpy(np.ascontiguousarray(log.sessions["obs"][sl], np.float32)))
         for sl in _chunks(len(log.t))]  # fmt: skip
    return torch.cat(q).detach().numpy().astype(np.float64)


def klan_scores(log: Logged, isp: ModelRunner, cql: ModelRunner, am: ModelRunner) -> np.ndarray:
    """KLAN's fused scores f = w·s + (1 − w)·d (N, A) (``policy.klan.KlanPolicy``)."""
    record = cql.record
    assert isinstance(record, CQLRecord), type(record)
    out = []
    with torch.no_grad():
        for sl in _chunks(len(log.t)):
            s = static_scores(isp(_cols(log.daily, sl)), 1.0)  # (B, A)
            q = cql.model(torch.from_numpy(np.ascontiguousarray(log.sessions["obs"][sl],
                                                                np.float32)))  # fmt: skip
            d = interest_scores(q, record.temperature)  # (B, A)
            w = am(_cols(log.sessions, sl))["w"]  # (B, A)
            out.append(fuse(w, s, d))
    return torch.cat(out).numpy().astype(np.float64)


def glan_scores(
    log: Logged, dt: ModelRunner, lrtg: ModelRunner | None, hrm: ModelRunner | None
) -> np.ndarray:
    """The DT's logits (N, A) at each logged session, over the day's logged sessions before it:
    R̂₁ = g · L-RTG's forecast (else the 7-day usage), R̂ decremented by HRM's r̂ (else the
    logged reward) of each earlier session (``policy.glan.GlanPolicy``)."""
    net, record = dt.model, dt.record
    assert isinstance(net, DecisionTransformer) and isinstance(record, DTRecord)
    n = len(log.t)
    with torch.no_grad():
        if lrtg is not None:
            wt = torch.cat([lrtg(_cols(log.daily, sl))["wt"] for sl in _chunks(n)])
            forecast = glan_step.lrtg_forecast_s(wt)
        else:
            forecast = np.asarray(log.daily["usage_7d"], dtype=np.float64)
        r1 = glan_step.initial_rtg(forecast, glan_step.target_gain(record))  # (N,)
        if hrm is not None:
            r_hat = np.concatenate([glan_step.session_reward_s(hrm(_cols(log.sessions, sl)))
                                    for sl in _chunks(n)])  # fmt: skip
        else:
            r_hat = log.reward
    start = np.flatnonzero(np.r_[True, log.episode[1:] != log.episode[:-1]])  # (E,)
    first = start[log.episode]  # (N,) the row of each session's day's first session
    width = int(log.t.max()) + 1
    obs = np.asarray(log.sessions["obs"], dtype=np.float32)
    act = np.asarray(log.sessions["action"], dtype=np.int64)
    out = []
    for sl in _chunks(n):
        rows = np.arange(sl.start, sl.stop)
        t = log.t[rows]
        s = min(width, int(t.max()) + 1)
        idx = np.minimum(first[rows, None] + np.arange(s)[None, :], n - 1)  # (B, S)
        before = np.arange(s)[None, :] < t[:, None]  # (B, S) the day's earlier sessions
        rewards = np.where(before, r_hat[idx], 0.0)
        logits = window_logits(net, r1[rows], rewards, obs[idx], np.where(before, act[idx], 0),
                               t, obs[rows], record.rtg_scale, record.rtg_baseline,
                               record.command)  # fmt: skip
        out.append(logits)
    return torch.cat(out).numpy().astype(np.float64)


# ---- estimates with bootstrap intervals ----


@dataclass(frozen=True)
class Estimate:
    """One estimator's value of one policy, with its bootstrap interval."""

    value: float
    lo: float
    hi: float


@dataclass(frozen=True)
class PolicyValue:
    """A policy's estimated values on the log (s of reward)."""

    policy: str
    """The policy: ``logging``, ``page:<name>``, ``cql``, ``klan``, ``glan``."""
    agree: float
    """Share of logged sessions where the policy picks the logged page (its IS support)."""
    ips: Estimate
    snips: Estimate
    dr: Estimate
    fqe_day: float
    """FQE's value of the user-day (the day's total reward) from its first session."""
    ess: float
    """Effective sample size of the importance weights, (Σw)² / Σw²."""


def _interval(draws: np.ndarray, value: float, level: float) -> Estimate:
    a = (1 - level) / 2
    lo, hi = np.quantile(draws, [a, 1 - a]) if len(draws) else (np.nan, np.nan)
    return Estimate(float(value), float(lo), float(hi))


def _fqe_q(log: Logged, pi_next: np.ndarray, gamma: float, cfg: FQEConfig) -> QNetwork:
    """Q^π fitted to the logged sessions; the next state is the day's next session's (the last
    session of a day is terminal)."""
    obs = np.asarray(log.sessions["obs"], dtype=np.float32)
    n = len(obs)
    done = np.r_[log.episode[1:] != log.episode[:-1], True]
    nxt = np.where(done, np.arange(n), np.minimum(np.arange(n) + 1, n - 1))
    return fqe(obs, log.sessions["action"].astype(np.int64), log.reward, obs[nxt],
               done.astype(np.float32), pi_next[nxt],
               FQEConfig(**{**asdict(cfg), "gamma": gamma}))  # fmt: skip


def reward_model(log: Logged, n_actions: int, cfg: LoggedOPEConfig) -> np.ndarray:
    """q̂(x, a) (N, A): the session reward regressed on the logged (obs, page), the one-step
    FQE (γ = 0: no bootstrap, so the same for every policy)."""
    q = _fqe_q(log, np.full((len(log.t), n_actions), 1.0 / n_actions), 0.0, cfg.fqe)
    with torch.no_grad():
        return q(torch.from_numpy(np.asarray(log.sessions["obs"], np.float32))).numpy()


def evaluate_policy(
    name: str,
    pi: np.ndarray,
    log: Logged,
    cfg: LoggedOPEConfig,
    users: np.ndarray,
    q: np.ndarray | None = None,
) -> PolicyValue:
    """IPS, SNIPS and DR (with intervals) and FQE's day value of policy ``name`` (π (N, A));
    ``q``: DR's reward model (``reward_model``; None: fitted here)."""
    a = log.sessions["action"].astype(np.int64)
    mu = np.asarray(log.sessions["propensity"], dtype=np.float64)
    if np.any(mu <= 0):
        raise ValueError("column 'propensity': logged propensities must be > 0")
    idx = np.arange(len(a))
    w = pi[idx, a] / mu  # (N,)
    r = log.reward
    q = reward_model(log, pi.shape[1], cfg) if q is None else q
    dr_terms = (pi * q).sum(1) + w * (r - q[idx, a])  # (N,)
    first = np.r_[True, log.episode[1:] != log.episode[:-1]]
    q_day = _fqe_q(log, pi, cfg.fqe.gamma, cfg.fqe)
    day = fqe_value(q_day, np.asarray(log.sessions["obs"], np.float32)[first], pi[first])

    def est(weights: np.ndarray) -> tuple[float, float, float]:
        sw = weights.sum()
        return ((weights * w * r).sum() / sw, (weights * w * r).sum() / (weights * w).sum(),
                (weights * dr_terms).sum() / sw)  # fmt: skip

    point = est(np.ones(len(a)))
    _, uid = np.unique(users, return_inverse=True)
    rng = np.random.default_rng(cfg.seed)
    draws = np.array([est(rng.poisson(1.0, uid.max() + 1)[uid].astype(np.float64))
                      for _ in range(cfg.bootstrap)])  # fmt: skip
    draws = draws[np.isfinite(draws).all(1)]
    ips, snips, dr = (_interval(draws[:, i], point[i], cfg.level) for i in range(3))
    return PolicyValue(name, float(np.mean(pi.argmax(1) == a)), ips, snips, dr, float(day),
                       float(w.sum() ** 2 / max((w**2).sum(), 1e-12)))  # fmt: skip


def _export(models: str, name: str) -> str | None:
    p = storage.join(models, name)
    return p if storage.exists(storage.join(p, "model.pt")) else None


def run_logged_ope(
    data: str,
    models: str,
    spec: AppSpec,
    cfg: LoggedOPEConfig = LoggedOPEConfig(),
    progress: Callable[[str], None] | None = None,
) -> tuple[list[PolicyValue], Logged]:
    """Every policy the run's exports make, evaluated on the log at ``data``: the logging
    policy, each page always, KLAN-IIT (``cql``), KLAN (ISP + IIT + AM; left out when the run
    has no ISP, trained only on randomised days) and GLAN (DT + L-RTG + HRM)."""
    log = read_logged(data, spec, cfg.max_sessions)
    users = log.sessions["user_id"]
    k = spec.n_pages
    a = log.sessions["action"].astype(np.int64)
    policies: dict[str, np.ndarray] = {}
    for i, page in enumerate(spec.pages):
        policies[f"page:{page}"] = np.tile(_one_hot(np.array([i]), k), (len(a), 1))

    def runner(name: str, kind: str) -> ModelRunner | None:
        path = _export(models, name)
        return ModelRunner(path, kind, app=spec, used_in=f"the log at {data}") if path else None

    cql, isp, am = runner("cql", "cql"), runner("isp", "isp"), runner("am", "am")
    if cql is not None:
        policies["cql"] = _one_hot(cql_scores(log, cql).argmax(1), k)
        if isp is not None and am is not None:
            policies["klan"] = _one_hot(klan_scores(log, isp, cql, am).argmax(1), k)
    dt = runner("dt", "dt")
    if dt is not None:
        logits = glan_scores(log, dt, runner("lrtg", "lrtg"), runner("hrm", "hrm"))
        policies["glan"] = _one_hot(logits.argmax(1), k)
    # the logging policy: its value is the logged mean (w = 1 when π = μ)
    q = reward_model(log, k, cfg)
    out = [evaluate_policy("logging", _logging_pi(log, k), log, cfg, users, q)]
    for name, pi in policies.items():
        if progress:
            progress(name)
        out.append(evaluate_policy(name, pi, log, cfg, users, q))
    return out, log


def _logging_pi(log: Logged, k: int) -> np.ndarray:
    """The logging policy's probabilities, as far as the log knows them: the logged page's
    propensity, the rest spread evenly over the other pages (its IS weights are then 1)."""
    a = log.sessions["action"].astype(np.int64)
    mu = np.asarray(log.sessions["propensity"], dtype=np.float64)
    pi = np.repeat(((1 - mu) / max(k - 1, 1))[:, None], k, axis=1)
    pi[np.arange(len(a)), a] = mu
    return pi


def write_ope(out_dir: str, values: list[PolicyValue], log: Logged, cfg: LoggedOPEConfig) -> str:
    """``ope.json`` and a Markdown table under ``out_dir``; returns the Markdown's path."""
    storage.makedirs(out_dir)
    days = int(log.episode.max()) + 1 if len(log.episode) else 0
    meta = {"sessions": len(log.t), "user_days": days,
            "users": len(np.unique(log.sessions["user_id"])), "truncated": log.truncated,
            "config": asdict(cfg)}  # fmt: skip
    storage.write_json(storage.join(out_dir, "ope.json"),
                       {**meta, "policies": [asdict(v) for v in values]}, indent=1)  # fmt: skip
    pct = round(cfg.level * 100)
    lines = [
        f"{meta['sessions']:,} logged sessions of {days:,} user-days, {meta['users']:,} users"
        + (" (cut at max_sessions)" if log.truncated else "") + ". Values are seconds of the "
        f"session reward per session (IPS, SNIPS, DR) or per user-day (FQE), {pct}% Poisson-"
        f"bootstrap intervals over users ({cfg.bootstrap} draws). `agree`: the share of "
        "sessions where the policy picks the logged page; `ESS`: the importance weights' "
        "effective sample size.",
        "",
        "| policy | agree | ESS | IPS | SNIPS | DR | FQE (day) |",
        "|---|---:|---:|---|---|---|---:|",
    ]
    for v in values:
        cells = [f"{e.value:.1f} [{e.lo:.1f}, {e.hi:.1f}]" for e in (v.ips, v.snips, v.dr)]
        lines.append(f"| {v.policy} | {v.agree:.2f} | {v.ess:,.0f} | {' | '.join(cells)} | "
                     f"{v.fqe_day:.1f} |")  # fmt: skip
    path = storage.join(out_dir, "ope.md")
    storage.write_text(path, "\n".join(lines) + "\n")
    return path


__all__ = ["Estimate", "LoggedOPEConfig", "PolicyValue", "read_logged", "run_logged_ope",
           "write_ope"]  # fmt: skip
