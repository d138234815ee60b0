"""Weight initialisation shared by the models."""

from __future__ import annotations

from torch import nn


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform Linear weights and zero biases; use as ``model.apply(init_weights)``.

    The models are narrow (d = 16..32) and mostly un-normalised, so a variance-preserving init
    keeps signals O(1) through embedding -> expert -> tower; nanoGPT's N(0, 0.02) suits d = 768
    behind LayerNorms and would shrink activations here. Embeddings and attention biases keep
    the init of the layer that owns them.
    """
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
