"""KLAN-IIT: the Q-network of discrete CQL and its loss parts (KLAN §4.2, App. A.4; SPEC §3.4).

L = E[(Q(s,a) − (r + γ(1 − done)·Q_tgt(s', argmax_a' Q(s',a'))))²]          (double-DQN TD)
  + E[α(s)·(logsumexp_a Q(s,·) − Q(s,a))]                                    (conservative)
α(s) = clip(α₀·w_hour(h)·w_freq(n), α_min, α_max), w_hour = ρ_h^(−κ_h), w_freq = ρ_n^(−κ_n),
where ρ_h = entries at hour h / mean entries per hour (and ρ_n the same over the user's entry
count today) are measured on the logged data: quiet hours and rare entry counts are where the
logs say least about the user, so the Q-function is held closer to the data there.
Interest score d_k = softmax(Q(s,·)/T)_k.

Plain PyTorch: the RLlib learner (glan_ray/rllib/cql/), evaluation and Serve reuse these.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glan_ray.checks import check_fields, ranged
from glan_ray.nn.init import init_weights
from glan_ray.schema import N_PAGES, OBS_DIM

N_HOURS = 24


@dataclass(frozen=True)
class QNetConfig:
    """Architecture of the Q-network Q(s, ·) over the landing pages."""

    obs_dim: int = ranged(OBS_DIM, ge=1)
    """Size of the observation vector (schema.OBS_FEATURES)."""
    n_actions: int = ranged(N_PAGES, ge=2)
    """Number of landing pages."""
    hidden: tuple[int, ...] = (256, 256)
    """Widths of the hidden ReLU layers (d3rlpy's default vector encoder is (256, 256))."""

    def __post_init__(self) -> None:
        check_fields(self)
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"QNetConfig.hidden must be widths >= 1; got {self.hidden}")


class QNetwork(nn.Module):
    """MLP obs (B, D) -> Q-values (B, A)."""

    def __init__(self, cfg: QNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        d = cfg.obs_dim
        for h in cfg.hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        layers.append(nn.Linear(d, cfg.n_actions))
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs)  # (B, A)


def conservative_term(q: Tensor, actions: Tensor) -> Tensor:
    """Per-sample CQL(H) regulariser logsumexp_a Q(s,a) − Q(s, a_data): (B, A), (B,) -> (B,).

    Always ≥ 0 (logsumexp ≥ max ≥ any entry); equals log A when all Q-values are equal.
    """
    q_data = q.gather(1, actions.long().unsqueeze(1)).squeeze(1)  # (B,)
    return torch.logsumexp(q, dim=1) - q_data


def double_dqn_target(
    q_next_online: Tensor, q_next_target: Tensor, rewards: Tensor, dones: Tensor, gamma: float
) -> Tensor:
    """r + γ(1 − done)·Q_tgt(s', argmax_a' Q(s', a')) (van Hasselt et al., 2016): (B,), no grad."""
    a_star = q_next_online.argmax(dim=1, keepdim=True)  # (B, 1)
    q_next = q_next_target.gather(1, a_star).squeeze(1)  # (B,)
    return (rewards + gamma * (1.0 - dones.float()) * q_next).detach()


def interest_scores(q: Tensor, temperature: float = 1.0) -> Tensor:
    """KLAN's interest score d = softmax(Q(s,·)/T): (B, A) -> (B, A)."""
    return F.softmax(q / temperature, dim=-1)


def activity_ratios(counts: np.ndarray) -> np.ndarray:
    """ρ = counts / mean(counts), floored at 1e-3 so an empty bucket gives a finite (large) α."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.sum() <= 0:
        raise ValueError("activity_ratios needs at least one logged entry")
    return np.maximum(counts / counts.mean(), 1e-3)


@dataclass(frozen=True)
class DynamicAlpha:
    """α(s) = clip(α₀·ρ_h^(−κ_h)·ρ_n^(−κ_n), α_min, α_max) (KLAN eq. 9 and App. A.4).

    ``static=True`` gives the constant α₀ of plain CQL (the ablation "w/o IIT").
    """

    alpha0: float = 1.0
    """α₀: the base conservative coefficient."""
    alpha_min: float = 0.1
    """Lower clip of α(s)."""
    alpha_max: float = 10.0
    """Upper clip of α(s)."""
    kappa_hour: float = 0.5
    """κ_h: how strongly quiet hours raise α."""
    kappa_freq: float = 0.5
    """κ_n: how strongly rare entry counts (today) raise α."""
    hour_ratio: tuple[float, ...] = field(default=(1.0,) * N_HOURS)
    """ρ_h for h = 0..23, measured on the logged data (``activity_ratios``)."""
    freq_ratio: tuple[float, ...] = (1.0,)
    """ρ_n for n = 0..len − 1 entries so far today; larger counts use the last bucket."""
    static: bool = False
    """Use the constant α₀ (ablation) instead of α(s)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "hour_ratio", tuple(float(r) for r in self.hour_ratio))
        object.__setattr__(self, "freq_ratio", tuple(float(r) for r in self.freq_ratio))
        if not 0 <= self.alpha_min <= self.alpha_max:
            raise ValueError(f"need 0 <= alpha_min <= alpha_max; got {self}")
        if len(self.hour_ratio) != N_HOURS or not self.freq_ratio:
            raise ValueError("hour_ratio needs 24 entries and freq_ratio at least one")
        if min(self.hour_ratio + self.freq_ratio) <= 0:
            raise ValueError("activity ratios must be > 0")

    def weights(self) -> tuple[Tensor, Tensor]:
        """(w_hour (24,), w_freq (N,)) before α₀ and clipping."""
        rho_h = torch.tensor(self.hour_ratio, dtype=torch.float32)
        rho_n = torch.tensor(self.freq_ratio, dtype=torch.float32)
        return rho_h.pow(-self.kappa_hour), rho_n.pow(-self.kappa_freq)

    def __call__(self, hour: Tensor, entries_today: Tensor) -> Tensor:
        """hour (B,) in [0, 24), entries_today (B,) ≥ 0 -> α (B,)."""
        if self.static:
            return torch.full(hour.shape, float(self.alpha0), device=hour.device)
        w_h, w_n = (w.to(hour.device) for w in self.weights())
        h = hour.long().clamp(0, N_HOURS - 1)  # (B,)
        n = entries_today.long().clamp(0, len(self.freq_ratio) - 1)  # (B,)
        alpha = self.alpha0 * w_h[h] * w_n[n]
        return alpha.clamp(self.alpha_min, self.alpha_max)
