"""Off-policy evaluation from logged propensities (SPEC §4): IPS, SNIPS, DR, per-decision
IS/DR over trajectories, and FQE.

Bandit form (one decision per row): ``pi`` (n, A) are the target policy's probabilities at the
logged contexts, ``actions`` (n,) and ``propensity`` (n,) the logged action and its logging
probability, ``rewards`` (n,). Trajectory form: the same arrays over the sessions of user-days,
with ``episode`` (n,) ids and ``t`` (n,) step indices, rows grouped by episode in step order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from glan_ray.models.cql import QNetConfig, QNetwork


def _ratio(pi: np.ndarray, actions: np.ndarray, propensity: np.ndarray) -> np.ndarray:
    if np.any(propensity <= 0):
        raise ValueError("propensity: logged propensities must be > 0 (the 'propensity' column)")
    return pi[np.arange(len(actions)), actions] / propensity  # (n,)


def ips(rewards, actions, propensity, pi) -> float:
    """Inverse propensity scoring: mean of w·r, w = π(a|x)/μ(a|x). Unbiased when μ > 0 wherever
    π > 0."""
    return float(np.mean(_ratio(pi, actions, propensity) * rewards))


def snips(rewards, actions, propensity, pi) -> float:
    """Self-normalised IPS: Σ w·r / Σ w (biased, consistent, lower variance)."""
    w = _ratio(pi, actions, propensity)
    return float(np.sum(w * rewards) / np.sum(w))


def dr(rewards, actions, propensity, pi, q_hat) -> float:
    """Doubly robust: mean of Σ_a π(a|x) q̂(x,a) + w·(r − q̂(x, a_logged)) (Dudík et al., 2011)."""
    w = _ratio(pi, actions, propensity)
    idx = np.arange(len(actions))
    return float(np.mean((pi * q_hat).sum(1) + w * (rewards - q_hat[idx, actions])))


def _cum_ratio(w: np.ndarray, episode: np.ndarray) -> np.ndarray:
    """Π_{t' ≤ t} w_t' within each episode (rows grouped by episode, in step order)."""
    logw = np.log(np.maximum(w, 1e-300))
    c = np.cumsum(logw)
    start = np.r_[True, episode[1:] != episode[:-1]]
    offset = np.maximum.accumulate(np.where(start, np.arange(len(w)), 0))
    before = np.where(offset > 0, c[offset - 1], 0.0)
    return np.exp(c - before)


def per_decision_is(rewards, actions, propensity, pi, episode, t, gamma: float = 1.0) -> float:
    """Per-decision IS: mean over episodes of Σ_t γ^t ρ_{0:t} r_t (Precup et al., 2000)."""
    rho = _cum_ratio(_ratio(pi, actions, propensity), np.asarray(episode))
    n_ep = len(np.unique(episode))
    return float(np.sum(gamma ** np.asarray(t) * rho * rewards) / n_ep)


def per_decision_dr(
    rewards, actions, propensity, pi, q_hat, episode, t, gamma: float = 1.0
) -> float:
    """Per-decision DR (Jiang & Li, 2016): Σ_t γ^t [ρ_{0:t}(r_t − q̂(s_t,a_t)) + ρ_{0:t−1} v̂(s_t)],
    v̂(s) = Σ_a π(a|s) q̂(s,a)."""
    episode = np.asarray(episode)
    rho = _cum_ratio(_ratio(pi, actions, propensity), episode)
    start = np.r_[True, episode[1:] != episode[:-1]]
    rho_prev = np.where(start, 1.0, np.r_[1.0, rho[:-1]])
    idx = np.arange(len(actions))
    v = (pi * q_hat).sum(1)
    terms = rho * (rewards - q_hat[idx, actions]) + rho_prev * v
    return float(np.sum(gamma ** np.asarray(t) * terms) / len(np.unique(episode)))


@dataclass(frozen=True)
class FQEConfig:
    """Fitted Q evaluation (Le et al., 2019): Q^π by repeated regression on the transitions."""

    gamma: float = 1.0
    """Discount within a user-day (done ends the day)."""
    iterations: int = 20
    """Outer iterations (target network refreshed each)."""
    steps_per_iteration: int = 200
    """Gradient steps per outer iteration."""
    batch_size: int = 512
    lr: float = 1e-3
    hidden: tuple[int, ...] = (64, 64)
    seed: int = 0


def fqe(
    obs: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    next_obs: np.ndarray,
    done: np.ndarray,
    pi_next: np.ndarray,
    cfg: FQEConfig = FQEConfig(),
) -> QNetwork:
    """Fit Q^π: Q(s,a) ← r + γ(1 − done) Σ_a' π(a'|s') Q_tgt(s',a'). Returns the network."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tens = [torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in (obs, rewards, next_obs)]
    s, r, s2 = tens
    a = torch.as_tensor(np.asarray(actions), dtype=torch.long)
    d = torch.as_tensor(np.asarray(done), dtype=torch.float32)
    p2 = torch.as_tensor(np.asarray(pi_next), dtype=torch.float32)
    q = QNetwork(QNetConfig(obs_dim=s.shape[1], n_actions=p2.shape[1], hidden=cfg.hidden))
    opt = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    for _ in range(cfg.iterations):
        with torch.no_grad():
            target = r + cfg.gamma * (1 - d) * (p2 * q(s2)).sum(1)  # (n,)
        for _ in range(cfg.steps_per_iteration):
            idx = torch.randint(0, len(a), (min(cfg.batch_size, len(a)),), generator=g)
            pred = q(s[idx]).gather(1, a[idx, None]).squeeze(1)
            loss = F.mse_loss(pred, target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return q.eval()


def fqe_value(q: QNetwork, obs0: np.ndarray, pi0: np.ndarray) -> float:
    """V̂(π) = mean over initial states of Σ_a π(a|s₀) Q(s₀, a)."""
    with torch.no_grad():
        qs = q(torch.as_tensor(np.asarray(obs0), dtype=torch.float32)).numpy()
    return float(np.mean((np.asarray(pi0) * qs).sum(1)))
