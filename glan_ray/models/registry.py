"""Every exportable model by name: its config class, its module, and the resolved config a
checkpoint stores (``glan_ray.models.checkpoint``). Training, RLlib, labelling, evaluation and
Serve build models through here, so none of them needs the training code."""

from __future__ import annotations

from typing import Any

from torch import nn

from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.data.features import CAT_CARDINALITIES
from glan_ray.models.cql import QNetConfig, QNetwork
from glan_ray.models.dt import DecisionTransformer, DTConfig
from glan_ray.models.hrm import HRM, HRMConfig
from glan_ray.models.klan_am import AMConfig, KlanAM
from glan_ray.models.klan_isp import ISPConfig, KlanISP
from glan_ray.models.lrtg import LRTG, LRTGConfig

_CAT_FIELDS = {
    "lrtg": ("age", "region", "activity", "weekday"),
    "hrm": ("age", "region", "activity"),
    "isp": ("age", "region", "activity", "weekday"),
    "am": ("age", "region", "activity"),
}
# (config dataclass, model class): the configs share no base, hence type[Any]
_MODELS: dict[str, tuple[type[Any], type]] = {
    "lrtg": (LRTGConfig, LRTG),
    "hrm": (HRMConfig, HRM),
    "isp": (ISPConfig, KlanISP),
    "am": (AMConfig, KlanAM),
    # the RL policies, trained by glan_ray.rllib and exported in the same checkpoint format
    "cql": (QNetConfig, QNetwork),
    "dt": (DTConfig, DecisionTransformer),
}


def check_profile(name: str, app: AppSpec) -> None:
    """Refuse an app whose profile lacks a categorical field model ``name`` embeds, or declares
    one wider than its vocabulary (``data.features.CAT_CARDINALITIES``), naming the field."""
    profile = {p.source or p.name: p for p in app.features.profile}
    for f in _CAT_FIELDS[name]:
        if f == "weekday":  # the day's, not a profile field: every app has one
            continue
        p = profile.get(f)
        if p is None or p.kind != "categorical":
            raise ValueError(
                f"{name}: app {app.name!r} has no categorical profile field {f!r}; model "
                f"{name!r} embeds {[c for c in _CAT_FIELDS[name] if c != 'weekday']} "
                f"(the app's profile: {sorted(profile)})"
            )
        if p.cardinality is not None and p.cardinality > CAT_CARDINALITIES[f]:
            raise ValueError(
                f"{name}: app {app.name!r} declares profile field {f!r} with cardinality "
                f"{p.cardinality}, beyond the models' vocabulary of {CAT_CARDINALITIES[f]} "
                "(data.features.CAT_CARDINALITIES)"
            )


def page_config(app: AppSpec) -> dict[str, Any]:
    """HRM's and KLAN-AM's page axis from the app: ``n_pages``, and HRM's feature-selection
    groups: the PLPM pages keep the paper's (Featured alone, Explore and Following sharing);
    another app's pages each get their own."""
    groups = (0, 1, 1) if app.pages == plpm_spec().pages else tuple(range(app.n_pages))
    return {"n_pages": app.n_pages, "page_groups": groups}


def model_config(
    name: str, dims: dict[str, int], overrides: dict[str, Any], app: AppSpec | None = None
) -> dict[str, Any]:
    """The resolved model config (plain dict) from feature sizes, the app spec of the training
    data (None: the PLPM app; its pages size HRM's and KLAN-AM's towers) and user overrides."""
    cfg_cls, _ = _MODELS[name]
    app = app or plpm_spec()
    check_profile(name, app)
    base: dict[str, Any] = {
        "cat_cardinalities": [CAT_CARDINALITIES[f] for f in _CAT_FIELDS[name]],
        "n_num": dims["n_num"],
    }
    if name == "lrtg":
        base.update(seq_dim=dims["seq_dim"], seq_len=dims["seq_len"])
    if name == "hrm":
        base.update(page_config(app))
    elif name == "am":
        base.update(n_pages=app.n_pages)
    fields = set(cfg_cls.__dataclass_fields__)
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown {cfg_cls.__name__} key(s): {', '.join(unknown)}")
    return {**base, **overrides}


def build_model(name: str, cfg: dict[str, Any]) -> nn.Module:
    """Model ``name`` from its resolved config (lists become tuples, as JSON stores them)."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(_MODELS)}")
    cfg_cls, model_cls = _MODELS[name]
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    return model_cls(cfg_cls(**kw))


MODELS = tuple(_MODELS)
"""Names of every exportable model."""

__all__ = ["MODELS", "build_model", "model_config"]
