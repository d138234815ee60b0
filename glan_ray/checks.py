"""Range checks declared with the config field they guard.

    @dataclass(frozen=True)
    class C:
        eps_se: float = ranged(6.0, gt=0)
        \"\"\"ε_se: ...\"\"\"

        def __post_init__(self) -> None:
            check_fields(self)

``check_fields`` raises ``ValueError`` naming the class, the field, the valid range and the value
given (``LRTGTrainConfig.eps_se must be > 0; got -3``); NaN and infinities never pass a range.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

RANGE = "range"
"""The dataclass field metadata key holding a field's ``Range``."""


@dataclass(frozen=True)
class Range:
    """An interval; None bounds are open-ended."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def holds(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return False
        return not (
            (self.gt is not None and not v > self.gt)
            or (self.ge is not None and not v >= self.ge)
            or (self.lt is not None and not v < self.lt)
            or (self.le is not None and not v <= self.le)
        )

    def describe(self) -> str:
        parts = [f"{op} {b:g}" for op, b in ((">", self.gt), (">=", self.ge), ("<", self.lt),
                                             ("<=", self.le)) if b is not None]  # fmt: skip
        return " and ".join(parts) if parts else "a finite number"


def ranged(
    default: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
) -> Any:
    """A dataclass field with ``default`` and a valid range (checked by ``check_fields``); a
    None default (or value) means "unset" and is not checked."""
    return dataclasses.field(default=default, metadata={RANGE: Range(gt, ge, lt, le)})


def check_fields(obj: Any) -> None:
    """Check every ``ranged`` field of the dataclass instance ``obj``."""
    for f in dataclasses.fields(obj):
        r = f.metadata.get(RANGE)
        v = getattr(obj, f.name)
        if r is not None and v is not None and not r.holds(v):
            raise ValueError(f"{type(obj).__name__}.{f.name} must be {r.describe()}; got {v!r}")


__all__ = ["Range", "check_fields", "ranged"]
