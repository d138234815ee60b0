"""An app specification: the shape of a team's multi-page app, declared as data (SPEC §7).

The pages (an action is an index into them), the observation's features in the papers' groups
(``apps.features``), the session gap that splits a visit stream into sessions, the drop-off
threshold τ and the session reward. Written as YAML (``load_spec``; docs/apps.md), checked once
when built, with errors naming the field::

    AppSpec.pages: duplicate page 'explore'
    AppSpec.features.profile[2].cardinality must be an integer >= 2; got 1

Datasets and models record the ``fingerprint`` of the spec they were built with; ``diff`` names
what differs between two specs, so a stage can refuse data or requests of another app in words.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import textwrap
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from typing import Any, Literal

import yaml

import glan_ray.apps.validate as check
from glan_ray.apps.features import (
    GROUPS,
    Entry,
    FeaturesSpec,
    entry_label,
    entry_scales,
    entry_units,
)
from glan_ray.apps.quantities import REWARDS
from glan_ray.checks import ranged

Reward = Literal["usage_time", "watch_time"]
DAY_S = 86_400.0


@dataclass(frozen=True)
class AppSpec:
    """An app's pages and features, its sessions and drop-offs, and its session reward."""

    name: str
    """The app's name (a lowercase identifier), e.g. plpm."""
    pages: tuple[str, ...]
    """The landing pages in action order: action ``a`` lands on ``pages[a]`` (at least 2)."""
    features: FeaturesSpec
    """The observation's features: profile x, statistics t, context c (``apps.features``)."""
    session_gap_s: float = ranged(MISSING, gt=0, le=DAY_S)
    """Seconds without a page visit that end a session: a visit starting more than this after
    the previous one ended opens a new session (an app entry, one landing decision)."""
    dropoff_s: float = ranged(MISSING, gt=0, le=DAY_S)
    """τ (s): a session whose landing page is consumed less than this is a drop-off (y_sw = 1,
    GLAN §3.4)."""
    reward: Reward = "usage_time"
    """The session reward r: usage_time (the session's consumption over its pages) or
    watch_time."""

    def __post_init__(self) -> None:
        w = type(self).__name__
        check.name(self.name, f"{w}.name")
        pages = check.names(self.pages, f"{w}.pages", "page")
        if len(pages) < 2:
            raise check.SpecError(f"{w}.pages", f"an app needs at least 2 pages; got {list(pages)}")
        object.__setattr__(self, "pages", pages)
        object.__setattr__(self, "features", check.build(FeaturesSpec, self.features,
                                                         f"{w}.features"))  # fmt: skip
        for field in ("session_gap_s", "dropoff_s"):
            object.__setattr__(self, field, check.number(getattr(self, field)))
        check.check_ranges(self)
        check.choice(self.reward, f"{w}.reward", REWARDS)
        self._check_features()

    def _check_features(self) -> None:
        """Per-page entries name pages of the app; feature names are distinct; obs is not empty."""
        seen: dict[str, str] = {}
        for group, i, e in self.features.entries():
            where = f"AppSpec.features.{group}[{i}]"
            for p in getattr(e, "pages", None) or ():
                if p not in self.pages:
                    raise check.SpecError(f"{where}.pages",
                                          f"unknown page {p!r}; the pages are {list(self.pages)}")
            for n in e.names(self.pages):
                if n in seen:
                    raise check.SpecError("AppSpec.features",
                                          f"duplicate feature {n!r} ({seen[n]} and {where})")
                seen[n] = where
        if not seen:
            raise check.SpecError("AppSpec.features", "no feature: an observation needs one")

    # ---- derived: the observation ----

    @property
    def n_pages(self) -> int:
        return len(self.pages)

    @property
    def group_features(self) -> dict[str, tuple[str, ...]]:
        """The ``obs`` feature names of each group (profile, statistics, context)."""
        return self.features.names(self.pages)

    @property
    def obs_features(self) -> tuple[str, ...]:
        """The names of the components of ``obs``, in order."""
        return tuple(n for names in self.group_features.values() for n in names)

    @property
    def obs_dim(self) -> int:
        return len(self.obs_features)

    @property
    def obs_scales(self) -> tuple[float, ...]:
        """Each ``obs`` component's divisor: obs = transform(value) / scale."""
        return tuple(s for _, _, e in self.features.entries() for s in entry_scales(e, self.pages))

    @property
    def obs_units(self) -> tuple[str, ...]:
        """Each ``obs`` component's natural unit before scaling."""
        return tuple(u for _, _, e in self.features.entries() for u in entry_units(e, self.pages))

    # ---- as data ----

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``from_dict`` builds the same spec back); canonical: every default that is
        not None is written out, numbers are floats where a float is meant."""
        out = check.plain(self)
        assert isinstance(out, dict)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AppSpec:
        """Build from plain data (YAML); unknown keys are refused, naming them and the valid."""
        return check.build(cls, data, "AppSpec")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def fingerprint(self) -> str:
        """A short stable hash of the canonical dict: equal for two spellings of one spec (key
        order, 3600 or 3600.0, a default written out or not), different when anything differs."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:12]

    def summary(self) -> str:
        """A few readable lines: pages, features per group, obs size, sessions, reward."""
        lines = [f"app {self.name} (fingerprint {self.fingerprint()})",
                 f"pages ({self.n_pages}, in action order): {', '.join(self.pages)}",
                 f"observation: {self.obs_dim} features"]  # fmt: skip
        for group, names in self.group_features.items():
            head = f"  {f'{group} {GROUPS[group]}':<13}{len(names):>3}: "
            lines += textwrap.wrap(", ".join(names) or "-", 100, initial_indent=head,
                                   subsequent_indent=" " * len(head))  # fmt: skip
        lines += [f"session gap: {self.session_gap_s:g} s",
                  f"drop-off threshold τ: {self.dropoff_s:g} s",
                  f"reward: {self.reward} ({REWARDS[self.reward]})"]  # fmt: skip
        return "\n".join(lines)

    def diff(self, other: AppSpec) -> list[str]:
        """What differs between this spec and ``other``, one sentence each ("this vs other");
        empty when they are the same spec."""
        out = [f"{f}: {_show(getattr(self, f))} vs {_show(getattr(other, f))}"
               for f in ("name", "pages", "session_gap_s", "dropoff_s", "reward")
               if getattr(self, f) != getattr(other, f)]  # fmt: skip
        for group in GROUPS:
            out += _group_diff(group, getattr(self.features, group), getattr(other.features, group))
        mine, theirs = self.obs_features, other.obs_features
        if mine != theirs:
            only_a = [n for n in mine if n not in theirs]
            only_b = [n for n in theirs if n not in mine]
            line = f"observation: {len(mine)} vs {len(theirs)} features"
            line += f"; only in this spec: {only_a}" if only_a else ""
            line += f"; only in the other: {only_b}" if only_b else ""
            out.append(line if only_a or only_b else f"{line}, in another order")
        return out


