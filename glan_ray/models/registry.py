"""Every exportable model by name: its config class, its module, and the resolved config a
checkpoint stores (``glan_ray.models.checkpoint``). Training, RLlib, labelling, evaluation and
Serve build models through here, so none of them needs the training code."""

from __future__ import annotations

from typing import Any

from torch import nn

from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.data.features import model_inputs
from glan_ray.models.cql import QNetConfig, QNetwork
from glan_ray.models.dt import DecisionTransformer, DTConfig
from glan_ray.models.hrm import HRM, HRMConfig
from glan_ray.models.klan_am import AMConfig, KlanAM
from glan_ray.models.klan_isp import ISPConfig, KlanISP
from glan_ray.models.lrtg import LRTG, LRTGConfig

_WEEKDAY = {"lrtg": True, "hrm": False, "isp": True, "am": False}
"""Whether each supervised model embeds the day's weekday besides the app's profile fields."""
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


def cat_config(name: str, app: AppSpec) -> list[int]:
    """The vocabulary of each categorical field supervised model ``name`` embeds for ``app``
    (``data.features.model_inputs``); an app with no categorical profile field is refused for
    the models that embed no weekday, naming the model."""
    inputs = model_inputs(app)
    fields = inputs.cat_fields(_WEEKDAY[name])
    if not fields:
        raise ValueError(
            f"{name}: app {app.name!r} has no categorical profile field; model {name!r} embeds "
            "at least one (declare one under features.profile with kind: categorical)"
        )
    return [inputs.vocabulary(f) for f in fields]


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
    base: dict[str, Any] = {
        "cat_cardinalities": cat_config(name, app),
        "n_num": dims["n_num"],
    }
    if name == "lrtg":
        base.update(seq_dim=dims["seq_dim"], seq_len=dims["seq_len"])
    if name == "hrm":
        base.update(page_config(app))
    elif name == "am":
        base.update(n_pages=app.n_pages)
    elif name == "isp":
        base.update(n_treatments=app.n_pages)  # treatment k forces page k − 1
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
