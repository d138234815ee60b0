"""The architecture fields shared by the field-embedding + MMoE models (HRM, KLAN-ISP, KLAN-AM)."""

from __future__ import annotations

from dataclasses import dataclass

from glan_ray.checks import check_fields, ranged


@dataclass(frozen=True)
class FieldMMoEConfig:
    """Field embeddings of x_cat ‖ x_num feeding an MMoE with MLP towers."""

    cat_cardinalities: tuple[int, ...]
    """Vocabulary size of each categorical field of x_cat."""
    n_num: int
    """Number of numeric fields of x_num, standardised (see ``data.features``)."""
    d: int = ranged(16, ge=1)
    """Embedding width d of every field; also the experts' output width."""
    n_experts: int = ranged(4, ge=1)
    """Number of MMoE experts."""
    expert_hidden: int = ranged(64, ge=1)
    """Hidden width of each expert MLP."""
    tower_hidden: int = ranged(32, ge=1)
    """Hidden width of each output tower."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cat_cardinalities", tuple(self.cat_cardinalities))
        check_fields(self)
        bad = [
            c
            for c in self.cat_cardinalities
            if isinstance(c, bool) or not isinstance(c, int) or c < 1
        ]
        if isinstance(self.n_num, bool) or not isinstance(self.n_num, int) or self.n_num < 0:
            raise ValueError(
                f"{type(self).__name__}.n_num must be an integer >= 0; got {self.n_num!r}"
            )
        if bad:
            raise ValueError(
                f"{type(self).__name__}.cat_cardinalities must be integers >= 1; got {bad}"
            )

    @property
    def n_fields(self) -> int:
        """Input fields (categorical + numeric), not counting the page or treatment."""
        return len(self.cat_cardinalities) + self.n_num
