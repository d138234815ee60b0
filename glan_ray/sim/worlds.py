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
        "regime_gain": 0.55,
        # a drop-off costs durations and returns 3 sessions later ...
        "lag_sessions": 3,
        "lag_dur_cost": 0.3,
        "lag_return_cost": 0.8,
        # ... and costs less at once than in the default world
        "sat_drop": -0.4,
        # the first session of the day sets the rest of the day
        "setpoint_return": 0.8,
        "setpoint_dur": 0.15,
        # intent holds through the day (and is smaller): earlier sessions tell about later ones
        "intent_std": 0.35,
        "intent_persistence": 0.98,
        # navigation (and so the exit page) depends less on hidden preferences
        "nav_pref_slope": 0.6,
        # static preferences a little tighter, Explore a little shorter: the calibration
        # targets (best constant page <= +1% vs logging, static share >= 0.30) hold
        "page_affinity_std": 0.45,
        "base_duration": (210.0, 140.0, 115.0),
        # longer days: about 10.7 sessions a day; the busiest users exceed one DT window (20)
        "base_rate": (3.2, 8.8, 17.5, 32.5),
        "max_planned": 40,
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
