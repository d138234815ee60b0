"""The observation vector ``obs`` of an app, built from named columns by its specification.

``build_obs(spec, columns)`` is the one spec-driven builder: every feature the spec declares is
read from a named column, transformed and scaled as its entry says (docs/apps.md), and placed
in ``obs`` order (profile x, statistics t, context c). For ``plpm_spec()`` it gives exactly what
``glan_ray.sim.observation.build_obs`` gives the simulator (tests/apps/test_observation.py).

The columns, each with R rows (a per-page column is (R, n_pages) in ``spec.pages`` order):

- profile: the feature's source field (``ProfileSpec.source`` or its name), raw values;
- statistics: ``{quantity}_{w}d`` for usage, sessions (R,), page_dur and page_entries (R, P);
  ``page_share_{w}d`` is read from ``page_entries_{w}d`` (each page's share of the landings,
  0 when there were none) unless given itself; ``last_exit`` (R,) the page index last exited;
- context: ``hour`` (R,), ``weekday`` (R,) or one int (0 = Monday), ``entries_today`` (R,),
  ``today_dur`` (R, P), ``prev_dropoff`` (R,), ``today_usage`` (R,; default: ``today_dur``
  summed over the pages) and each ``input`` under its name.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from glan_ray.apps.features import ContextSpec, ProfileSpec, StatisticSpec
from glan_ray.apps.spec import AppSpec

Columns = Mapping[str, np.ndarray | int]


class MissingColumn(KeyError):
    """A column the spec's features need is not among the columns given."""

    def __str__(self) -> str:
        return str(self.args[0])


def _col(columns: Columns, key: str, feature: str) -> np.ndarray:
    if key not in columns:
        raise MissingColumn(f"build_obs: feature {feature!r} needs column {key!r}; "
                            f"got {sorted(columns)}")  # fmt: skip
    return np.asarray(columns[key])


def _page_idx(spec: AppSpec, pages: tuple[str, ...] | None) -> list[int]:
    return [spec.pages.index(p) for p in (pages or spec.pages)]


def _profile(p: ProfileSpec, columns: Columns) -> list[np.ndarray]:
    v = _col(columns, p.source or p.name, p.name)
    if p.kind == "categorical":
        return [v / float((p.cardinality or 2) - 1)]
    x = np.log1p(v) if p.transform == "log1p" else v
    return [x / float(p.scale or 1.0)]


def _share(entries: np.ndarray) -> np.ndarray:
    """Each page's share of the landings (R, P); 0 where there were none."""
    return entries / np.maximum(entries.sum(1, keepdims=True), 1e-6)


def _statistic(spec: AppSpec, s: StatisticSpec, columns: Columns, rows: int) -> list[np.ndarray]:
    idx = _page_idx(spec, s.pages)
    if s.quantity == "last_exit":
        last = _col(columns, "last_exit", "last_exit").astype(np.int64)
        hot = np.zeros((rows, spec.n_pages), dtype=np.float32)
        hot[np.arange(rows), last] = 1.0
        return [hot[:, i] / s.scale for i in idx]
    out: list[np.ndarray] = []
    for w in s.windows:
        key = f"{s.quantity}_{w}d"
        if s.quantity == "page_share" and key not in columns:
            v = _share(_col(columns, f"page_entries_{w}d", key))
        else:
            v = _col(columns, key, key)
        if s.quantity.startswith("page_"):  # (R, P): the entry's pages, in its order
            out += [v[:, i] / s.scale for i in idx]
        else:
            out.append(v / s.scale)
    return out


def _context(spec: AppSpec, c: ContextSpec, columns: Columns, rows: int) -> list[np.ndarray]:
    q = c.quantity
    if q == "input":
        return [_col(columns, str(c.name), str(c.name)) / c.scale]
    if q in ("hour", "hour_sin", "hour_cos"):
        hour = _col(columns, "hour", q)
        rad = 2 * np.pi * hour / 24.0
        v = {"hour": hour, "hour_sin": np.sin(rad), "hour_cos": np.cos(rad)}[q]
        return [v / c.scale]
    if q == "weekend":
        weekday = _col(columns, "weekday", q)
        return [np.broadcast_to(np.isin(weekday, (5, 6)), (rows,)) / c.scale]
    if q == "today_dur":
        v = _col(columns, "today_dur", q)
        return [v[:, i] / c.scale for i in _page_idx(spec, c.pages)]
    if q == "today_usage":
        v = (np.asarray(columns["today_usage"]) if "today_usage" in columns
             else _col(columns, "today_dur", q).sum(1))  # fmt: skip
        return [v / c.scale]
    return [_col(columns, q, q) / c.scale]  # entries_today, prev_dropoff


def build_obs(spec: AppSpec, columns: Columns) -> np.ndarray:
    """``obs`` (R, spec.obs_dim) float32 from named columns (see the module docstring).

    Each component is transform(value) / scale (a categorical: index / (cardinality − 1)),
    computed in the columns' own dtypes and stored as float32.
    """
    rows = len(_col(columns, "hour", "hour")) if "hour" in columns else _rows(columns)
    cols: list[np.ndarray] = []
    for p in spec.features.profile:
        cols += _profile(p, columns)
    for s in spec.features.statistics:
        cols += _statistic(spec, s, columns, rows)
    for c in spec.features.context:
        cols += _context(spec, c, columns, rows)
    obs = np.stack([np.asarray(c, dtype=np.float32) for c in cols], axis=1)  # (R, obs_dim)
    assert obs.shape == (rows, spec.obs_dim), obs.shape
    return obs


def _rows(columns: Columns) -> int:
    for v in columns.values():
        if np.ndim(v) >= 1:
            return len(np.asarray(v))
    raise ValueError("build_obs: no column with rows")


__all__ = ["MissingColumn", "build_obs"]
