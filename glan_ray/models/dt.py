"""GLAN's policy: a Decision Transformer over the sessions of one user-day (GLAN §3.2, §5.3.1).

Tokens (R̂₁, s₁, a₁, …, R̂_t, s_t, a_t), one triple per session, each token carrying the
session's timestep embedding; causal self-attention; the landing page a_t is predicted from the
output at the s_t token (so it sees R̂_t, s_t and the past, never a_t). Cross-entropy over the
pages, padded positions masked out of the loss (CORL ``dt.py``).

At inference ``DTCache`` keeps every layer's keys and values, so an app entry feeds only the new
tokens [a_{t−1}, R̂_t, s_t] and costs O(t·d) per layer instead of a full re-run. Up to
``context_len`` sessions the cached step is exactly the full forward; beyond it the cache keeps a
rolling window of the last ``context_len`` sessions' tokens (Mistral-style sliding window), like
the training windows, so a step's cost stays bounded however many sessions a day has.

Plain PyTorch: the RLlib learner (glan_ray/rllib/dt/), evaluation and Serve reuse it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glan_ray.checks import check_fields, ranged
from glan_ray.schema import N_PAGES, OBS_DIM


@dataclass(frozen=True)
class DTConfig:
    """Architecture of the Decision Transformer."""

    obs_dim: int = ranged(OBS_DIM, ge=1)
    """Size of the observation vector s_t."""
    n_actions: int = ranged(N_PAGES, ge=2)
    """Number of landing pages."""
    context_len: int = ranged(20, ge=1)
    """K: sessions per training window (3K tokens) and the inference cache's window."""
    embed_dim: int = ranged(128, ge=1)
    """Token width d."""
    n_layers: int = ranged(3, ge=1)
    """Transformer blocks."""
    n_heads: int = ranged(2, ge=1)
    """Attention heads (embed_dim must divide by it)."""
    max_timestep: int = ranged(64, ge=1)
    """Size of the timestep embedding; later sessions of a day share the last one."""
    dropout: float = ranged(0.1, ge=0, lt=1)
    """Dropout on the token embeddings, attention and MLP outputs (training only)."""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.embed_dim % self.n_heads:
            raise ValueError(f"embed_dim {self.embed_dim} must divide by n_heads {self.n_heads}")

    @property
    def max_cache_tokens(self) -> int:
        """Tokens kept by the inference cache: K sessions, the last one without its action."""
        return 3 * self.context_len - 1


@dataclass
class DTCache:
    """Per-layer keys/values of the tokens seen so far for a batch of B user-days."""

    max_tokens: int
    """Rolling window (DTConfig.max_cache_tokens)."""
    layers: list[tuple[Tensor, Tensor] | None] = field(default_factory=list)
    """(k, v) of each layer, each (B, nh, T, hs), or None before the first step."""
    steps: int = 0
    """Sessions already fed (the next session's 0-based timestep)."""

    @property
    def n_tokens(self) -> int:
        return 0 if not self.layers or self.layers[0] is None else self.layers[0][0].size(2)


