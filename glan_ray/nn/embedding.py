"""Field embeddings: one d-dimensional vector per input field (GLAN App. A.2, eq. 32).

Categorical fields look up their own table; a numeric field j embeds as ``x_j · v_j + b_j`` with a
learned direction ``v_j`` and offset ``b_j``, so every field becomes a token that attention
(feature selection) can weigh. Numeric inputs are expected standardised (zero mean, unit
variance, as ``glan_ray.data.features.Normalizer`` produces); raw seconds would saturate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class FieldEmbedding(nn.Module):
    """Embeds ``n_cat`` categorical and ``n_num`` numeric fields into (B, n_cat + n_num, d).

    Either group may be empty; categorical fields come first in the output, in input order.
    """

    def __init__(self, cat_cardinalities: Sequence[int], n_num: int, d: int) -> None:
        super().__init__()
        if any(c < 1 for c in cat_cardinalities) or n_num < 0 or d < 1:
            raise ValueError(
                f"FieldEmbedding needs cardinalities >= 1, n_num >= 0, d >= 1; got "
                f"{tuple(cat_cardinalities)}, {n_num}, {d}"
            )
        self.n_cat = len(cat_cardinalities)
        self.n_num = n_num
        self.d = d
        embeddings = [nn.Embedding(c, d) for c in cat_cardinalities]
        self.cat = nn.ModuleList(embeddings)
        self.num_weight = nn.Parameter(torch.randn(n_num, d) / d**0.5)  # (n_num, d)
        self.num_bias = nn.Parameter(torch.zeros(n_num, d))  # (n_num, d)
        for emb in embeddings:  # after num_weight's draw, as before: the same seeded weights
            nn.init.normal_(emb.weight, std=d**-0.5)

    @property
    def n_fields(self) -> int:
        """Number of output tokens, n_cat + n_num."""
        return self.n_cat + self.n_num

    def forward(self, x_cat: Tensor, x_num: Tensor) -> Tensor:
        """x_cat (B, n_cat) long, x_num (B, n_num) float -> (B, n_cat + n_num, d)."""
        if x_cat.shape[-1] != self.n_cat or x_num.shape[-1] != self.n_num:
            raise ValueError(
                f"expected x_cat (B, {self.n_cat}) and x_num (B, {self.n_num}); "
                f"got {tuple(x_cat.shape)} and {tuple(x_num.shape)}"
            )
        batch = x_num.shape[0]
        cat = [emb(x_cat[:, j]) for j, emb in enumerate(self.cat)]  # n_cat x (B, d)
        e_cat = (
            torch.stack(cat, dim=1)  # (B, n_cat, d)
            if cat
            else x_num.new_zeros(batch, 0, self.d)
        )
        e_num = x_num.unsqueeze(-1) * self.num_weight + self.num_bias  # (B, n_num, d)
        return torch.cat([e_cat, e_num.to(e_cat.dtype)], dim=1)  # (B, n_cat + n_num, d)
