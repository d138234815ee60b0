"""Model inputs from dataset columns: one definition per model, shared by training and serving.

Every builder takes a mapping of column name → numpy array (a Ray Data batch through
``as_columns``, or the feature dicts the simulator hands to policies) and the app spec of the
data (None: the PLPM simulator's app), whose profile, statistics and context inputs say which
columns are read (``model_inputs``; docs/apps.md), and returns numpy arrays:
``x_cat`` (B, n_cat) int64 categorical fields, ``x_num`` (B, n_num) float32 numeric fields,
model-specific inputs, and the labels when the columns are there. Scales are fixed here (hours,
minutes, 10-minute units); a ``Normalizer`` fitted on training data then standardises the
numeric inputs and travels inside every checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.schema import DatasetValidationError, input_fields, profile_fields, stat_fields

Columns = Mapping[str, np.ndarray]

CAT_CARDINALITIES: dict[str, int] = {"age": 16, "region": 64, "activity": 8, "weekday": 7}
"""Smallest vocabulary of the simulator's categorical fields, wider than the simulator's so real
data fits; any other app's categorical field gets the cardinality its spec declares."""

HOUR, MINUTE, PAGE_UNIT = 3600.0, 60.0, 600.0
STAT_UNITS: dict[str, float | None] = {"usage": HOUR, "sessions": None, "page_dur": PAGE_UNIT,
                                       "page_entries": None}  # fmt: skip
"""The divisor of each statistics quantity in the models' inputs (None: the value itself)."""


def as_columns(batch: pa.Table | Columns) -> dict[str, np.ndarray]:
    """Numpy columns from an Arrow batch: fixed-size lists become 2-D arrays (B, n)."""
    if not isinstance(batch, pa.Table):
        return {k: np.stack(list(v)) if v.dtype == object else v for k, v in batch.items()}
    out = {}
    for name, col in zip(batch.column_names, batch.columns, strict=True):
        arr = col.combine_chunks()
        if pa.types.is_fixed_size_list(arr.type):
            values = arr.flatten().to_numpy(zero_copy_only=False)
            out[name] = values.reshape(len(arr), arr.type.list_size)
        elif pa.types.is_list(arr.type):
            out[name] = np.array(arr.to_pylist(), dtype=object)
        else:
            out[name] = arr.to_numpy(zero_copy_only=False)
    return out


@dataclass(frozen=True)
class ModelInputs:
    """What the supervised models read of an app's dataset columns (``schema.schemas_for``), and
    how each column enters their inputs. Derived from the app spec (``model_inputs``); for the
    PLPM app it is exactly the simulator's hand-written set, in its order."""

    categorical: tuple[tuple[str, int], ...]
    """(profile column, vocabulary) of each categorical field, embedded by every model."""
    numeric: tuple[tuple[str, str], ...]
    """(profile column, transform) of each numeric profile field: ``log1p`` or ``none``."""
    statistics: tuple[tuple[str, float | None], ...]
    """(statistics column, divisor) of each statistics t column (``STAT_UNITS``)."""
    inputs: tuple[tuple[str, bool], ...]
    """(context input column, log1p?) of each value the client sends at an entry (a count is
    log1p'd)."""

    def cat_fields(self, with_weekday: bool) -> tuple[str, ...]:
        """The categorical columns a model embeds, the day's weekday last when it reads one."""
        names = tuple(n for n, _ in self.categorical)
        return (*names, "weekday") if with_weekday else names

    def vocabulary(self, name: str) -> int:
        """The embedding size of categorical column ``name``."""
        return 7 if name == "weekday" else dict(self.categorical)[name]


_INPUTS: dict[str, ModelInputs] = {}
"""``model_inputs``' cache, by spec fingerprint."""