def _show(x: object) -> str:
    return repr(list(x)) if isinstance(x, tuple) else repr(x)


def _group_diff(group: str, a: tuple[Entry, ...], b: tuple[Entry, ...]) -> list[str]:
    """The entries of one group that differ, aligned by their labels (an entry inserted in one
    spec is named once, not as a change of every entry after it)."""
    out = []
    match = difflib.SequenceMatcher(a=[entry_label(e) for e in a], b=[entry_label(e) for e in b],
                                    autojunk=False)  # fmt: skip
    for op, i0, i1, j0, j1 in match.get_opcodes():
        if op == "equal" or (op == "replace" and i1 - i0 == j1 - j0):
            for i, j in zip(range(i0, i1), range(j0, j1), strict=True):
                where = f"features.{group}[{i}]" if i == j else f"features.{group}[{i} vs {j}]"
                line = _entry_diff(where, a[i], b[j])
                out += [line] if line else []
            continue
        out += [f"features.{group}[{i}] ({entry_label(a[i])}): only in this spec"
                for i in range(i0, i1)]  # fmt: skip
        out += [f"features.{group}[{j}] ({entry_label(b[j])}): only in the other"
                for j in range(j0, j1)]  # fmt: skip
    return out


def _entry_diff(where: str, a: Entry, b: Entry) -> str | None:
    da, db = check.plain(a), check.plain(b)
    assert isinstance(da, dict) and isinstance(db, dict)
    keys = [k for k in {**da, **db} if da.get(k) != db.get(k)]
    if not keys:
        return None
    la, lb = entry_label(a), entry_label(b)
    changes = ", ".join(f"{k} {da.get(k)!r} vs {db.get(k)!r}" for k in keys)
    return f"{where} ({la if la == lb else f'{la} vs {lb}'}): {changes}"


def spec_from_yaml(text: str, source: str = "<yaml>") -> AppSpec:
    """Parse and check a spec written as YAML; errors say ``source`` and name the field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise check.SpecError("AppSpec", f"not valid YAML: {e}", source) from None
    try:
        return AppSpec.from_dict(data)
    except check.SpecError as e:
        raise e.in_file(source) from None


def load_spec(path: str | os.PathLike[str]) -> AppSpec:
    """Read an app spec from a YAML file (``yaml.safe_load``; docs/apps.md)."""
    with open(path) as f:
        return spec_from_yaml(f.read(), str(path))


__all__ = ["AppSpec", "load_spec", "spec_from_yaml"]
