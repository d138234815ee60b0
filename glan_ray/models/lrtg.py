"""L-RTG: the day's initial return-to-go from inter-day behaviour (GLAN §4.1, SPEC §3.1).

e_context = [emb(x) ‖ emb(t)] (eq. 5), projected to d_model; H = linear(se) (B, L, d);
e_p = PeriodicAttention(e_context, H, Δt) (eqs. 6–8); u = [e_context ‖ e_p] (eq. 9);
e_d = AttentionPooling(TransformerEncoder(H + P)) (eqs. 10–11); M experts from u, one gate per
task on [e_d ‖ u] (eq. 12); ŷ_k = softplus(h_k(z_k)), k ∈ {wt, se} (eq. 13).

Losses (eqs. 15–17) are in ``lrtg_losses``; the constrained primal-dual update (eqs. 18–20)
belongs to the training loop, which combines the parts returned here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glan_ray.nn.attention import AttentionPooling, PeriodicAttention
from glan_ray.nn.embedding import FieldEmbedding
from glan_ray.nn.init import init_weights
from glan_ray.nn.losses import huber
from glan_ray.nn.mmoe import MMoE
from glan_ray.nn.tower import Tower, inverse_softplus


@dataclass(frozen=True)
class LRTGConfig:
    """Architecture of L-RTG (GLAN §4.1)."""

    cat_cardinalities: tuple[int, ...]
    """Vocabulary size of each categorical field of x_cat (profile x and calendar fields)."""
    n_num: int
    """Number of numeric fields of x_num (statistical features t), standardised."""
    seq_dim: int = 2
    """Features per day of the behaviour sequence se (e.g. sessions, usage hours)."""
    seq_len: int = 30
    """Maximum sequence length L: the size of the learned positional table P (eq. 10)."""
    d_model: int = 32
    """Width d of every representation (field embeddings, H, e_context, e_p, e_d, z_k)."""
    n_heads: int = 2
    """Attention heads of the transformer encoder; must divide d_model."""
    n_layers: int = 2
    """Transformer encoder layers (eq. 10)."""
    n_experts: int = 4
    """Number M of experts generated from u (eq. 12)."""
    expert_hidden: int = 64
    """Hidden width of each expert MLP; the towers use d_model."""
    n_dist_buckets: int = 8
    """Number B of day-gap buckets of B_dist (eq. 7); see ``nn.attention.DIST_BUCKET_EDGES``."""
    dropout: float = 0.1
    """Dropout in the transformer and on the expert input u."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cat_cardinalities", tuple(self.cat_cardinalities))
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}; "
                "change one of them"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")
        if self.seq_len < 1 or self.n_dist_buckets < 1:
            raise ValueError("seq_len and n_dist_buckets must be >= 1")

    @property
    def n_fields(self) -> int:
        """Context fields: categorical + numeric."""
        return len(self.cat_cardinalities) + self.n_num