def _build_inputs(app: AppSpec) -> ModelInputs:
    cat, num = [], []
    kinds = {p.source or p.name: p for p in app.features.profile}
    for f in profile_fields(app):  # the simulator's columns first, in its order
        p = kinds[f.name]
        if p.kind == "categorical":
            vocab = max(int(p.cardinality or 2), CAT_CARDINALITIES.get(f.name, 0))
            cat.append((f.name, vocab))
        else:
            num.append((f.name, p.transform))
    stats = [(f.name, STAT_UNITS[f.name.rsplit("_", 1)[0]]) for f in stat_fields(app)]
    inputs = [(f.name, c.unit == "count") for f, c in zip(
        input_fields(app), (c for c in app.features.context if c.quantity == "input"), strict=True)]
    return ModelInputs(tuple(cat), tuple(num), tuple(stats), tuple(inputs))


def model_inputs(app: AppSpec | None = None) -> ModelInputs:
    """The supervised models' inputs for ``app`` (None: the PLPM simulator's app)."""
    app = app or plpm_spec()
    key = app.fingerprint()
    if key not in _INPUTS:
        _INPUTS[key] = _build_inputs(app)
    return _INPUTS[key]


def _cat(c: Columns, mi: ModelInputs, with_weekday: bool) -> np.ndarray:
    parts = []
    for name in mi.cat_fields(with_weekday):
        v = np.asarray(c[name]).astype(np.int64)
        n = mi.vocabulary(name)
        bad = (v < 0) | (v >= n)
        if bad.any():
            raise DatasetValidationError(
                f"column '{name}': {int(bad.sum())} rows outside the vocabulary [0, {n})"
            )
        parts.append(v)
    return np.stack(parts, axis=1)


def _num(parts: list[np.ndarray]) -> np.ndarray:
    cols = [p[:, None] if p.ndim == 1 else p for p in parts]
    return np.concatenate(cols, axis=1).astype(np.float32)


def _user_stats(c: Columns, mi: ModelInputs) -> list[np.ndarray]:
    """Numeric profile fields + statistical features t (SPEC §2), in model units."""
    out = [np.log1p(c[n]) if t == "log1p" else np.asarray(c[n]) for n, t in mi.numeric]
    return out + [c[n] if unit is None else c[n] / unit for n, unit in mi.statistics]


def _context(c: Columns, mi: ModelInputs) -> list[np.ndarray]:
    """Real-time context c of a session (SPEC §2, GLAN §5.1): the hour on the clock, the
    entries so far, the client's inputs, the day's consumption per page so far."""
    rad = 2 * np.pi * c["hour"] / 24.0
    inputs = [np.log1p(c[n]) if log else np.asarray(c[n]) for n, log in mi.inputs]
    return [np.sin(rad), np.cos(rad), c["entries_today"], *inputs, c["today_dur"] / PAGE_UNIT]


def lrtg_features(c: Columns, app: AppSpec | None = None) -> dict[str, np.ndarray]:
    """daily → L-RTG: x_cat, x_num, seq (B, 30, 2), seq_dt (B, 30); labels y_wt (h), y_se."""
    mi = model_inputs(app)
    out = {
        "x_cat": _cat(c, mi, with_weekday=True),
        "x_num": _num(_user_stats(c, mi)),
        "seq": np.stack([c["seq_sessions"], c["seq_usage"] / HOUR], axis=-1).astype(np.float32),
        "seq_dt": np.asarray(c["seq_dt"]).astype(np.int64),
    }
    if "y_wt" in c:
        out["y_wt"] = (c["y_wt"] / HOUR).astype(np.float32)
        out["y_se"] = np.asarray(c["y_se"]).astype(np.float32)
    return out


def hrm_features(c: Columns, app: AppSpec | None = None) -> dict[str, np.ndarray]:
    """sessions → HRM: x_cat, x_num (x ‖ c ‖ v fields), page; labels dur (min, (B, P)), y_sw."""
    mi = model_inputs(app)
    session = [np.log1p(c["video_views"]), c["n_switches"]]
    out = {
        "x_cat": _cat(c, mi, with_weekday=False),
        "x_num": _num(_user_stats(c, mi) + _context(c, mi) + session),
        "page": np.asarray(c["action"]).astype(np.int64),
    }
    if "dur" in c:
        out["dur"] = (c["dur"] / MINUTE).astype(np.float32)
        out["y_sw"] = np.asarray(c["y_sw"]).astype(np.float32)
    return out


