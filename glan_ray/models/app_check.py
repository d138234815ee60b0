"""One check wherever a model meets data or a Serve app: both must be of one app spec.

A model records the spec of the dataset it was trained on (``ExportRecord.app_spec``); a dataset
records its own (``manifest.json``'s ``spec``, ``data.read.dataset_spec``); a Serve app serves
one spec. ``require_same_app`` refuses a pair of different specs with the difference in words
(``AppSpec.diff``)::

    model runs/x/models/cql was trained on app 'plpm' (fingerprint a2eb067b71c2) but the
    dataset runs/y/data is app 'shop' (fingerprint 0b8c...): name: 'plpm' vs 'shop'; pages: ...

Exports and datasets written before specs were recorded are the PLPM simulator's app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from glan_ray import storage
from glan_ray.apps import AppSpec
from glan_ray.models.exports import make_record

META = "config.json"
"""An export's readable metadata (``models.checkpoint``): its model name and record."""


class AppMismatchError(ValueError):
    """A model used on data, or in a Serve app, of another app spec than it was trained on."""


def export_app(meta: Mapping[str, Any]) -> AppSpec:
    """The app spec an export's metadata (``load_checkpoint``'s third value) records; the PLPM
    spec for an export written before specs were recorded."""
    return make_record(str(meta["model"]), meta.get("extra")).app


def require_same_app(model_app: AppSpec, other: AppSpec, *, model: str, where: str) -> None:
    """Raise ``AppMismatchError`` unless ``model_app`` (the app a model was trained on) is
    ``other`` (the app of the data or Serve app it is used on). ``model`` names the model (its
    path), ``where`` what it is used on (``"the dataset runs/y/data"``, ``"the Serve app"``)."""
    if model_app.fingerprint() == other.fingerprint():
        return
    diff = "; ".join(model_app.diff(other)) or "the same fields, spelled differently"
    raise AppMismatchError(
        f"model {model} was trained on app {model_app.name!r} (fingerprint "
        f"{model_app.fingerprint()}) but {where} is app {other.name!r} (fingerprint "
        f"{other.fingerprint()}): {diff}"
    )


def require_export_app(meta: Mapping[str, Any], other: AppSpec, *, model: str, where: str) -> None:
    """``require_same_app`` for a loaded export's metadata (``load_checkpoint``'s third value)."""
    require_same_app(export_app(meta), other, model=model, where=where)


def check_export(path: str, other: AppSpec, where: str) -> None:
    """``require_export_app`` for the export at ``path`` (a model directory, local or a URI),
    reading its ``config.json`` only: before loading it, or where it is loaded elsewhere (in
    Ray tasks, in Serve replicas). ``where`` names what it is to be used on."""
    meta = storage.read_json(storage.join(path, META))
    require_export_app(meta, other, model=path, where=where)


__all__ = ["AppMismatchError", "check_export", "export_app", "require_export_app",
           "require_same_app"]  # fmt: skip
