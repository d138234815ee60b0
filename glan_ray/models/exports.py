"""The typed record every model export carries (``config.json``'s ``extra``), validated once.

Training writes it (``models.checkpoint.save_checkpoint``), everything that loads a model reads
it back typed (``ModelRunner.record``): the values a model's user needs beside its weights.

- ``lrtg``: a, b of L_rel = (ŷ_wt − a·ln(1 + ŷ_se) − b)², fitted on the training labels;
- ``dt``: the RTG scale of its tokens, the gain g of R̂₁ = g · forecast (GLAN §5.2), and the
  coefficients of its token variant (advantage tokens' baseline, ACT's command head);
- ``cql``: the softmax temperature of its Q-values (KLAN's IIT scores) and the history features
  its input has beyond ``obs`` (none but for ``klan_iit_hist``);
- every supervised export: the epoch it was taken at, its validation metrics and the rows the
  normaliser was fitted on;
- every export: the app spec of the data it was trained on (``app_spec``, ``app_fingerprint``;
  ``models.app_check`` refuses a model on data or in a Serve app of another spec). An export
  written before specs were recorded has none and is the PLPM simulator's app.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from glan_ray.apps import AppSpec, SpecError, plpm_spec
from glan_ray.checks import check_fields, ranged


@dataclass(frozen=True, kw_only=True)
class ExportRecord:
    """What every export may carry: where in training it was taken."""

    epoch: int | None = ranged(None, ge=0)
    """Supervised models: the epoch of the export (the best by the validation metric)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Supervised models: the validation metrics at that epoch."""
    train_rows_sampled: int | None = ranged(None, ge=1)
    """Supervised models: rows the feature normaliser was fitted on."""
    app_spec: dict[str, Any] | None = None
    """The app spec (``AppSpec.to_dict()``) of the dataset the model was trained on; None: an
    export written before specs were recorded, which is the PLPM simulator's app."""
    app_fingerprint: str | None = None
    """``AppSpec.fingerprint()`` of ``app_spec`` (set from it when left out; a stored one that
    differs is refused: the record was edited)."""

    def __post_init__(self) -> None:
        check_fields(self)
        name = type(self).__name__
        if self.app_spec is None:
            if self.app_fingerprint is not None:
                raise ValueError(f"{name}.app_fingerprint {self.app_fingerprint!r} without its "
                                 "app_spec; record both (ExportRecord.with_app)")  # fmt: skip
            return
        try:
            spec = AppSpec.from_dict(self.app_spec)
        except SpecError as e:
            raise ValueError(f"{name}.app_spec: {e}") from None
        if self.app_fingerprint not in (None, spec.fingerprint()):
            raise ValueError(f"{name}.app_fingerprint {self.app_fingerprint!r} is not its "
                             f"app_spec's ({spec.fingerprint()})")  # fmt: skip
        object.__setattr__(self, "app_spec", spec.to_dict())
        object.__setattr__(self, "app_fingerprint", spec.fingerprint())

    @property
    def app(self) -> AppSpec:
        """The app spec the model was trained on (the PLPM spec for an export without one)."""
        return plpm_spec() if self.app_spec is None else AppSpec.from_dict(self.app_spec)

    def with_app(self, spec: AppSpec) -> ExportRecord:
        """This record with ``spec`` recorded as the app of the model's training data."""
        return replace(self, app_spec=spec.to_dict(), app_fingerprint=spec.fingerprint())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class LRTGRecord(ExportRecord):
    rel_a: float | None = ranged(None)
    """a of L_rel (GLAN eq. 17), fitted on the training labels."""
    rel_b: float | None = ranged(None)
    """b of L_rel."""


@dataclass(frozen=True, kw_only=True)
class DTRecord(ExportRecord):
    rtg_scale: float = ranged(3600.0, gt=0.0)
    """Seconds per unit of the RTG tokens (R̂ / rtg_scale is fed to the DT)."""
    target_gain: float = ranged(1.0, gt=0.0)
    """g of R̂₁ = g · forecast; 1 (ask for the forecast itself) for exports that record none."""
    rtg_baseline: tuple[float, ...] = ()
    """Advantage tokens (``DTConfig.advantage_tokens``): the coefficients (obs_dim weights, then
    the intercept; seconds) of the linear baseline b(s) of the remaining return the DT's tokens
    are relative to, (R̂_t − b(s_t)) / rtg_scale; empty: GLAN's tokens R̂_t / rtg_scale."""
    command: tuple[float, ...] = ()
    """A command head (``DTConfig.act_critic``: ACT; ``DTConfig.state_target``: the per-state
    target): the coefficients (obs_dim weights, then the intercept; seconds) of the linear
    ĉ(s), the τ-expectile given the state of the training tokens (the critic's advantage
    Q(s, a) − V(s), or the remaining return); every token is ĉ(s_t) / rtg_scale and the GLAN
    loop's R̂ is not read. Empty: the GLAN loop's return tokens."""

    def __post_init__(self) -> None:
        super().__post_init__()
        import math

        width = self.app.obs_dim + 1  # the app's observation, then the intercept
        for name in ("rtg_baseline", "command"):
            b = tuple(float(x) for x in getattr(self, name))
            if b and (len(b) != width or not all(math.isfinite(x) for x in b)):
                raise ValueError(f"DTRecord.{name} must be empty or {width} finite numbers (the "
                                 f"app's obs_dim + 1); got {len(b)} values")  # fmt: skip
            object.__setattr__(self, name, b)
        if self.rtg_baseline and self.command:
            raise ValueError("DTRecord: rtg_baseline (advantage tokens) and command (ACT) are "
                             "alternatives; set one")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class CQLRecord(ExportRecord):
    temperature: float = ranged(1.0, gt=0.0)
    """Softmax temperature of the Q-values (KLAN's IIT page scores)."""
    history_features: tuple[str, ...] = ()
    """The history features (``schema.HIST_FEATURES`` names, in order) the Q-network reads after
    ``obs``: its input is obs ⊕ these (the ``klan_iit_hist`` arm, trained with ``history=True``
    on ``transitions_hist``); empty: ``obs`` alone (``klan_iit``, ``klan``, ``cql_static``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        names = tuple(str(n) for n in self.history_features)
        if len(set(names)) != len(names):
            raise ValueError(f"CQLRecord.history_features has duplicates: {names}")
        object.__setattr__(self, "history_features", names)


RECORDS: dict[str, type[ExportRecord]] = {
    "lrtg": LRTGRecord,
    "hrm": ExportRecord,
    "isp": ExportRecord,
    "am": ExportRecord,
    "cql": CQLRecord,
    "dt": DTRecord,
}
"""Model name -> the record class of its exports."""


def make_record(model: str, values: ExportRecord | dict[str, Any] | None) -> ExportRecord:
    """The record of a ``model`` export from its stored values; unknown keys and values out of
    range are refused, naming the field."""
    if model not in RECORDS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(RECORDS)}")
    cls = RECORDS[model]
    if isinstance(values, ExportRecord):
        if not isinstance(values, cls):
            raise TypeError(f"a {model!r} export needs a {cls.__name__}; got "
                            f"{type(values).__name__}")  # fmt: skip
        return values
    values = dict(values or {})
    unknown = sorted(set(values) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)} in the "
                         f"{model!r} export")  # fmt: skip
    return cls(**values)


__all__ = ["RECORDS", "CQLRecord", "DTRecord", "ExportRecord", "LRTGRecord", "make_record"]
