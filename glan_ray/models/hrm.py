"""HRM: the hierarchical reward model of a session (GLAN §4.2, App. A.2, SPEC §3.2).

Field embeddings e_o of the non-page fields (x ‖ c ‖ v), page embedding e_k; page-specific
feature selection e_u = FS(e_o, e_k) (eqs. 21, 33); f = [e_u ‖ e_k] (eq. 22) -> MMoE with
P + 1 tasks (eq. 23); T̂^j = softplus(h_j(z_j)), ŷ_sw = σ(h_sw(z_sw)) (eq. 24).
Loss Σ_j Huber(T̂^j, T^j) + λ·FocalBCE_γ (eqs. 25–27); reward r̂ = (1 − ŷ_sw)·Σ_j T̂^j (eq. 28).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glan_ray.nn.config import FieldMMoEConfig
from glan_ray.nn.embedding import FieldEmbedding
from glan_ray.nn.feature_selection import PageFeatureSelection
from glan_ray.nn.init import init_weights
from glan_ray.nn.losses import focal_bce, huber
from glan_ray.nn.mmoe import MMoE
from glan_ray.nn.tower import Tower, inverse_softplus, logit


@dataclass(frozen=True)
class HRMConfig(FieldMMoEConfig):
    """Architecture of HRM (GLAN §4.2)."""

    n_pages: int = 3
    """Number P of landing pages: the duration towers T̂¹..T̂ᴾ and the page vocabulary."""
    page_groups: tuple[int, ...] = (0, 1, 1)
    """Feature-selection group of each page; pages in one group share (W, b) of eq. 33
    (App. A.2: "shared across the corresponding page branches")."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "page_groups", tuple(self.page_groups))
        if len(self.page_groups) != self.n_pages:
            raise ValueError(
                f"page_groups has {len(self.page_groups)} entries but n_pages={self.n_pages}; "
                "give one group id per page"
            )


class HRM(nn.Module):
    """Per-page durations T̂ (B, P) and the landing-page drop-off probability ŷ_sw (B,)."""

    def __init__(self, cfg: HRMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d
        self.fields = FieldEmbedding(cfg.cat_cardinalities, cfg.n_num, d)
        self.page_emb = nn.Embedding(cfg.n_pages, d)
        nn.init.normal_(self.page_emb.weight, std=d**-0.5)
        self.select = PageFeatureSelection(cfg.n_fields, d, cfg.page_groups)
        self.mmoe = MMoE(2 * d, cfg.n_experts, cfg.expert_hidden, d, n_tasks=cfg.n_pages + 1)
        self.dur_towers = nn.ModuleList(Tower(d, cfg.tower_hidden) for _ in range(cfg.n_pages))
        self.sw_tower = Tower(d, cfg.tower_hidden)
        self.apply(init_weights)

    @torch.no_grad()
    def init_output_bias(self, dur_means: Sequence[float], sw_rate: float) -> None:
        """Start T̂^j at the training mean duration of page j and ŷ_sw at the drop-off rate."""
        for tower, mean in zip(self.dur_towers, dur_means, strict=True):
            assert isinstance(tower, Tower)  # a ModuleList's items are typed Module
            tower.set_output_bias(inverse_softplus(max(mean, 1e-3)))
        self.sw_tower.set_output_bias(logit(min(max(sw_rate, 1e-3), 1 - 1e-3)))

    def forward(self, x_cat: Tensor, x_num: Tensor, page: Tensor) -> dict[str, Tensor]:
        """x_cat (B, n_cat), x_num (B, n_num), page (B,) long landing page k.

        Returns ``dur`` (B, P) ≥ 0, ``logit_sw`` (B,), ``p_sw`` (B,), plus ``fs_weights``
        (B, F) and ``gates`` (B, P + 1, M) for logging.
        """
        e_o = self.fields(x_cat, x_num)  # (B, F, d)
        e_k = self.page_emb(page)  # (B, d)
        e_u, w = self.select(e_o, e_k, page)  # (B, d), (B, F)
        f = torch.cat([e_u, e_k], dim=-1)  # (B, 2d)
        z, gates = self.mmoe(f, return_gates=True)  # (P + 1) x (B, d)
        dur = torch.stack([t(z_j) for t, z_j in zip(self.dur_towers, z[:-1], strict=True)], -1)
        logit_sw = self.sw_tower(z[-1])  # (B,)
        return {
            "dur": F.softplus(dur),  # (B, P)
            "logit_sw": logit_sw,  # (B,)
            "p_sw": torch.sigmoid(logit_sw),  # (B,)
            "fs_weights": w,  # (B, F)
            "gates": gates,  # (B, P + 1, M)
        }


def hrm_reward(dur: Tensor, p_sw: Tensor) -> Tensor:
    """Session reward r̂ = (1 − ŷ_sw)·Σ_j T̂^j (GLAN eq. 28): dur (B, P), p_sw (B,) -> (B,)."""
    return (1.0 - p_sw) * dur.sum(dim=-1)


def hrm_loss(
    out: dict[str, Tensor],
    dur_target: Tensor,
    y_sw: Tensor,
    lam: float,
    gamma: float,
    delta: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Σ_j Huber_δ(T̂^j, T^j) + λ·FocalBCE_γ(ŷ_sw, y_sw) (GLAN eqs. 25–27).

    dur_target (B, P) in the units of ``dur``; y_sw (B,) float 0/1. Each Huber term is a batch
    mean. Parts (detached): ``reg``, ``sw`` and ``reg_j`` for each page j.
    """
    dur = out["dur"]  # (B, P)
    per_page = [huber(dur[:, j], dur_target[:, j], delta=delta) for j in range(dur.shape[1])]
    reg = torch.stack(per_page).sum()
    sw = focal_bce(out["logit_sw"], y_sw.to(dur.dtype), gamma=gamma)
    total = reg + lam * sw
    parts = {"reg": reg.detach(), "sw": sw.detach()}
    parts.update({f"reg_{j}": t.detach() for j, t in enumerate(per_page)})
    return total, parts
