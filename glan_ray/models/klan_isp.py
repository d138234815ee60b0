"""KLAN-ISP: treatment-specific uplift model of inter-day static page preference.

KLAN §4.1, App. A.2–A.3; SPEC §3.4 fixes the forms the paper's text lost. Branch k (page k,
treatment k + 1): e_k = E_t[k]; e_u,k = FS_k(e_o, e_k) (KLAN eq. 2 / App. A.2);
f_k = [e_u,k ‖ e_k] (eq. 3); M experts and two gates give z¹_k, z⁰_k; ŷ¹_k = softplus(h¹_k(z¹_k)),
ŷ⁰_k = softplus(h⁰_k(z⁰_k)) (eq. 4). Loss (eq. 5, ``isp_loss``): MSE of the treated branch's ŷ¹
on treated samples, MSE of every ŷ⁰_k on control samples, β·Σ_{k<j} KL(z⁰_k, z⁰_j).
Inference (eq. 6): τ_k = ŷ¹_k − mean_j ŷ⁰_j, s = softmax(τ / T).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glan_ray.nn.config import FieldMMoEConfig
from glan_ray.nn.embedding import FieldEmbedding
from glan_ray.nn.feature_selection import PageFeatureSelection
from glan_ray.nn.init import init_weights
from glan_ray.nn.losses import masked_mse
from glan_ray.nn.mmoe import MMoE
from glan_ray.nn.tower import Tower, inverse_softplus


@dataclass(frozen=True)
class ISPConfig(FieldMMoEConfig):
    """Architecture of KLAN-ISP (KLAN §4.1)."""

    n_treatments: int = 3
    """Number K of treatment branches (landing pages); the data's treatment 0 is control."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_treatments < 1:
            raise ValueError(f"n_treatments must be >= 1; got {self.n_treatments}")


class ISPBranch(nn.Module):
    """One treatment branch: experts, a treated gate and a control gate, two towers."""

    def __init__(self, cfg: ISPConfig) -> None:
        super().__init__()
        self.mmoe = MMoE(2 * cfg.d, cfg.n_experts, cfg.expert_hidden, cfg.d, n_tasks=2)
        self.tower1 = Tower(cfg.d, cfg.tower_hidden)
        self.tower0 = Tower(cfg.d, cfg.tower_hidden)

    def forward(self, f: Tensor) -> dict[str, Tensor]:
        """f (B, 2d) -> y1 (B,), y0 (B,), z1 (B, d), z0 (B, d), gates (B, 2, M)."""
        (z1, z0), gates = self.mmoe(f, return_gates=True)  # (B, d) each
        y1 = F.softplus(self.tower1(z1))  # (B,)
        y0 = F.softplus(self.tower0(z0))  # (B,)
        return {"y1": y1, "y0": y0, "z1": z1, "z0": z0, "gates": gates}