def isp_features(c: Columns, app: AppSpec | None = None) -> dict[str, np.ndarray]:
    """rct → KLAN-ISP: x_cat, x_num; labels treatment (0 = control), response (h)."""
    mi = model_inputs(app)
    out = {
        "x_cat": _cat(c, mi, with_weekday=True),
        "x_num": _num(_user_stats(c, mi)),
    }
    if "treatment" in c:
        out["treatment"] = np.asarray(c["treatment"]).astype(np.int64)
        out["response"] = (c["response"] / HOUR).astype(np.float32)
    return out


AM_THETA = 0.5
"""Default θ of KLAN-AM's label: page switches per minute of usage below θ = static preference."""


def am_features(
    c: Columns, app: AppSpec | None = None, theta: float = AM_THETA
) -> dict[str, np.ndarray]:
    """sessions → KLAN-AM: x_cat, x_num (context ‖ long-term stats), page; label static (0/1)."""
    mi = model_inputs(app)
    out = {
        "x_cat": _cat(c, mi, with_weekday=False),
        "x_num": _num(_context(c, mi) + _user_stats(c, mi)),
        "page": np.asarray(c["action"]).astype(np.int64),
    }
    if "n_switches" in c and "usage_time" in c:
        rate = c["n_switches"] / np.maximum(c["usage_time"] / MINUTE, 1e-3)
        out["static"] = (rate < theta).astype(np.float32)
    return out


@dataclass(frozen=True)
class FeatureSpec:
    """How one model reads its dataset."""

    dataset: str
    """Dataset name (schema.py) the model trains on."""
    build: Callable[[Columns, AppSpec | None], dict[str, np.ndarray]]
    """(columns, the data's app spec; None: PLPM) → raw feature arrays (+ labels)."""
    normalized: tuple[str, ...]
    """Feature keys standardised by the Normalizer (the last axis is the feature axis)."""
    row_filter: str | None = None
    """Boolean column selecting the training rows (e.g. only active user-days for L-RTG)."""


SPECS: dict[str, FeatureSpec] = {
    "lrtg": FeatureSpec("daily", lrtg_features, ("x_num", "seq"), row_filter="is_active"),
    "hrm": FeatureSpec("sessions", hrm_features, ("x_num",)),
    "isp": FeatureSpec("rct", isp_features, ("x_num",)),
    "am": FeatureSpec("sessions", am_features, ("x_num",)),
}


@dataclass
class Normalizer:
    """Per-feature mean and std of some feature keys, fitted on training batches."""

    mean: dict[str, list[float]]
    std: dict[str, list[float]]

    @classmethod
    def fit(cls, batches: list[dict[str, np.ndarray]], keys: tuple[str, ...]) -> Normalizer:
        mean, std = {}, {}
        for k in keys:
            x = np.concatenate([b[k].reshape(-1, b[k].shape[-1]) for b in batches])
            mean[k] = x.mean(0).astype(float).tolist()
            std[k] = np.maximum(x.std(0), 1e-6).astype(float).tolist()
        return cls(mean, std)

    def __call__(self, feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(feats)
        for k, m in self.mean.items():
            out[k] = ((feats[k] - np.asarray(m)) / np.asarray(self.std[k])).astype(np.float32)
        return out

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        return cls(dict(d["mean"]), dict(d["std"]))


def feature_dims(model: str, cols: Columns, app: AppSpec | None = None) -> dict[str, int]:
    """Sizes the model config needs (n_num, and for L-RTG seq_dim/seq_len) from one batch."""
    f = SPECS[model].build(cols, app)
    dims = {"n_num": f["x_num"].shape[1], "n_cat": f["x_cat"].shape[1]}
    if "seq" in f:
        dims.update(seq_dim=f["seq"].shape[2], seq_len=f["seq"].shape[1])
    return dims
