"""The architecture fields shared by the field-embedding + MMoE models (HRM, KLAN-ISP, KLAN-AM)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldMMoEConfig:
    """Field embeddings of x_cat ‖ x_num feeding an MMoE with MLP towers."""

    cat_cardinalities: tuple[int, ...]
    """Vocabulary size of each categorical field of x_cat."""
    n_num: int
    """Number of numeric fields of x_num, standardised (see ``data.features``)."""
    d: int = 16
    """Embedding width d of every field; also the experts' output width."""
    n_experts: int = 4
    """Number of MMoE experts."""
    expert_hidden: int = 64
    """Hidden width of each expert MLP."""
    tower_hidden: int = 32
    """Hidden width of each output tower."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cat_cardinalities", tuple(self.cat_cardinalities))

    @property
    def n_fields(self) -> int:
        """Input fields (categorical + numeric), not counting the page or treatment."""
        return len(self.cat_cardinalities) + self.n_num
