"""Loss functions shared by the supervised models; pure, elementwise-then-reduced.

Every function returns a scalar mean. ``weight`` (where offered) must broadcast to the
prediction's shape; the mean is then Σ w·ℓ / Σ w (0 when all weights are 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _weighted_mean(loss: Tensor, weight: Tensor | None) -> Tensor:
    if weight is None:
        return loss.mean()
    weight = torch.broadcast_to(weight, loss.shape).to(loss.dtype)
    return (loss * weight).sum() / weight.sum().clamp_min(1e-12)


def huber(pred: Tensor, target: Tensor, delta: float = 1.0, weight: Tensor | None = None) -> Tensor:
    """Huber loss (GLAN eq. 15): ½r² if |r| <= δ else δ(|r| − ½δ), r = pred − target."""
    loss = F.huber_loss(pred, target, reduction="none", delta=delta)
    return _weighted_mean(loss, weight)


def focal_bce(
    logits: Tensor,
    target: Tensor,
    gamma: float = 2.0,
    alpha: float | None = None,
    weight: Tensor | None = None,
) -> Tensor:
    """Focal binary cross-entropy from logits (GLAN eq. 26; Lin et al., 2017).

    ℓ = −[y (1 − p)^γ log p + (1 − y) p^γ log(1 − p)], p = σ(logits). The factor
    (1 − p_t) is computed as σ(∓logits), never as 1 − p, so confident predictions keep precision;
    with γ = 0 (and no α) this is exactly ``F.binary_cross_entropy_with_logits``. ``alpha``
    weights positives by α and negatives by 1 − α.
    """
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if gamma != 0.0:
        one_minus_pt = target * torch.sigmoid(-logits) + (1 - target) * torch.sigmoid(logits)
        ce = one_minus_pt.pow(gamma) * ce
    if alpha is not None:
        ce = (alpha * target + (1 - alpha) * (1 - target)) * ce
    return _weighted_mean(ce, weight)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean of (pred − target)² over the entries where ``mask`` (bool, broadcastable) is True.

    Masked entries are selected out before any arithmetic, so they get no gradient even when
    they hold inf/NaN; an empty mask gives 0 (still attached to the graph).
    """
    mask = torch.broadcast_to(mask.bool(), pred.shape)
    target = torch.broadcast_to(target, pred.shape)
    diff = pred[mask] - target[mask]  # (n_selected,)
    return diff.square().sum() / mask.sum().clamp_min(1)  # no host sync on GPU