@dataclass
class DTRowCache:
    """Keys/values of the current window of each of N user-days, each at its own session: the
    simulator decides every user entering at one step in one batch, and they are at different
    sessions of their day. A window holds the sessions since the last multiple of K, the
    training windows (``data.windows.cut_windows``)."""

    keys: list[Tensor]
    """Per layer (N, nh, 3K, hs); row i's first ``n_tokens[i]`` positions are filled."""
    values: list[Tensor]
    """Per layer (N, nh, 3K, hs)."""
    n_tokens: np.ndarray
    """(N,) int64 tokens of the current window cached per row."""
    fed: np.ndarray
    """(N,) int64 sessions of the day fed so far per row (the next session's timestep)."""


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: DTConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(
        self, x: Tensor, past: tuple[Tensor, Tensor] | None = None, max_tokens: int = 0
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, T, d) -> (B, T, d) and this layer's (k, v) including ``past``.

        Without ``past`` the attention is plain causal over x. With ``past`` (P cached tokens)
        the T new tokens see all P and the new ones up to themselves; the returned cache is
        trimmed to its last ``max_tokens`` tokens (oldest first out).
        """
        b, t, d = x.shape
        hs = d // self.n_heads
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.n_heads, hs).transpose(1, 2) for z in (q, k, v))
        # q, k, v: (B, nh, T, hs)
        p = 0 if past is None else past[0].size(2)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, nh, P + T, hs)
            v = torch.cat([past[1], v], dim=2)
        drop = self.dropout if self.training else 0.0
        if p == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        else:
            # new token i (absolute position p + i) sees keys 0 .. p + i
            mask = torch.ones(t, p + t, dtype=torch.bool, device=x.device).tril(diagonal=p)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        y = y.transpose(1, 2).reshape(b, t, d)  # (B, T, d)
        if max_tokens and k.size(2) > max_tokens:
            k, v = k[:, :, -max_tokens:], v[:, :, -max_tokens:]
        return self.resid_drop(self.proj(y)), (k, v)


class Block(nn.Module):
    def __init__(self, cfg: DTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.embed_dim)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.embed_dim, 4 * cfg.embed_dim),
            nn.GELU(),
            nn.Linear(4 * cfg.embed_dim, cfg.embed_dim),
            nn.Dropout(cfg.dropout),
        )

    def forward(
        self, x: Tensor, past: tuple[Tensor, Tensor] | None = None, max_tokens: int = 0
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        a, kv = self.attn(self.ln1(x), past, max_tokens)
        x = x + a
        return x + self.mlp(self.ln2(x)), kv


class DecisionTransformer(nn.Module):
    """π(a_t | R̂_≤t, s_≤t, a_<t) over the sessions of a user-day."""

    def __init__(self, cfg: DTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.embed_dim
        self.embed_time = nn.Embedding(cfg.max_timestep, d)
        self.embed_rtg = nn.Linear(1, d)
        self.embed_obs = nn.Linear(cfg.obs_dim, d)
        self.embed_action = nn.Embedding(cfg.n_actions, d)
        self.ln_in = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.n_actions)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def _time(self, timesteps: Tensor) -> Tensor:
        return self.embed_time(timesteps.long().clamp(0, self.cfg.max_timestep - 1))

    def forward(self, rtg: Tensor, obs: Tensor, actions: Tensor, timesteps: Tensor) -> Tensor:
        """rtg (B, K), obs (B, K, D), actions (B, K), timesteps (B, K) -> logits (B, K, A).

        logits[:, t] come from the s_t token: they depend on R̂_≤t, s_≤t and a_<t only.
        """
        b, k = rtg.shape
        te = self._time(timesteps)  # (B, K, d)
        r = self.embed_rtg(rtg.unsqueeze(-1)) + te
        s = self.embed_obs(obs) + te
        a = self.embed_action(actions.long()) + te
        x = torch.stack([r, s, a], dim=2).reshape(b, 3 * k, -1)  # (B, 3K, d)
        x = self.drop(self.ln_in(x))
        for block in self.blocks:
            x, _ = block(x)
        x = self.ln_f(x).view(b, k, 3, -1)[:, :, 1]  # (B, K, d): the s_t tokens
        return self.head(x)  # (B, K, A)

    def new_cache(self) -> DTCache:
        """An empty inference cache for a batch of user-days starting their day."""
        return DTCache(self.cfg.max_cache_tokens, [None] * len(self.blocks))

    def step(
        self, cache: DTCache, rtg: Tensor, obs: Tensor, prev_action: Tensor | None = None
    ) -> Tensor:
        """One app entry for B user-days: rtg (B,), obs (B, D) -> logits (B, A); updates cache.

        ``prev_action`` (B,) is the page chosen at the previous step (required after the first);
        its token is appended before R̂_t and s_t, exactly as in the training sequence.
        """
        t = cache.steps
        if (prev_action is None) != (t == 0):
            raise ValueError("prev_action is required after the first step, and only then")
        now = torch.full(rtg.shape, t, dtype=torch.long, device=rtg.device)  # (B,)
        tokens = [
            self.embed_rtg(rtg.unsqueeze(-1)) + self._time(now),
            self.embed_obs(obs) + self._time(now),
        ]
        if prev_action is not None:
            tokens.insert(0, self.embed_action(prev_action.long()) + self._time(now - 1))
        x = self.drop(self.ln_in(torch.stack(tokens, dim=1)))  # (B, 2 or 3, d)
        for i, block in enumerate(self.blocks):
            x, cache.layers[i] = block(x, cache.layers[i], cache.max_tokens)
        cache.steps = t + 1
        return self.head(self.ln_f(x[:, -1]))  # (B, A)

    def new_row_cache(self, n: int) -> DTRowCache:
        """An empty ``DTRowCache`` for N user-days starting their day."""
        hs = self.cfg.embed_dim // self.cfg.n_heads
        shape = (n, self.cfg.n_heads, 3 * self.cfg.context_len, hs)
        return DTRowCache(
            [torch.zeros(shape) for _ in self.blocks],
            [torch.zeros(shape) for _ in self.blocks],
            np.zeros(n, dtype=np.int64),
            np.zeros(n, dtype=np.int64),
        )

    @torch.no_grad()
    def step_rows(
        self, cache: DTRowCache, rows: np.ndarray, rtg: Tensor, obs: Tensor, prev_action: Tensor
    ) -> Tensor:
        """One app entry for the user-days ``rows`` (B,): rtg (B,), obs (B, D) of their session
        ``cache.fed[rows]``; prev_action (B,) the page of their previous session (ignored at a
        window's first session). Returns logits (B, A), the same as ``forward`` over each row's
        current window, and appends the row's tokens [a_{t−1}, R̂_t, s_t] to its window (a new
        window starts, empty, every K sessions)."""
        k = self.cfg.context_len
        t = cache.fed[rows]  # (B,)
        first = t % k == 0  # (B,) a window starts: no action token, no past
        cache.n_tokens[rows[first]] = 0
        p = cache.n_tokens[rows]  # (B,) cached tokens of each row's window
        now = torch.from_numpy(t)
        r = self.embed_rtg(rtg.unsqueeze(-1)) + self._time(now)  # (B, d)
        s = self.embed_obs(obs) + self._time(now)
        a = self.embed_action(prev_action.long()) + self._time(now - 1)
        out = torch.empty(len(rows), self.cfg.n_actions)  # (B, A)
        for pos in np.unique(p):  # rows with the same cached length share one batched step
            g = np.flatnonzero(p == pos)
            gi = torch.from_numpy(g)
            tokens = [r[gi], s[gi]] if pos == 0 else [a[gi], r[gi], s[gi]]
            x = self.drop(self.ln_in(torch.stack(tokens, dim=1)))  # (b, 2 or 3, d)
            idx = torch.from_numpy(rows[g])
            n_new = x.size(1)
            for i, block in enumerate(self.blocks):
                past = None
                if pos:
                    past = (cache.keys[i][idx, :, :pos], cache.values[i][idx, :, :pos])
                x, (kk, vv) = block(x, past)  # kk, vv: (b, nh, pos + n_new, hs)
                cache.keys[i][idx, :, pos : pos + n_new] = kk[:, :, pos:]
                cache.values[i][idx, :, pos : pos + n_new] = vv[:, :, pos:]
            out[gi] = self.head(self.ln_f(x[:, -1]))
            cache.n_tokens[rows[g]] = pos + n_new
        cache.fed[rows] = t + 1
        return out


def dt_loss(logits: Tensor, actions: Tensor, mask: Tensor, weight: Tensor | None = None) -> Tensor:
    """Masked, optionally weighted cross-entropy Σ w·mask·CE / Σ w·mask.

    logits (B, K, A), actions (B, K), mask (B, K), weight (B, K) or None (all ones).
    """
    ce = F.cross_entropy(logits.flatten(0, 1), actions.long().flatten(), reduction="none")
    m = mask.flatten().to(ce.dtype)  # (B·K,)
    if weight is not None:
        m = m * weight.flatten().to(ce.dtype)
    return (ce * m).sum() / m.sum().clamp_min(1e-8 if weight is not None else 1.0)


def rtg_baseline_s(obs: np.ndarray, coef: Sequence[float]) -> np.ndarray:
    """The advantage tokens' baseline b(s) = w·s + c of the remaining return (s): obs (..., D),
    coef (D + 1,) (``DTRecord.rtg_baseline``) -> (...) float64."""
    c = np.asarray(coef, dtype=np.float64)
    return np.asarray(obs, dtype=np.float64) @ c[:-1] + c[-1]


def return_tokens_s(
    rtg_s: np.ndarray, obs: np.ndarray, baseline: Sequence[float] = (),
    command: Sequence[float] = (),
) -> np.ndarray:
    """The DT's return tokens in seconds (divide by ``rtg_scale`` to feed them), one formula
    for the training windows' inference twin, the simulator and Serve: rtg_s (...) the GLAN
    loop's R̂ (s), obs (..., D) -> (...) float64.

    - GLAN as published: R̂;
    - advantage tokens (``DTRecord.rtg_baseline``): R̂ − b(s);
    - advantage-conditioned tokens (ACT, ``DTRecord.command``): the command head's ĉ(s), the
      advantage the DT is asked to reach from this state; R̂ is not read.
    """
    if len(command):
        return rtg_baseline_s(obs, command)  # the same linear form: ĉ(s) = w·s + c
    rtg = np.asarray(rtg_s, dtype=np.float64)
    return rtg - rtg_baseline_s(obs, baseline) if len(baseline) else rtg


def fit_expectile(
    x: np.ndarray, y: np.ndarray, tau: float, ridge: float = 1e-3, iters: int = 50
) -> list[float]:
    """Linear expectile regression of y (N,) on [x, 1] (x (N, D)): the coefficients (D + 1,)
    minimising Σ |τ − 1[y < ŷ]| (y − ŷ)² + ridge × the mean diagonal × |w|² (the intercept
    unpenalised), by iteratively reweighted least squares from the least-squares fit. τ = 0.5
    is least squares; τ → 1 follows the top of y given x (ACT's command head, Reinformer's
    attainable return)."""
    if not 0.0 < tau < 1.0:
        raise ValueError(f"expectile tau must be in (0, 1); got {tau}")
    xa = np.concatenate([np.asarray(x, np.float64), np.ones((len(y), 1))], 1)  # (N, D + 1)
    y = np.asarray(y, np.float64)
    w = np.full(len(y), 0.5)
    coef = np.zeros(xa.shape[1])
    for _ in range(iters):
        xtx = (xa * w[:, None]).T @ xa  # (D + 1, D + 1)
        new = np.asarray(fit_rtg_baseline(xtx, xa.T @ (w * y), ridge))
        w_new = np.where(y < xa @ new, 1.0 - tau, tau)
        done = np.array_equal(w_new, w) or np.allclose(new, coef, rtol=1e-9, atol=1e-9)
        coef, w = new, w_new
        if done:
            break
    return coef.tolist()


def fit_rtg_baseline(xtx: np.ndarray, xty: np.ndarray, ridge: float = 1e-3) -> list[float]:
    """Least squares of the remaining return on [s, 1] from its sums Σ x xᵀ (D+1, D+1) and
    Σ x y (D+1,), with a ridge of ``ridge`` × the mean diagonal (the intercept unpenalised)."""
    n = xtx.shape[0]
    pen = ridge * np.trace(xtx) / n * np.eye(n)
    pen[-1, -1] = 0.0
    return np.linalg.solve(xtx + pen, xty).tolist()


def propensity_weights(propensity: Tensor, max_weight: float) -> Tensor:
    """Inverse-propensity weights min(1/μ(a|s), max_weight), same shape as ``propensity``.

    Weighting the cross-entropy by them makes the DT learn p(a | s, R̂) as if the logs had been
    collected by a uniform policy, so the logging policy's exposure bias (its favourite page)
    stops being the answer whatever R̂ is asked for.
    """
    return propensity.clamp_min(1e-6).reciprocal().clamp_max(max_weight)
