"""Scaled worlds (``sim.worlds.WorldSpec``): strength interpolates every override of the named
world from the default world's value, stochasticity multiplies the page-duration noise; each
checked against values computed by hand."""

from __future__ import annotations

import argparse

import pytest

from glan_ray.sim.config import SimConfig
from glan_ray.sim.worlds import WORLDS, WorldSpec, parse_world, world_config, world_overrides


def test_strength_interpolates_each_override_by_hand():
    o = WorldSpec.parse("premise:strength=0.5").overrides()
    # default 0.0 -> premise 0.55; 0 -> 3 sessions (rounded half to even: 1.5 -> 2)
    assert o["regime_gain"] == pytest.approx(0.275)
    assert o["lag_sessions"] == 2 and isinstance(o["lag_sessions"], int)
    assert o["sat_drop"] == pytest.approx(-0.8)  # -1.2 -> -0.4
    assert o["base_duration"] == pytest.approx((210.0, 145.0, 115.0))  # tuples move elementwise
    assert o["max_planned"] == 29  # 18 -> 40
    assert "duration_sigma" not in o  # stochasticity 1 leaves the noise alone


def test_strength_ends_are_the_two_worlds():
    assert world_config("premise:strength=0") == world_config("default")
    assert world_config("premise:strength=1") == world_config("premise")
    assert world_overrides("premise") == WORLDS["premise"]


def test_stochasticity_multiplies_the_duration_noise():
    assert world_config("default:stochasticity=2").duration_sigma == pytest.approx(1.0)
    cfg = world_config("premise:strength=0.5,stochasticity=0.5")
    assert cfg.duration_sigma == pytest.approx(0.5 * SimConfig().duration_sigma)


def test_format_round_trips():
    spec = WorldSpec("premise", 0.5, 2.0)
    assert spec.format() == "premise:strength=0.5,stochasticity=2"
    assert WorldSpec.parse(spec.format()) == spec
    assert WorldSpec.parse("premise").format() == "premise"


@pytest.mark.parametrize("spec, match", [
    ("nope:strength=1", "unknown world 'nope'"),
    ("premise:strength=-1", "strength must be finite and >= 0; got -1.0"),
    ("premise:strength=nan", "strength must be finite"),
    ("premise:stochasticity=0", "stochasticity must be finite and > 0; got 0.0"),
    ("premise:strength=x", "strength must be a number; got 'x'"),
    ("premise:gain=1", "KEY in strength, stochasticity; got 'gain=1'"),
])  # fmt: skip
def test_bad_specs_name_the_field(spec, match):
    with pytest.raises(ValueError, match=match):
        world_overrides(spec)
    with pytest.raises(argparse.ArgumentTypeError, match=match):
        parse_world(spec)
