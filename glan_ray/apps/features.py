"""The features of an app specification in the papers' three groups: the user (profile)
features x, the statistical features t and the real-time contextual features c (GLAN's names).

Each entry says how its values enter the observation vector ``obs``: ``obs = transform(value) /
scale`` for a numeric value, ``index / (cardinality − 1)`` for a categorical one (as
``sim.observation.build_obs`` gives the simulator's), and the feature names it contributes, in
order. ``obs`` is the profile features, then the statistics, then the context, each group in the
order declared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import glan_ray.apps.validate as check
from glan_ray.apps.quantities import CONTEXT, INPUT, STATISTICS, TRANSFORMS, Quantity
from glan_ray.checks import ranged

Kind = Literal["categorical", "numeric"]
Transform = Literal["none", "log1p"]
GROUPS: dict[str, str] = {"profile": "x", "statistics": "t", "context": "c"}
"""The feature groups, as ``FeaturesSpec`` fields, with the papers' letter for each."""


@dataclass(frozen=True)
class ProfileSpec:
    """One profile feature x: a static field of the user that the app knows."""

    name: str
    """The feature's name in ``obs`` (a lowercase identifier)."""
    kind: Kind = "numeric"
    """categorical: an index in [0, cardinality), embedded by the models, in ``obs`` as index /
    (cardinality − 1); numeric: a number in a unit, in ``obs`` as transform(value) / scale."""
    cardinality: int | None = None
    """categorical only: the number of categories (>= 2)."""
    unit: str | None = None
    """numeric only (required): the value's natural unit as logs and clients give it."""
    scale: float | None = None
    """numeric only (> 0; default 1): ``obs`` holds transform(value) / scale."""
    transform: Transform = "none"
    """numeric only: none, or log1p (ln(1 + value)), applied before the scale."""
    source: str | None = None
    """The field the raw value is read from when it is not ``name`` (e.g. social_degree for the
    feature social_degree_log)."""

    def __post_init__(self) -> None:
        w = type(self).__name__
        check.name(self.name, f"{w}.name")
        check.choice(self.kind, f"{w}.kind", ("categorical", "numeric"))
        check.choice(self.transform, f"{w}.transform", TRANSFORMS)
        if self.source is not None:
            check.name(self.source, f"{w}.source")
            if self.source == self.name:  # one spec, one fingerprint
                object.__setattr__(self, "source", None)
        if self.kind == "categorical":
            check.integer(self.cardinality, f"{w}.cardinality", ge=2)
            for field in ("unit", "scale"):
                if getattr(self, field) is not None:
                    raise check.SpecError(f"{w}.{field}", "only a numeric feature has one")
            if self.transform != "none":
                raise check.SpecError(f"{w}.transform", "only a numeric feature has one")
            return
        if self.cardinality is not None:
            raise check.SpecError(f"{w}.cardinality", "only a categorical feature has one")
        check.text(self.unit, f"{w}.unit")
        scale = 1.0 if self.scale is None else check.number(self.scale)
        object.__setattr__(self, "scale", _positive(scale, f"{w}.scale"))

    def names(self, pages: tuple[str, ...]) -> tuple[str, ...]:
        return (self.name,)

    @property
    def obs_scale(self) -> float:
        """The divisor of the value in ``obs``."""
        return float(self.cardinality - 1) if self.cardinality else float(self.scale or 1.0)


def _positive(x: object, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, float) or not 0 < x < float("inf"):
        raise check.SpecError(where, f"must be > 0; got {x!r}")
    return x


def _pages(entry: StatisticSpec | ContextSpec, q: Quantity, where: str) -> None:
    """Normalise and check an entry's ``pages`` (a per-page quantity only)."""
    if entry.pages is None:
        return
    if not q.per_page:
        raise check.SpecError(f"{where}.pages", f"{entry.quantity!r} is not per page")
    pages = check.names(entry.pages, f"{where}.pages", "page")
    if not pages:
        raise check.SpecError(f"{where}.pages", "must name a page (leave it out for every page)")
    object.__setattr__(entry, "pages", pages)


def _per_page(stem: str, q: Quantity, own: tuple[str, ...] | None, pages: tuple[str, ...]
              ) -> tuple[str, ...]:  # fmt: skip
    return tuple(f"{stem}_{p}" for p in (own or pages)) if q.per_page else (stem,)


@dataclass(frozen=True)
class StatisticSpec:
    """Statistics t of one quantity (``apps.quantities.STATISTICS``) over day windows."""

    quantity: str
    """What is measured: usage, sessions, page_dur, page_entries, page_share or last_exit."""
    windows: tuple[int, ...] = ()
    """Day windows, one feature each in this order (e.g. 7, 30); none for last_exit."""
    pages: tuple[str, ...] | None = None
    """A per-page quantity's pages, in ``obs`` order; left out: every page of the app."""
    scale: float = ranged(1.0, gt=0)
    """``obs`` holds value / scale (3600 gives seconds in hours)."""

    def __post_init__(self) -> None:
        w = type(self).__name__
        q = STATISTICS[check.choice(self.quantity, f"{w}.quantity", STATISTICS)]
        windows = check.sequence(self.windows, f"{w}.windows")
        windows = tuple(check.integer(x, f"{w}.windows[{i}]", ge=1) for i, x in enumerate(windows))
        if q.windowed and not windows:
            raise check.SpecError(f"{w}.windows", f"{self.quantity!r} needs at least one window")
        if not q.windowed and windows:
            raise check.SpecError(f"{w}.windows",
                                  f"{self.quantity!r} has no window; got {list(windows)}")
        if len(set(windows)) < len(windows):
            raise check.SpecError(f"{w}.windows", f"duplicate window in {list(windows)}")
        object.__setattr__(self, "windows", windows)
        _pages(self, q, w)
        object.__setattr__(self, "scale", check.number(self.scale))
        check.check_ranges(self)

    def names(self, pages: tuple[str, ...]) -> tuple[str, ...]:
        q = STATISTICS[self.quantity]
        stems = [f"{self.quantity}_{d}d" for d in self.windows] or [self.quantity]
        return tuple(n for s in stems for n in _per_page(s, q, self.pages, pages))

    @property
    def unit(self) -> str:
        return STATISTICS[self.quantity].unit


