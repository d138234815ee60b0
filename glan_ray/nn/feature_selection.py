"""Page-specific feature selection: target attention over field embeddings (GLAN App. A.2).

w = softmax(W^g e_k + b^g) ∈ R^F,  e_u = Σ_j w_j e_o,j  (GLAN eq. 33), with W^g ∈ R^{F×d},
b^g ∈ R^F. g = page_groups[k]: pages with similar semantics share one (W, b) ("shared across
the corresponding page branches"). KLAN-ISP uses the same layer with one group per treatment
(KLAN App. A.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class PageFeatureSelection(nn.Module):
    """Soft selection of F field embeddings guided by the page (or treatment) embedding."""

    page_to_group: Tensor
    """(P,) long: each page's group id (a non-persistent buffer)."""

    def __init__(self, n_fields: int, d: int, page_groups: Sequence[int]) -> None:
        super().__init__()
        groups = tuple(int(g) for g in page_groups)
        n_groups = max(groups, default=-1) + 1
        if not groups or set(groups) != set(range(n_groups)):
            raise ValueError(
                f"page_groups must map each page to a group id 0..G-1, using every id; got {groups}"
            )
        if n_fields < 1:
            raise ValueError(f"PageFeatureSelection needs n_fields >= 1; got {n_fields}")
        self.n_fields = n_fields
        self.page_groups = groups
        self.weight = nn.Parameter(torch.randn(n_groups, n_fields, d) * 0.02)  # (G, F, d)
        self.bias = nn.Parameter(torch.zeros(n_groups, n_fields))  # (G, F)
        # page -> group lookup; derived from the config, so not part of the state_dict
        self.register_buffer("page_to_group", torch.tensor(groups), persistent=False)

    def selection_weights(self, e_page: Tensor, page: Tensor) -> Tensor:
        """w: e_page (B, d), page (B,) long -> (B, F), rows sum to 1."""
        g = self.page_to_group[page]  # (B,)
        logits = torch.einsum("bfd,bd->bf", self.weight[g], e_page) + self.bias[g]  # (B, F)
        return torch.softmax(logits, dim=-1)

    def forward(self, e_fields: Tensor, e_page: Tensor, page: Tensor) -> tuple[Tensor, Tensor]:
        """e_fields (B, F, d), e_page (B, d), page (B,) -> (e_u (B, d), w (B, F))."""
        w = self.selection_weights(e_page, page)  # (B, F)
        e_u = torch.einsum("bf,bfd->bd", w, e_fields)  # (B, d)
        return e_u, w
