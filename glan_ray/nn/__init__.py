"""Shared neural layers and losses for the glan-ray models (plain PyTorch, no Ray)."""

from glan_ray.nn.attention import AttentionPooling, PeriodicAttention, dist_bucket
from glan_ray.nn.embedding import FieldEmbedding
from glan_ray.nn.feature_selection import PageFeatureSelection
from glan_ray.nn.losses import focal_bce, huber, masked_mse
from glan_ray.nn.mmoe import MMoE
from glan_ray.nn.tower import Tower

__all__ = [
    "AttentionPooling",
    "FieldEmbedding",
    "MMoE",
    "PageFeatureSelection",
    "PeriodicAttention",
    "Tower",
    "dist_bucket",
    "focal_bce",
    "huber",
    "masked_mse",
]
