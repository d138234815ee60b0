"""KLAN-AM: context-aware fusion weight of static and dynamic page scores (KLAN §4.3, App. A.5).

Field embeddings of context ‖ long-term stats -> MMoE with one task per page -> one sigmoid
tower per page: w_k = weight of the static preference for page k (KLAN eq. 12). Trained with
BCE on the assigned page's tower only (label 1 = static interest). Fusion (eq. 13):
f_k = w_k·s_k + (1 − w_k)·d_k; the assigned page is argmax_k f_k (eq. 14).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glan_ray.nn.config import FieldMMoEConfig
from glan_ray.nn.embedding import FieldEmbedding
from glan_ray.nn.init import init_weights
from glan_ray.nn.mmoe import MMoE
from glan_ray.nn.tower import Tower


@dataclass(frozen=True)
class AMConfig(FieldMMoEConfig):
    """Architecture of KLAN-AM (KLAN §4.3)."""

    n_pages: int = 3
    """Number P of landing pages: one task and one sigmoid tower each."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_pages < 1:
            raise ValueError(f"n_pages must be >= 1; got {self.n_pages}")


class KlanAM(nn.Module):
    """Per-page static-preference weight w (B, P) from the request context."""

    def __init__(self, cfg: AMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d
        self.fields = FieldEmbedding(cfg.cat_cardinalities, cfg.n_num, d)
        self.mmoe = MMoE(cfg.n_fields * d, cfg.n_experts, cfg.expert_hidden, d, cfg.n_pages)
        self.towers = nn.ModuleList(Tower(d, cfg.tower_hidden) for _ in range(cfg.n_pages))
        self.apply(init_weights)

    def forward(self, x_cat: Tensor, x_num: Tensor) -> dict[str, Tensor]:
        """x_cat (B, n_cat), x_num (B, n_num) -> ``logit`` (B, P), ``w`` (B, P) in (0, 1),
        ``gates`` (B, P, M) for logging."""
        e = self.fields(x_cat, x_num).flatten(1)  # (B, F*d)
        z, gates = self.mmoe(e, return_gates=True)  # P x (B, d)
        logits = torch.stack([t(z_k) for t, z_k in zip(self.towers, z, strict=True)], -1)
        return {"logit": logits, "w": torch.sigmoid(logits), "gates": gates}  # (B, P) ...


def am_loss(out: dict[str, Tensor], page: Tensor, label: Tensor) -> Tensor:
    """BCE of the assigned page's tower only (KLAN App. A.5): page (B,) long, label (B,) 0/1.

    The other towers' logits are not selected, so they get no gradient from this sample.
    """
    logit = out["logit"].gather(1, page.unsqueeze(1)).squeeze(1)  # (B,)
    return F.binary_cross_entropy_with_logits(logit, label.to(logit.dtype))


def fuse(w: Tensor, static_scores: Tensor, interest_scores: Tensor) -> Tensor:
    """Fused score f = w·s + (1 − w)·d (KLAN eq. 13); all (B, P)."""
    return w * static_scores + (1.0 - w) * interest_scores
