"""Every exportable model by name: its config class, its module, and the resolved config a
checkpoint stores (``glan_ray.models.checkpoint``). Training, RLlib, labelling, evaluation and
Serve build models through here, so none of them needs the training code."""

from __future__ import annotations

from typing import Any

from torch import nn

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


def model_config(name: str, dims: dict[str, int], overrides: dict[str, Any]) -> dict[str, Any]:
    """The resolved model config (plain dict) from feature sizes and user overrides."""
    cfg_cls, _ = _MODELS[name]
    base: dict[str, Any] = {
        "cat_cardinalities": [CAT_CARDINALITIES[f] for f in _CAT_FIELDS[name]],
        "n_num": dims["n_num"],
    }
    if name == "lrtg":
        base.update(seq_dim=dims["seq_dim"], seq_len=dims["seq_len"])
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