class KlanISP(nn.Module):
    """Responses under each treatment ŷ¹ (B, K) and under no treatment ŷ⁰ (B, K), per branch."""

    def __init__(self, cfg: ISPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        K = cfg.n_treatments
        self.fields = FieldEmbedding(cfg.cat_cardinalities, cfg.n_num, cfg.d)
        self.treat_emb = nn.Embedding(K, cfg.d)
        nn.init.normal_(self.treat_emb.weight, std=cfg.d**-0.5)
        # one (W, b) group per treatment: FS_k of KLAN App. A.2
        self.select = PageFeatureSelection(cfg.n_fields, cfg.d, tuple(range(K)))
        self.branches = nn.ModuleList(ISPBranch(cfg) for _ in range(K))
        self.apply(init_weights)

    @torch.no_grad()
    def init_output_bias(self, response_mean: float) -> None:
        """Start every ŷ¹_k and ŷ⁰_k near the training mean response."""
        bias = inverse_softplus(max(response_mean, 1e-3))
        for branch in self.branches:
            assert isinstance(branch, ISPBranch)  # a ModuleList's items are typed Module
            branch.tower1.set_output_bias(bias)
            branch.tower0.set_output_bias(bias)

    def forward(self, x_cat: Tensor, x_num: Tensor) -> dict[str, Tensor]:
        """x_cat (B, n_cat), x_num (B, n_num) -> dict.

        ``y1`` (B, K), ``y0`` (B, K) (softplus, ≥ 0), ``z0`` (B, K, d) and ``z1`` (B, K, d) the
        gate outputs, ``gates`` (B, K, 2, M) (treated gate, control gate) for logging.
        """
        e_o = self.fields(x_cat, x_num)  # (B, F, d)
        B = e_o.shape[0]
        outs = []
        for k, branch in enumerate(self.branches):
            t = torch.full((B,), k, dtype=torch.long, device=e_o.device)  # (B,)
            e_t = self.treat_emb(t)  # (B, d)
            e_u, _ = self.select(e_o, e_t, t)  # (B, d)
            outs.append(branch(torch.cat([e_u, e_t], dim=-1)))  # f_k: (B, 2d)
        return {key: torch.stack([o[key] for o in outs], dim=1) for key in outs[0]}


def branch_kl(z0: Tensor) -> Tensor:
    """Σ_{k<j} symmetric KL between the branches' softmax-normalised z⁰, batch mean.

    z0 (B, K, H). p_k = softmax(z⁰_k) over H; the pair term is ½[KL(p_k‖p_j) + KL(p_j‖p_k)],
    symmetric so the sum does not depend on branch order. ≥ 0, and 0 iff the branches' p agree.
    """
    logp = F.log_softmax(z0, dim=-1)  # (B, K, H)
    p = logp.exp()  # (B, K, H)
    # kl[b, k, j] = KL(p_k ‖ p_j) = Σ_h p_k (log p_k − log p_j)
    kl = (p.unsqueeze(2) * (logp.unsqueeze(2) - logp.unsqueeze(1))).sum(-1)  # (B, K, K)
    # Σ_{k<j} ½(KL_kj + KL_jk) = ½ Σ_{k≠j} KL_kj; the diagonal is 0
    return 0.5 * kl.sum(dim=(1, 2)).mean()


def isp_loss(
    out: dict[str, Tensor], treatment: Tensor, response: Tensor, beta: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """KLAN eq. 5: masked treated MSE + control MSE + β·branch KL.

    treatment (B,) long: 0 = control, k = branch k − 1. ``y1``: mean over treated samples of
    (ŷ¹_{t_i − 1} − y_i)², other branches' ŷ¹ are masked out (they get no gradient). ``y0``: mean
    over control samples and all K branches of (ŷ⁰_k − y_i)². ``kl``: ``branch_kl(z0)`` over the
    whole batch. Either MSE is 0 when its group is absent from the batch.
    """
    y1, y0 = out["y1"], out["y0"]  # (B, K)
    K = y1.shape[1]
    branch = torch.arange(1, K + 1, device=treatment.device)  # (K,)
    treated = treatment.unsqueeze(1) == branch  # (B, K), one True per treated row
    control = (treatment == 0).unsqueeze(1)  # (B, 1)
    target = response.to(y1.dtype).unsqueeze(1)  # (B, 1)
    l1 = masked_mse(y1, target, treated)
    l0 = masked_mse(y0, target, control)
    kl = branch_kl(out["z0"])
    total = l1 + l0 + beta * kl
    return total, {"y1": l1.detach(), "y0": l0.detach(), "kl": kl.detach()}


def uplift(out: dict[str, Tensor]) -> Tensor:
    """τ_k = ŷ¹_k − ȳ⁰ with ȳ⁰ = mean_k ŷ⁰_k (KLAN §4.1.3): (B, K)."""
    return out["y1"] - out["y0"].mean(dim=-1, keepdim=True)


def static_scores(out: dict[str, Tensor], temperature: float = 1.0) -> Tensor:
    """Static preference scores s = softmax(τ / T) over the K pages (KLAN eq. 6): (B, K)."""
    return torch.softmax(uplift(out) / temperature, dim=-1)
