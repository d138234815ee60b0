"""Budgets by convergence: when a learner may stop before its budget, and why it did.

``Plateau`` is checked once per epoch (Ray Train) or per ``train()`` (RLlib): a held-out loss
(or score) that has not improved by ``min_delta`` (relative to the best so far) for
``patience`` checks stops the run; the best check's weights are the ones to keep where the
value is a held-out loss. The supervised models read their ``VAL_METRIC``, the DT its held-out
cross-entropy, CQL its held-out Q-level, which stops rising once the bootstrap has converged
(``rllib.heldout``). A plain object without Ray, shared by the Ray Train loop, the RL driver
and the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Plateau:
    """Stop when ``metric`` has not improved by ``min_delta`` (relative) for ``patience`` checks."""

    metric: str
    """Name of the held-out metric (for the reason)."""
    mode: str = "min"
    """``min`` (a loss) or ``max`` (a score)."""
    patience: int = 2
    """Checks without improvement before stopping."""
    min_delta: float = 0.0
    """Relative improvement over the best that counts, e.g. 0.01: 1% lower loss."""
    best: float | None = None
    best_check: int = -1
    checks: int = 0
    since_best: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {self.mode!r}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1; got {self.patience}")
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0; got {self.min_delta}")

    def update(self, value: float | None) -> bool:
        """Record one check; True when it is the best so far (its weights are the ones to keep).
        A missing or non-finite value never improves (it counts towards patience)."""
        self.checks += 1
        if (
            value is not None
            and math.isfinite(value)
            and (self.best is None or self._better(float(value), self.best))
        ):
            self.best, self.best_check, self.since_best = float(value), self.checks, 0
            return True
        self.since_best += 1
        return False

    def _better(self, value: float, best: float) -> bool:
        margin = self.min_delta * abs(best)
        return value < best - margin if self.mode == "min" else value > best + margin

    @property
    def stop(self) -> bool:
        return self.since_best >= self.patience

    def reason(self, unit: str = "check") -> str:
        """Why the run stopped (or would have), for the run log."""
        best = "none" if self.best is None else f"{self.best:.4g}"
        return (
            f"{self.metric} did not improve by {self.min_delta:.0%} for {self.since_best} "
            f"{unit}(s) (patience {self.patience}); best {best} at {unit} {self.best_check}"
        )
