"""Named simulated worlds: ``default`` (the calibrated PLPM world) and ``premise`` (issue 27).

A world is a set of ``SimConfig`` overrides. ``premise`` turns on the mechanisms under which the
GLAN paper's premises hold: a hidden in-day regime that the sequence reveals, costs that arrive
sessions after the page that caused them, an early-day set-point, and longer days (some longer
than one DT window). Its targets (``PREMISE_TARGETS``, docs/simulator.md) were written down
before any policy was trained in it, and its knobs were set from the premise diagnostics
(``glan_ray.diagnose``), never from an A/B.
"""

from __future__ import annotations

from typing import Any

from glan_ray.sim.config import SimConfig

WORLDS: dict[str, dict[str, Any]] = {
    "default": {},
    "premise": {
        # a hidden resume/switch regime of the day, read from how resumed landings held
        "regime_gain": 0.5,
        # a drop-off (or a Featured binge) costs durations and returns 3 sessions later ...
        "lag_sessions": 3,
        "lag_dur_cost": 0.25,
        "lag_return_cost": 0.6,
        "lag_binge_debt": 0.5,
        # ... and costs less at once than in the default world
        "sat_drop": -0.4,
        # the first session of the day sets the rest of the day
        "setpoint_return": 0.5,
        "setpoint_dur": 0.15,
        # intent holds through the day: earlier sessions tell a policy about the later ones
        "intent_persistence": 0.97,
        # longer days: the busiest users exceed one DT window (20 sessions)
        "base_rate": (2.1, 5.6, 11.2, 20.8),
        "max_planned": 30,
    },
}
"""World name -> SimConfig overrides."""


def world_overrides(name: str) -> dict[str, Any]:
    """The SimConfig overrides of world ``name``; an unknown name raises, listing the worlds."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; the worlds are: {', '.join(WORLDS)}")
    return dict(WORLDS[name])


def world_config(name: str, seed: int = 0, **overrides: Any) -> SimConfig:
    """SimConfig of world ``name`` with ``seed``; ``overrides`` (SimConfig fields) win."""
    return SimConfig.from_dict({**world_overrides(name), **overrides, "seed": seed})


__all__ = ["WORLDS", "world_config", "world_overrides"]
