"""Counts gathered while simulating, and the summary ``glan-ray simulate`` prints at the end."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from glan_ray.schema import N_PAGES, PAGES
from glan_ray.sim.engine import DayLog


@dataclass
class SimSummary:
    """Totals over the simulated user-days. Add two with ``+``."""

    rows: dict[str, int] = field(default_factory=dict)
    user_days: int = 0
    active_user_days: int = 0
    multi_session_user_days: int = 0
    sessions: int = 0
    dropoffs: int = 0
    usage_time: float = 0.0
    assigns: list[int] = field(default_factory=lambda: [0] * N_PAGES)

    @classmethod
    def of_day(cls, log: DayLog, rows: dict[str, int]) -> SimSummary:
        s = log.sessions
        actions = s["action"] if s else np.zeros(0, dtype=np.int8)
        return cls(
            rows=dict(rows),
            user_days=len(log.users),
            active_user_days=int(log.active.sum()),
            multi_session_user_days=int((log.y_se > 1).sum()),
            sessions=len(actions),
            dropoffs=int(s["y_sw"].sum()) if s else 0,
            usage_time=float(log.y_wt.sum()),
            assigns=np.bincount(actions, minlength=N_PAGES).tolist(),
        )

    def __add__(self, other: SimSummary) -> SimSummary:
        rows = {
            k: self.rows.get(k, 0) + other.rows.get(k, 0)
            for k in dict.fromkeys([*self.rows, *other.rows])
        }
        return SimSummary(
            rows=rows,
            user_days=self.user_days + other.user_days,
            active_user_days=self.active_user_days + other.active_user_days,
            multi_session_user_days=self.multi_session_user_days + other.multi_session_user_days,
            sessions=self.sessions + other.sessions,
            dropoffs=self.dropoffs + other.dropoffs,
            usage_time=self.usage_time + other.usage_time,
            assigns=[a + b for a, b in zip(self.assigns, other.assigns, strict=True)],
        )

    @property
    def drop_off_ratio(self) -> float:
        """PDR: share of sessions whose landing page was left within τ."""
        return self.dropoffs / max(self.sessions, 1)

    @property
    def sessions_per_active_user_day(self) -> float:
        return self.sessions / max(self.active_user_days, 1)

    @property
    def assign_ratios(self) -> dict[str, float]:
        total = max(sum(self.assigns), 1)
        return {p: a / total for p, a in zip(PAGES, self.assigns, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            drop_off_ratio=self.drop_off_ratio,
            sessions_per_active_user_day=self.sessions_per_active_user_day,
            assign_ratios=self.assign_ratios,
        )
        return d

    def format(self) -> str:
        """A plain-text table for the terminal."""
        lines = ["dataset        rows"]
        lines += [f"{name:<14} {n:>12,}" for name, n in self.rows.items()]
        share = self.multi_session_user_days / max(self.active_user_days, 1)
        lines += [
            "",
            f"user-days            {self.user_days:,} ({self.active_user_days:,} active)",
            f"sessions             {self.sessions:,}",
            f"sessions/user-day    {self.sessions_per_active_user_day:.2f} (active days; "
            f"{share:.0%} with >1 session)",
            f"drop-off ratio (PDR) {self.drop_off_ratio:.3f}",
            "page assign ratios   "
            + ", ".join(f"{p} {r:.1%}" for p, r in self.assign_ratios.items()),
            f"usage time/user-day  {self.usage_time / max(self.user_days, 1) / 60:.1f} min",
        ]
        return "\n".join(lines)
