"""App specifications: a multi-page app's pages and features declared as data (SPEC §7,
docs/apps.md). ``plpm_spec()`` is the simulator's own app."""

from __future__ import annotations

import functools
from importlib import resources

from glan_ray.apps.features import ContextSpec, FeaturesSpec, ProfileSpec, StatisticSpec
from glan_ray.apps.spec import AppSpec, load_spec, spec_from_yaml
from glan_ray.apps.validate import SpecError

PLPM_YAML = "plpm.yaml"
"""The simulator's spec, shipped as package data beside this file."""


@functools.cache
def plpm_spec() -> AppSpec:
    """The PLPM simulator's app: ``schema.PAGES`` and ``schema.OBS_FEATURES`` as a spec."""
    text = resources.files(__name__).joinpath(PLPM_YAML).read_text()
    return spec_from_yaml(text, f"glan_ray/apps/{PLPM_YAML}")


def obs_feature_names(spec: AppSpec) -> tuple[str, ...]:
    """The flat names of ``spec``'s observation features, in ``obs`` order."""
    return spec.obs_features


__all__ = ["AppSpec", "ContextSpec", "FeaturesSpec", "ProfileSpec", "SpecError", "StatisticSpec",
           "load_spec", "obs_feature_names", "plpm_spec", "spec_from_yaml"]  # fmt: skip