@dataclass(frozen=True)
class ContextSpec:
    """Real-time context c: a quantity derived from the day's visits (``quantities.CONTEXT``),
    or an ``input`` the client sends with each app entry."""

    quantity: str
    """hour, hour_sin, hour_cos, weekend, entries_today, today_dur, today_usage, prev_dropoff,
    or input."""
    name: str | None = None
    """input only (required): the value's name, as requests and event logs carry it."""
    unit: str | None = None
    """input only (required): the value's natural unit (a derived quantity's is known)."""
    pages: tuple[str, ...] | None = None
    """A per-page quantity's pages, in ``obs`` order; left out: every page of the app."""
    scale: float = ranged(1.0, gt=0)
    """``obs`` holds value / scale."""

    def __post_init__(self) -> None:
        w = type(self).__name__
        check.choice(self.quantity, f"{w}.quantity", [*CONTEXT, INPUT])
        if self.quantity == INPUT:
            check.name(self.name, f"{w}.name")
            check.text(self.unit, f"{w}.unit")
            if self.pages is not None:
                raise check.SpecError(f"{w}.pages", f"an {INPUT} is one value, not per page")
        else:
            for field in ("name", "unit"):
                if getattr(self, field) is not None:
                    raise check.SpecError(f"{w}.{field}", f"only an {INPUT} has one (it is "
                                      f"{self.quantity!r}'s own)")  # fmt: skip
            _pages(self, CONTEXT[self.quantity], w)
        object.__setattr__(self, "scale", check.number(self.scale))
        check.check_ranges(self)

    def names(self, pages: tuple[str, ...]) -> tuple[str, ...]:
        if self.quantity == INPUT:
            return (str(self.name),)
        return _per_page(self.quantity, CONTEXT[self.quantity], self.pages, pages)

    @property
    def obs_unit(self) -> str:
        return str(self.unit) if self.quantity == INPUT else CONTEXT[self.quantity].unit


Entry = ProfileSpec | StatisticSpec | ContextSpec


@dataclass(frozen=True)
class FeaturesSpec:
    """The observation's features, group by group; ``obs`` is them in this order."""

    profile: tuple[ProfileSpec, ...] = ()
    """x: the user's static fields."""
    statistics: tuple[StatisticSpec, ...] = ()
    """t: the user's history before the day."""
    context: tuple[ContextSpec, ...] = ()
    """c: the app entry and the day so far."""

    def __post_init__(self) -> None:
        w = type(self).__name__
        kinds: dict[str, type[Entry]] = {
            "profile": ProfileSpec,
            "statistics": StatisticSpec,
            "context": ContextSpec,
        }
        for group, cls in kinds.items():
            items = check.sequence(getattr(self, group), f"{w}.{group}")
            built: tuple[Entry, ...] = tuple(
                check.build(cls, x, f"{w}.{group}[{i}]") for i, x in enumerate(items)
            )
            object.__setattr__(self, group, built)

    def entries(self) -> list[tuple[str, int, Entry]]:
        """(group, index in the group, entry) of every entry, in ``obs`` order."""
        return [(g, i, e) for g in GROUPS for i, e in enumerate(getattr(self, g))]

    def names(self, pages: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        """The ``obs`` feature names of each group, given the app's pages."""
        return {g: tuple(n for e in getattr(self, g) for n in e.names(pages)) for g in GROUPS}


def entry_scales(e: Entry, pages: tuple[str, ...]) -> tuple[float, ...]:
    """The ``obs`` divisor of each feature ``e`` contributes."""
    scale = e.obs_scale if isinstance(e, ProfileSpec) else float(e.scale)
    return (scale,) * len(e.names(pages))


def entry_units(e: Entry, pages: tuple[str, ...]) -> tuple[str, ...]:
    """The natural unit of each feature ``e`` contributes (``category`` for a categorical)."""
    if isinstance(e, ProfileSpec):
        unit = "category" if e.kind == "categorical" else str(e.unit)
    else:
        unit = e.unit if isinstance(e, StatisticSpec) else e.obs_unit
    return (unit,) * len(e.names(pages))


def entry_label(e: Entry) -> str:
    """A short name of an entry for messages (its feature name, or its quantity)."""
    if isinstance(e, ProfileSpec):
        return e.name
    if isinstance(e, ContextSpec) and e.quantity == INPUT:
        return f"input {e.name}"
    return e.quantity


__all__ = ["GROUPS", "ContextSpec", "Entry", "FeaturesSpec", "ProfileSpec", "StatisticSpec",
           "entry_label", "entry_scales", "entry_units"]  # fmt: skip
