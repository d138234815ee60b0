"""Named simulated worlds: ``default`` (the calibrated PLPM world) and ``premise`` (issue 27).

A world is a set of ``SimConfig`` overrides. ``premise`` turns on the mechanisms under which the
GLAN paper's premises hold: a hidden in-day regime that the sequence reveals, costs that arrive
sessions after the page that caused them, an early-day set-point, and longer days (some longer
than one DT window). Its targets (``PREMISE_TARGETS``, docs/simulator.md) were written down
before any policy was trained in it, and its knobs were set from the premise diagnostics
(``glan_ray.diagnose``), never from an A/B.

A world spec may scale a named world: ``premise:strength=0.5,stochasticity=2`` (``WorldSpec``).
``strength`` moves every override of the named world from the default world's value (0) to its
own (1; beyond 1 it extrapolates, within each field's valid range): integers are rounded, tuples
move elementwise. ``stochasticity`` multiplies the log-normal noise of page durations
(``duration_sigma``), the part of a day's return that is the user's luck and no page's doing (the
mean duration grows with it, by exp(σ²/2)). ``glan-ray sweep-worlds`` maps the winner over a grid
of both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
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


@dataclass(frozen=True)
class WorldSpec:
    """A named world scaled: ``NAME[:strength=S,stochasticity=Z]`` (module docstring)."""

    name: str
    """A world of ``WORLDS``."""
    strength: float = 1.0
    """0: the default world's values; 1: the named world's; in between, interpolated."""
    stochasticity: float = 1.0
    """Multiplier (> 0) of the page durations' log-normal noise (``duration_sigma``)."""

    KEYS = ("strength", "stochasticity")

    def __post_init__(self) -> None:
        if self.name not in WORLDS:
            raise ValueError(f"unknown world {self.name!r}; the worlds are: {', '.join(WORLDS)}")
        if not self.strength >= 0 or self.strength == float("inf"):
            raise ValueError(f"world {self.name!r}: strength must be finite and >= 0; "
                             f"got {self.strength}")  # fmt: skip
        if not 0 < self.stochasticity < float("inf"):
            raise ValueError(f"world {self.name!r}: stochasticity must be finite and > 0; "
                             f"got {self.stochasticity}")  # fmt: skip

    @classmethod
    def parse(cls, spec: str) -> WorldSpec:
        """``premise``, ``premise:strength=0.5`` or ``default:stochasticity=2``."""
        name, _, rest = spec.partition(":")
        fields: dict[str, float] = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq or key not in cls.KEYS:
                raise ValueError(f"world {spec!r}: expected NAME[:KEY=VALUE,...] with KEY in "
                                 f"{', '.join(cls.KEYS)}; got {item!r}")  # fmt: skip
            try:
                fields[key] = float(value)
            except ValueError:
                raise ValueError(f"world {spec!r}: {key} must be a number; got {value!r}") from None
        return cls(name, **fields)

    def format(self) -> str:
        """The spec string (the bare name when nothing is scaled)."""
        if self.strength == 1.0 and self.stochasticity == 1.0:
            return self.name
        return f"{self.name}:strength={self.strength:g},stochasticity={self.stochasticity:g}"

    def overrides(self) -> dict[str, Any]:
        """SimConfig overrides of this spec."""
        base = {f.name: f.default for f in dataclasses.fields(SimConfig)}
        out = {k: _between(base[k], v, self.strength) for k, v in WORLDS[self.name].items()}
        if self.stochasticity != 1.0:
            sigma = out.get("duration_sigma", base["duration_sigma"])
            out["duration_sigma"] = sigma * self.stochasticity
        return out


def _between(default: Any, target: Any, s: float) -> Any:
    """``default`` moved a share ``s`` of the way to ``target`` (ints rounded, tuples
    elementwise)."""
    if s == 1.0:
        return target
    if isinstance(target, tuple):
        return tuple(_between(d, t, s) for d, t in zip(default, target, strict=True))
    value = default + s * (target - default)
    return round(value) if isinstance(target, int) and not isinstance(target, bool) else value


def world_overrides(name: str) -> dict[str, Any]:
    """The SimConfig overrides of world ``name`` (a ``WorldSpec`` string); an unknown name
    raises, listing the worlds."""
    if name in WORLDS:
        return dict(WORLDS[name])
    return WorldSpec.parse(name).overrides()


def parse_world(spec: str) -> str:
    """``spec`` checked (a world name or a ``WorldSpec``); for argparse's ``type=``: a bad spec
    is an ``argparse.ArgumentTypeError`` carrying the reason."""
    import argparse

    try:
        world_overrides(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return spec


def world_config(name: str, seed: int = 0, **overrides: Any) -> SimConfig:
    """SimConfig of world ``name`` with ``seed``; ``overrides`` (SimConfig fields) win."""
    return SimConfig.from_dict({**world_overrides(name), **overrides, "seed": seed})


__all__ = ["WORLDS", "WorldSpec", "parse_world", "world_config", "world_overrides"]
