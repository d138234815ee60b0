"""Attention layers of L-RTG (GLAN §4.1.1–4.1.2): periodicity-aware attention and pooling.

Both layers take an optional ``key_padding_mask`` (B, L) bool with True = padded position
(PyTorch's ``src_key_padding_mask`` convention, so one mask serves the transformer too). A row
whose positions are all padded pools to zeros rather than NaN: a user with no history is valid
input.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

DIST_BUCKET_EDGES: tuple[int, ...] = (1, 2, 3, 7, 14, 30, 60)
"""Inclusive upper edges of the day-gap buckets of ``dist_bucket``: Δt = 1 | 2 | 3 | 4–7 | 8–14 |
15–30 | 31–60 | 61+ map to buckets 0..7. One bucket per day for the last three days, then
week, fortnight, month and two-month bins (finer for recent days, GLAN eq. 7)."""


def dist_bucket(dt: Tensor, n_buckets: int) -> Tensor:
    """Bucket index of day gaps ``dt`` (any shape, long, Δt >= 1), clipped to ``n_buckets - 1``.

    Buckets follow ``DIST_BUCKET_EDGES``; Δt <= 1 (including invalid 0 or negative gaps) falls in
    bucket 0. With fewer than 8 buckets the farthest ones merge into the last.
    """
    edges = torch.tensor(DIST_BUCKET_EDGES, dtype=dt.dtype, device=dt.device)
    return torch.bucketize(dt.contiguous(), edges).clamp(max=n_buckets - 1)


def masked_softmax(logits: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """Softmax over the last axis ignoring padded positions; an all-padded row gives zeros.

    A finite fill (not -inf) keeps all-padded rows free of NaN in both passes.
    """
    if key_padding_mask is None:
        return torch.softmax(logits, dim=-1)
    logits = logits.masked_fill(key_padding_mask, torch.finfo(logits.dtype).min)
    return torch.softmax(logits, dim=-1).masked_fill(key_padding_mask, 0.0)


class PeriodicAttention(nn.Module):
    """Single-query attention with a learned weekly/decay bias (GLAN eqs. 6–8).

    w = q Kᵀ/√d + b_period,  b_period[t] = B_week[Δt_t mod 7] + B_dist[bucket(Δt_t)],
    e_p = softmax(w) V, with q from the context vector and K, V from the sequence H.
    """

    def __init__(self, d: int, n_dist_buckets: int) -> None:
        super().__init__()
        self.d = d
        self.n_dist_buckets = n_dist_buckets
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.b_week = nn.Parameter(torch.zeros(7))  # B_week ∈ R^7
        self.b_dist = nn.Parameter(torch.zeros(n_dist_buckets))  # B_dist ∈ R^B

    def period_bias(self, dt: Tensor) -> Tensor:
        """b_period for day gaps dt (B, L) long -> (B, L) (GLAN eq. 7)."""
        week = self.b_week[torch.remainder(dt, 7)]  # (B, L)
        dist = self.b_dist[dist_bucket(dt, self.n_dist_buckets)]  # (B, L)
        return week + dist

    def attention_weights(
        self, ctx: Tensor, h: Tensor, dt: Tensor, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        """softmax(w) of eq. 8: ctx (B, d), h (B, L, d), dt (B, L) -> (B, L)."""
        q = self.q_proj(ctx)  # (B, d)
        k = self.k_proj(h)  # (B, L, d)
        logits = torch.einsum("bd,bld->bl", q, k) / math.sqrt(self.d)  # (B, L)
        logits = logits + self.period_bias(dt)  # (B, L)
        return masked_softmax(logits, key_padding_mask)  # (B, L)

    def forward(
        self, ctx: Tensor, h: Tensor, dt: Tensor, key_padding_mask: Tensor | None = None
    ) -> Tensor:
        """e_p: ctx (B, d), h (B, L, d), dt (B, L) long, mask (B, L) bool -> (B, d)."""
        attn = self.attention_weights(ctx, h, dt, key_padding_mask)  # (B, L)
        v = self.v_proj(h)  # (B, L, d)
        return torch.einsum("bl,bld->bd", attn, v)  # (B, d)


class AttentionPooling(nn.Module):
    """Pools (B, L, d) to (B, d) with one learned query (GLAN eq. 11).

    score_t = qᵀ tanh(W h_t)/√d; the output is Σ_t softmax(score)_t h_t.
    """

    def __init__(self, d: int) -> None:
        super().__init__()
        self.d = d
        self.proj = nn.Linear(d, d)
        self.query = nn.Parameter(torch.randn(d) / d**0.5)  # (d,)

    def forward(self, h: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """h (B, L, d), mask (B, L) bool (True = padded) -> (B, d)."""
        scores = torch.tanh(self.proj(h)) @ self.query / math.sqrt(self.d)  # (B, L)
        attn = masked_softmax(scores, key_padding_mask)  # (B, L)
        return torch.einsum("bl,bld->bd", attn, h)  # (B, d)