class LRTG(nn.Module):
    """Predicts next-day usage time ŷ_wt (the initial RTG R̂₁) and session count ŷ_se."""

    def __init__(self, cfg: LRTGConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.fields = FieldEmbedding(cfg.cat_cardinalities, cfg.n_num, d)
        self.ctx_proj = nn.Linear(cfg.n_fields * d, d)
        self.seq_proj = nn.Linear(cfg.seq_dim, d)
        self.periodic = PeriodicAttention(d, cfg.n_dist_buckets)
        self.pos = nn.Parameter(torch.randn(cfg.seq_len, d) * 0.02)  # P: (L_max, d)
        layer = nn.TransformerEncoderLayer(
            d, cfg.n_heads, 4 * d, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, cfg.n_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False
        )
        self.pool = AttentionPooling(d)
        self.drop = nn.Dropout(cfg.dropout)
        self.mmoe = MMoE(2 * d, cfg.n_experts, cfg.expert_hidden, d, n_tasks=2, gate_in=3 * d)
        self.tower_wt = Tower(d, d)
        self.tower_se = Tower(d, d)
        self.apply(init_weights)

    @torch.no_grad()
    def init_output_bias(self, wt_mean: float, se_mean: float) -> None:
        """Start ŷ_wt and ŷ_se near the training means (in the units of the targets)."""
        self.tower_wt.set_output_bias(inverse_softplus(wt_mean))
        self.tower_se.set_output_bias(inverse_softplus(se_mean))

    def forward(
        self,
        x_cat: Tensor,
        x_num: Tensor,
        seq: Tensor,
        seq_dt: Tensor,
        key_padding_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """x_cat (B, n_cat), x_num (B, n_num), seq (B, L, seq_dim), seq_dt (B, L) long days ago.

        ``key_padding_mask`` (B, L) bool, True = padded day (optional). Returns ``wt`` (B,) and
        ``se`` (B,) (softplus, >= 0) and ``gates`` (B, 2, M) for logging.
        """
        n_days = seq.shape[1]  # L
        if n_days > self.cfg.seq_len:
            raise ValueError(
                f"sequence length {n_days} exceeds LRTGConfig.seq_len={self.cfg.seq_len}; "
                "raise seq_len or truncate the sequence"
            )
        e_ctx = self.ctx_proj(self.fields(x_cat, x_num).flatten(1))  # (B, F*d) -> (B, d)
        h = self.seq_proj(seq)  # (B, L, d)
        e_p = self.periodic(e_ctx, h, seq_dt, key_padding_mask)  # (B, d)
        u = torch.cat([e_ctx, e_p], dim=-1)  # (B, 2d)

        enc_mask = key_padding_mask
        if enc_mask is not None:
            # A fully padded row would make the encoder's softmax NaN; let it attend to its
            # (meaningless) positions instead; pooling below still masks them to zero.
            enc_mask = enc_mask & ~enc_mask.all(dim=-1, keepdim=True)  # (B, L)
        hd = self.encoder(
            self.drop(h + self.pos[:n_days]), src_key_padding_mask=enc_mask
        )  # (B, L, d)
        e_d = self.pool(hd, key_padding_mask)  # (B, d)

        gate_x = torch.cat([e_d, u], dim=-1)  # (B, 3d)
        (z_wt, z_se), gates = self.mmoe(self.drop(u), gate_x, return_gates=True)  # 2 x (B, d)
        return {
            "wt": F.softplus(self.tower_wt(z_wt)),  # (B,)
            "se": F.softplus(self.tower_se(z_se)),  # (B,)
            "gates": gates,  # (B, 2, M)
        }


def lrtg_losses(
    out: dict[str, Tensor],
    y_wt: Tensor,
    y_se: Tensor,
    a: float,
    b: float,
    delta: float = 1.0,
) -> dict[str, Tensor]:
    """The three batch-mean losses of GLAN eqs. 15–17 (not yet combined).

    ``wt``: Huber_δ(ŷ_wt, y_wt); ``se``: MSE(ŷ_se, y_se); ``rel``: mean (ŷ_wt − a·ln(1 + ŷ_se)
    − b)², the structural-consistency term on predictions only. The trainer forms the
    Lagrangian L_wt + λ_se(L_se − ε_se) + λ_rel(L_rel − ε_rel) (eq. 18).
    """
    wt, se = out["wt"], out["se"]  # (B,), (B,)
    return {
        "wt": huber(wt, y_wt, delta=delta),
        "se": F.mse_loss(se, y_se),
        "rel": (wt - a * torch.log1p(se) - b).square().mean(),
    }


def fit_log_relation(y_wt: Tensor, y_se: Tensor) -> tuple[float, float]:
    """Least-squares (a, b) of y_wt ≈ a·ln(1 + y_se) + b on training labels (GLAN Fig. 2a)."""
    x = torch.log1p(y_se.double().flatten())  # (N,)
    design = torch.stack([x, torch.ones_like(x)], dim=1)  # (N, 2)
    sol = torch.linalg.lstsq(design, y_wt.double().flatten().unsqueeze(1)).solution  # (2, 1)
    return float(sol[0, 0]), float(sol[1, 0])
